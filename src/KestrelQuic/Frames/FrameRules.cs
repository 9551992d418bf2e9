using KestrelQuic.Packets;

namespace KestrelQuic.Frames;

/// <summary>Per-frame-type rules from RFC 9000 §12.4 (Table 3) and RFC 9221 §4.</summary>
internal static class FrameRules
{
    /// <summary>True if a frame of <paramref name="type"/> may appear in a packet of <paramref name="packetType"/> (RFC 9000 §12.4, Table 3).</summary>
    public static bool IsAllowed(FrameType type, PacketType packetType)
    {
        switch (packetType)
        {
            case PacketType.OneRtt:
                // All frames can appear in 1-RTT packets.
                return true;
            case PacketType.Initial:
            case PacketType.Handshake:
                // "IH": PADDING, PING, ACK, CRYPTO and only the transport CONNECTION_CLOSE (0x1c).
                return type is FrameType.Padding or FrameType.Ping or FrameType.Ack or FrameType.AckEcn
                    or FrameType.Crypto or FrameType.ConnectionClose;
            case PacketType.ZeroRtt:
                // "0": everything except ACK, CRYPTO, NEW_TOKEN, RETIRE_CONNECTION_ID, PATH_RESPONSE, HANDSHAKE_DONE.
                return type is not (FrameType.Ack or FrameType.AckEcn or FrameType.Crypto or FrameType.NewToken
                    or FrameType.RetireConnectionId or FrameType.PathResponse or FrameType.HandshakeDone);
            default:
                // Retry and Version Negotiation packets carry no frames.
                return false;
        }
    }

    /// <summary>Every frame except PADDING, ACK and CONNECTION_CLOSE is ack-eliciting (RFC 9000 §13.2, "N" in Table 3).</summary>
    public static bool IsAckEliciting(FrameType type) =>
        type is not (FrameType.Padding or FrameType.Ack or FrameType.AckEcn
            or FrameType.ConnectionClose or FrameType.ConnectionCloseApplication);

    /// <summary>Packets are in flight when they are ack-eliciting or contain PADDING (RFC 9002 §2).</summary>
    public static bool IsCountedInFlight(FrameType type) => type == FrameType.Padding || IsAckEliciting(type);

    /// <summary>Probing frames (RFC 9000 §9.1, "P" in Table 3): PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID and PADDING.</summary>
    public static bool IsProbing(FrameType type) =>
        type is FrameType.Padding or FrameType.PathChallenge or FrameType.PathResponse or FrameType.NewConnectionId;

    /// <summary>True for the frame types this implementation knows (RFC 9000 §19 plus DATAGRAM). STREAM must be normalised to <see cref="FrameType.Stream"/>.</summary>
    public static bool IsKnown(ulong rawType) => rawType <= 0x1e || rawType is 0x30 or 0x31;

    /// <summary>Maps a raw frame type to its logical type (STREAM variants → <see cref="FrameType.Stream"/>).</summary>
    public static FrameType Normalize(ulong rawType) =>
        rawType is >= 0x08 and <= 0x0f ? FrameType.Stream : (FrameType)rawType;
}
