namespace KestrelQuic.Streams;

/// <summary>States of the sending part of a stream (RFC 9000 §3.1).</summary>
internal enum SendStreamState
{
    Ready,
    Send,
    DataSent,
    ResetSent,
    DataRecvd,
    ResetRecvd,
}

/// <summary>States of the receiving part of a stream (RFC 9000 §3.2).</summary>
internal enum ReceiveStreamState
{
    Recv,
    SizeKnown,
    DataRecvd,
    ResetRecvd,
    DataRead,
    ResetRead,
}

/// <summary>Frame types used when reporting stream errors (RFC 9000 §19); kept local so the module does not depend on the frame codec.</summary>
internal static class StreamFrameTypes
{
    public const ulong ResetStream = 0x04;
    public const ulong StopSending = 0x05;
    public const ulong Stream = 0x08;
    public const ulong MaxStreamData = 0x11;
    public const ulong MaxStreamsBidi = 0x12;
    public const ulong MaxStreamsUni = 0x13;
    public const ulong StreamDataBlocked = 0x15;
}
