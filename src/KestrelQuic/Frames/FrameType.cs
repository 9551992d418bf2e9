namespace KestrelQuic.Frames;

/// <summary>QUIC frame types (RFC 9000 §19, RFC 9221 §4).</summary>
internal enum FrameType : ulong
{
    Padding = 0x00,
    Ping = 0x01,
    Ack = 0x02,
    AckEcn = 0x03,
    ResetStream = 0x04,
    StopSending = 0x05,
    Crypto = 0x06,
    NewToken = 0x07,

    /// <summary>STREAM base type; 0x08..0x0f carry the OFF (0x04), LEN (0x02) and FIN (0x01) bits.</summary>
    Stream = 0x08,
    MaxData = 0x10,
    MaxStreamData = 0x11,
    MaxStreamsBidi = 0x12,
    MaxStreamsUni = 0x13,
    DataBlocked = 0x14,
    StreamDataBlocked = 0x15,
    StreamsBlockedBidi = 0x16,
    StreamsBlockedUni = 0x17,
    NewConnectionId = 0x18,
    RetireConnectionId = 0x19,
    PathChallenge = 0x1a,
    PathResponse = 0x1b,
    ConnectionClose = 0x1c,
    ConnectionCloseApplication = 0x1d,
    HandshakeDone = 0x1e,
    Datagram = 0x30,
    DatagramWithLength = 0x31,
}

/// <summary>Bits of the STREAM frame type (RFC 9000 §19.8).</summary>
internal static class StreamFrameBits
{
    public const byte Fin = 0x01;
    public const byte Length = 0x02;
    public const byte Offset = 0x04;

    /// <summary>The highest STREAM frame type (all bits set).</summary>
    public const byte Max = 0x0f;
}
