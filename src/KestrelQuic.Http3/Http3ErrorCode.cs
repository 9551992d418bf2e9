namespace KestrelQuic.Http3;

/// <summary>
/// HTTP/3 application error codes (RFC 9114 §8.1) and the QPACK error codes (RFC 9204 §6), as carried in
/// QUIC RESET_STREAM, STOP_SENDING and CONNECTION_CLOSE (type 0x1d) frames.
/// </summary>
public enum Http3ErrorCode : long
{
    /// <summary>H3_NO_ERROR: the connection or stream needs to be closed, but there is no error to signal.</summary>
    NoError = 0x100,

    /// <summary>H3_GENERAL_PROTOCOL_ERROR: the peer violated protocol requirements in a way no more specific code covers.</summary>
    GeneralProtocolError = 0x101,

    /// <summary>H3_INTERNAL_ERROR: an internal error has occurred in the HTTP stack.</summary>
    InternalError = 0x102,

    /// <summary>H3_STREAM_CREATION_ERROR: the peer created a stream that will not be accepted.</summary>
    StreamCreationError = 0x103,

    /// <summary>H3_CLOSED_CRITICAL_STREAM: a stream required by the HTTP/3 connection was closed or reset.</summary>
    ClosedCriticalStream = 0x104,

    /// <summary>H3_FRAME_UNEXPECTED: a frame was received that is not permitted in the current state or on the current stream.</summary>
    FrameUnexpected = 0x105,

    /// <summary>H3_FRAME_ERROR: a frame that fails to satisfy layout requirements or with an invalid size was received.</summary>
    FrameError = 0x106,

    /// <summary>H3_EXCESSIVE_LOAD: the peer is exhibiting a behavior that might be generating excessive load.</summary>
    ExcessiveLoad = 0x107,

    /// <summary>H3_ID_ERROR: a stream ID or push ID was used incorrectly (exceeding or reducing a limit, or reused).</summary>
    IdError = 0x108,

    /// <summary>H3_SETTINGS_ERROR: an error in the payload of a SETTINGS frame.</summary>
    SettingsError = 0x109,

    /// <summary>H3_MISSING_SETTINGS: no SETTINGS frame was received at the beginning of the control stream.</summary>
    MissingSettings = 0x10a,

    /// <summary>H3_REQUEST_REJECTED: a server rejected a request without performing any application processing.</summary>
    RequestRejected = 0x10b,

    /// <summary>H3_REQUEST_CANCELLED: the request or its response (including a pushed response) is cancelled.</summary>
    RequestCancelled = 0x10c,

    /// <summary>H3_REQUEST_INCOMPLETE: the client's stream terminated without containing a fully formed request.</summary>
    RequestIncomplete = 0x10d,

    /// <summary>H3_MESSAGE_ERROR: an HTTP message was malformed and cannot be processed.</summary>
    MessageError = 0x10e,

    /// <summary>H3_CONNECT_ERROR: the TCP connection established for a CONNECT request was reset or abnormally closed.</summary>
    ConnectError = 0x10f,

    /// <summary>H3_VERSION_FALLBACK: the requested operation cannot be served over HTTP/3; retry over HTTP/1.1.</summary>
    VersionFallback = 0x110,

    /// <summary>QPACK_DECOMPRESSION_FAILED: the decoder failed to interpret an encoded field section.</summary>
    QpackDecompressionFailed = 0x200,

    /// <summary>QPACK_ENCODER_STREAM_ERROR: the decoder failed to interpret an instruction on the encoder stream.</summary>
    QpackEncoderStreamError = 0x201,

    /// <summary>QPACK_DECODER_STREAM_ERROR: the encoder failed to interpret an instruction on the decoder stream.</summary>
    QpackDecoderStreamError = 0x202,
}

/// <summary>Helpers for HTTP/3 error codes.</summary>
public static class Http3ErrorCodes
{
    /// <summary>
    /// True for the reserved codes of the form 0x1f * N + 0x21 (RFC 9114 §8.1), which a receiver treats as
    /// <see cref="Http3ErrorCode.NoError"/>.
    /// </summary>
    public static bool IsReserved(long code) => Frames.Http3Reserved.IsReserved(code);
}
