namespace KestrelQuic.PacketProtection;

/// <summary>Whole-packet protection and removal (RFC 9001 §5.3, §5.4). Allocation-free.</summary>
internal static class PacketProtector
{
    /// <summary>
    /// Seals the payload in place, appends the AEAD tag and applies header protection. <paramref name="packet"/> holds the
    /// header through the packet number, then <paramref name="payloadLength"/> plaintext bytes, then at least 16 spare
    /// bytes. The header (including the truncated packet number) is the associated data. Returns the protected length.
    /// The caller pads so that packet number + payload is at least 4 bytes (RFC 9001 §5.4.2).
    /// </summary>
    public static int Protect(PacketProtectionKeys keys, Span<byte> packet, int packetNumberOffset, int packetNumberLength, int payloadLength, long packetNumber)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if ((uint)packetNumberLength - 1 > 3) throw new ArgumentOutOfRangeException(nameof(packetNumberLength));
        if (packetNumberOffset < 1) throw new ArgumentOutOfRangeException(nameof(packetNumberOffset));
        if (payloadLength < 0) throw new ArgumentOutOfRangeException(nameof(payloadLength));

        int headerLength = packetNumberOffset + packetNumberLength;
        int protectedLength = headerLength + payloadLength + PacketAead.TagLength;
        if (protectedLength > packet.Length) throw new ArgumentException("No room for the AEAD tag.", nameof(packet));
        if (packetNumberLength + payloadLength < HeaderProtection.SampleOffsetFromPacketNumber)
        {
            throw new ArgumentException("Packet number and payload must total at least 4 bytes for the header protection sample.", nameof(payloadLength));
        }

        Span<byte> protectedPacket = packet.Slice(0, protectedLength);
        keys.Aead.Seal(
            packetNumber,
            protectedPacket.Slice(0, headerLength),
            protectedPacket.Slice(headerLength, payloadLength),
            protectedPacket.Slice(headerLength + payloadLength, PacketAead.TagLength));
        keys.HeaderProtection.Protect(protectedPacket, packetNumberOffset, packetNumberLength);
        return protectedLength;
    }

    /// <summary>
    /// Removes header protection in place and recovers the full packet number (RFC 9000 Appendix A.3) relative to
    /// <paramref name="largestReceivedPn"/> (-1 when none). <paramref name="packet"/> must end where the packet ends
    /// (long headers: at the end of the Length field's payload). Returns false if the packet is too short to be sampled.
    /// After success, the reserved bits and key phase can be read from <c>packet[0]</c>.
    /// </summary>
    public static bool TryRemoveHeaderProtection(HeaderProtection hp, Span<byte> packet, int pnOffset, long largestReceivedPn, out long packetNumber, out int pnLength)
    {
        ArgumentNullException.ThrowIfNull(hp);
        if (!hp.TryUnprotect(packet, pnOffset, out pnLength))
        {
            packetNumber = 0;
            return false;
        }

        long truncated = PacketNumberEncoding.Read(packet.Slice(pnOffset), pnLength);
        packetNumber = PacketNumberEncoding.Decode(largestReceivedPn, truncated, pnLength);
        return true;
    }

    /// <summary>
    /// Opens the payload in place: <paramref name="packet"/> is exactly one packet, <c>packet[..headerLength]</c> is the
    /// unprotected header (associated data) and the last 16 bytes are the tag. Returns false on authentication failure or
    /// a packet too short to hold a tag; the decrypted payload is <c>packet.Slice(headerLength, payloadLength)</c>.
    /// </summary>
    public static bool TryDecryptPayload(PacketAead aead, Span<byte> packet, int headerLength, long packetNumber, out int payloadLength)
    {
        ArgumentNullException.ThrowIfNull(aead);
        if (headerLength < 1 || packet.Length - PacketAead.TagLength < headerLength)
        {
            payloadLength = 0;
            return false;
        }

        int length = packet.Length - headerLength - PacketAead.TagLength;
        if (!aead.TryOpen(packetNumber, packet.Slice(0, headerLength), packet.Slice(headerLength, length), packet.Slice(headerLength + length, PacketAead.TagLength)))
        {
            payloadLength = 0;
            return false;
        }

        payloadLength = length;
        return true;
    }
}
