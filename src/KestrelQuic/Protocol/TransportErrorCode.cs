namespace KestrelQuic.Protocol;

/// <summary>Transport error codes (RFC 9000 §20.1). CRYPTO_ERROR is 0x0100 + the TLS alert.</summary>
public enum TransportErrorCode : ulong
{
    /// <summary>NO_ERROR: an abrupt close without an error.</summary>
    NoError = 0x00,
    /// <summary>INTERNAL_ERROR.</summary>
    InternalError = 0x01,
    /// <summary>CONNECTION_REFUSED.</summary>
    ConnectionRefused = 0x02,
    /// <summary>FLOW_CONTROL_ERROR.</summary>
    FlowControlError = 0x03,
    /// <summary>STREAM_LIMIT_ERROR.</summary>
    StreamLimitError = 0x04,
    /// <summary>STREAM_STATE_ERROR.</summary>
    StreamStateError = 0x05,
    /// <summary>FINAL_SIZE_ERROR.</summary>
    FinalSizeError = 0x06,
    /// <summary>FRAME_ENCODING_ERROR.</summary>
    FrameEncodingError = 0x07,
    /// <summary>TRANSPORT_PARAMETER_ERROR.</summary>
    TransportParameterError = 0x08,
    /// <summary>CONNECTION_ID_LIMIT_ERROR.</summary>
    ConnectionIdLimitError = 0x09,
    /// <summary>PROTOCOL_VIOLATION.</summary>
    ProtocolViolation = 0x0a,
    /// <summary>INVALID_TOKEN.</summary>
    InvalidToken = 0x0b,
    /// <summary>APPLICATION_ERROR.</summary>
    ApplicationError = 0x0c,
    /// <summary>CRYPTO_BUFFER_EXCEEDED.</summary>
    CryptoBufferExceeded = 0x0d,
    /// <summary>KEY_UPDATE_ERROR.</summary>
    KeyUpdateError = 0x0e,
    /// <summary>AEAD_LIMIT_REACHED.</summary>
    AeadLimitReached = 0x0f,
    /// <summary>NO_VIABLE_PATH.</summary>
    NoViablePath = 0x10,
    /// <summary>VERSION_NEGOTIATION_ERROR (RFC 9368).</summary>
    VersionNegotiationError = 0x11,
    /// <summary>CRYPTO_ERROR base: the TLS alert is added to it.</summary>
    CryptoErrorBase = 0x0100,
}

/// <summary>A transport-level error detected while processing peer input: the code, the frame type that caused it (0 if none) and a reason phrase.</summary>
internal readonly record struct TransportError(TransportErrorCode Code, ulong FrameType, string Reason)
{
    public static TransportError Crypto(byte alert, string reason) => new((TransportErrorCode)(0x100UL + alert), 0, reason);
}
