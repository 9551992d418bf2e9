namespace KestrelQuic.Packets;

/// <summary>
/// A parsed (still header-protected) packet header. All offsets are relative to the start of the packet, so the
/// struct holds no spans and can be stored; use the <c>Get…</c> helpers with the same packet bytes.
/// </summary>
internal struct PacketHeader
{
    /// <summary>The logical packet type. Meaningless when <see cref="IsSupportedVersion"/> is false (except for Version Negotiation).</summary>
    public PacketType Type { get; set; }

    /// <summary>The Version field; 0 for short headers and Version Negotiation.</summary>
    public uint Version { get; set; }

    public bool IsLongHeader { get; set; }

    /// <summary>
    /// True when the header was parsed in full: a v1/v2 long header, or a short header (whose version is the
    /// connection's). False for Version Negotiation and unknown versions, of which only the RFC 8999 invariant
    /// fields (Version, DCID, SCID) are parsed.
    /// </summary>
    public bool IsSupportedVersion { get; set; }

    /// <summary>The first byte as received (its low bits are still header-protected).</summary>
    public byte FirstByte { get; set; }

    /// <summary>The QUIC Bit (0x40). Zero is only acceptable when grease_quic_bit was negotiated (RFC 9287).</summary>
    public bool FixedBit { get; set; }

    /// <summary>Short header Spin Bit (0x20); not header-protected (RFC 9000 §17.4).</summary>
    public readonly bool SpinBit => !IsLongHeader && (FirstByte & 0x20) != 0;

    public int DestinationConnectionIdOffset { get; set; }

    public int DestinationConnectionIdLength { get; set; }

    public int SourceConnectionIdOffset { get; set; }

    public int SourceConnectionIdLength { get; set; }

    /// <summary>Initial packets: the Token; Retry packets: the Retry Token (between the SCID and the 16-byte integrity tag).</summary>
    public int TokenOffset { get; set; }

    public int TokenLength { get; set; }

    /// <summary>Offset of the Length field (Initial, 0-RTT, Handshake); 0 if absent.</summary>
    public int LengthFieldOffset { get; set; }

    /// <summary>Value of the Length field: packet number + protected payload (Initial, 0-RTT, Handshake); 0 if absent.</summary>
    public int Length { get; set; }

    /// <summary>Start of the (protected) packet number; 0 for packets without one (Retry, Version Negotiation, unknown versions).</summary>
    public int PacketNumberOffset { get; set; }

    /// <summary>
    /// Bytes of the datagram this packet occupies. Long headers with a Length field: header through the end of the
    /// Length field's payload, so coalesced packets follow; otherwise the rest of the datagram.
    /// </summary>
    public int PacketLength { get; set; }

    /// <summary>True for packet types that carry a packet number and encrypted payload.</summary>
    public readonly bool HasPacketNumber =>
        IsSupportedVersion && Type is PacketType.Initial or PacketType.ZeroRtt or PacketType.Handshake or PacketType.OneRtt;

    public readonly ReadOnlySpan<byte> GetDestinationConnectionId(ReadOnlySpan<byte> packet) =>
        packet.Slice(DestinationConnectionIdOffset, DestinationConnectionIdLength);

    public readonly ReadOnlySpan<byte> GetSourceConnectionId(ReadOnlySpan<byte> packet) =>
        packet.Slice(SourceConnectionIdOffset, SourceConnectionIdLength);

    public readonly ReadOnlySpan<byte> GetToken(ReadOnlySpan<byte> packet) => packet.Slice(TokenOffset, TokenLength);
}
