namespace KestrelQuic.Http3.Frames;

/// <summary>HTTP/3 frame types (RFC 9114 §7.2, §11.2.1).</summary>
public static class Http3FrameType
{
    /// <summary>DATA (0x00): request or response content.</summary>
    public const long Data = 0x00;

    /// <summary>HEADERS (0x01): a QPACK-encoded field section.</summary>
    public const long Headers = 0x01;

    /// <summary>CANCEL_PUSH (0x03): cancels a server push; control stream only.</summary>
    public const long CancelPush = 0x03;

    /// <summary>SETTINGS (0x04): first frame of each control stream, exactly once.</summary>
    public const long Settings = 0x04;

    /// <summary>PUSH_PROMISE (0x05): a promised request header section; server to client on request streams.</summary>
    public const long PushPromise = 0x05;

    /// <summary>GOAWAY (0x07): graceful shutdown; control stream only.</summary>
    public const long GoAway = 0x07;

    /// <summary>MAX_PUSH_ID (0x0d): client's push ID limit; control stream only, client to server.</summary>
    public const long MaxPushId = 0x0d;

    /// <summary>
    /// True for the frame types HTTP/2 used with no HTTP/3 equivalent (PRIORITY 0x02, PING 0x06, WINDOW_UPDATE 0x08,
    /// CONTINUATION 0x09): receiving one is <see cref="Http3ErrorCode.FrameUnexpected"/> (RFC 9114 §7.2.8).
    /// </summary>
    public static bool IsHttp2Only(long type) => type is 0x02 or 0x06 or 0x08 or 0x09;

    /// <summary>True for the reserved (grease) types 0x1f * N + 0x21, which carry no meaning and are skipped.</summary>
    public static bool IsReserved(long type) => Http3Reserved.IsReserved(type);

    /// <summary>True for the frame types this codec understands (not reserved, unknown or HTTP/2-only).</summary>
    public static bool IsKnown(long type) => type is Data or Headers or CancelPush or Settings or PushPromise or GoAway or MaxPushId;
}

/// <summary>HTTP/3 unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2).</summary>
public static class Http3StreamType
{
    /// <summary>Control stream (0x00).</summary>
    public const long Control = 0x00;

    /// <summary>Push stream (0x01), followed by a push ID.</summary>
    public const long Push = 0x01;

    /// <summary>QPACK encoder stream (0x02).</summary>
    public const long QpackEncoder = 0x02;

    /// <summary>QPACK decoder stream (0x03).</summary>
    public const long QpackDecoder = 0x03;

    /// <summary>
    /// What a received unidirectional stream is. Unknown and reserved types map to
    /// <see cref="Http3UnidirectionalStreamKind.Unknown"/>: abort reading (H3_STREAM_CREATION_ERROR) or discard the data,
    /// never a connection error (RFC 9114 §6.2).
    /// </summary>
    public static Http3UnidirectionalStreamKind Classify(long streamType) => streamType switch
    {
        Control => Http3UnidirectionalStreamKind.Control,
        Push => Http3UnidirectionalStreamKind.Push,
        QpackEncoder => Http3UnidirectionalStreamKind.QpackEncoder,
        QpackDecoder => Http3UnidirectionalStreamKind.QpackDecoder,
        _ => Http3UnidirectionalStreamKind.Unknown,
    };
}

/// <summary>The role of a unidirectional stream, from its stream type.</summary>
public enum Http3UnidirectionalStreamKind
{
    /// <summary>Unknown or reserved type: ignore the stream.</summary>
    Unknown,

    /// <summary>The peer's control stream.</summary>
    Control,

    /// <summary>A push stream.</summary>
    Push,

    /// <summary>The peer's QPACK encoder stream (feeds our decoder).</summary>
    QpackEncoder,

    /// <summary>The peer's QPACK decoder stream (feeds our encoder).</summary>
    QpackDecoder,
}

/// <summary>The reserved code points 0x1f * N + 0x21 shared by frame types, stream types, settings and error codes.</summary>
public static class Http3Reserved
{
    /// <summary>Largest N whose reserved value still fits a variable-length integer.</summary>
    public const long MaxN = (Http3VarInt.MaxValue - 0x21) / 0x1f;

    /// <summary>True when <paramref name="value"/> is 0x1f * N + 0x21 for some N ≥ 0.</summary>
    public static bool IsReserved(long value) => value >= 0x21 && (value - 0x21) % 0x1f == 0;

    /// <summary>The reserved value for <paramref name="n"/> (0 ≤ n ≤ <see cref="MaxN"/>).</summary>
    public static long GetValue(long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(n, MaxN);
        return (0x1f * n) + 0x21;
    }
}
