namespace KestrelQuic.Streams;

/// <summary>Stream ID helpers (RFC 9000 §2.1): bit 0 = initiator (0 client, 1 server), bit 1 = directionality (0 bidi, 1 uni).</summary>
internal static class StreamId
{
    /// <summary>The largest stream ID: stream IDs are 62-bit variable-length integers (RFC 9000 §16).</summary>
    public const ulong MaxValue = (1UL << 62) - 1;

    public static bool IsClientInitiated(ulong id) => (id & 0x1) == 0;

    public static bool IsServerInitiated(ulong id) => (id & 0x1) != 0;

    public static bool IsBidirectional(ulong id) => (id & 0x2) == 0;

    public static bool IsUnidirectional(ulong id) => (id & 0x2) != 0;

    public static QuicStreamType TypeOf(ulong id) => IsBidirectional(id) ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional;

    /// <summary>The stream's sequence number among the streams of its type: (id &gt;&gt; 2).</summary>
    public static ulong Index(ulong id) => id >> 2;

    public static ulong Create(ulong index, bool clientInitiated, bool bidirectional)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(index, MaxValue >> 2);
        return (index << 2) | (clientInitiated ? 0UL : 1UL) | (bidirectional ? 0UL : 2UL);
    }

    public static ulong Create(ulong index, bool clientInitiated, QuicStreamType type) =>
        Create(index, clientInitiated, type == QuicStreamType.Bidirectional);

    /// <summary>True if the stream was initiated by this endpoint.</summary>
    public static bool IsLocallyInitiated(ulong id, bool isServer) => IsServerInitiated(id) == isServer;

    /// <summary>True if this endpoint can send on the stream: bidirectional, or unidirectional and locally initiated.</summary>
    public static bool CanSend(ulong id, bool isServer) => IsBidirectional(id) || IsLocallyInitiated(id, isServer);

    /// <summary>True if this endpoint can receive on the stream: bidirectional, or unidirectional and peer-initiated.</summary>
    public static bool CanReceive(ulong id, bool isServer) => IsBidirectional(id) || !IsLocallyInitiated(id, isServer);
}
