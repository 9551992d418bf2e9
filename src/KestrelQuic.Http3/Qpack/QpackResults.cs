namespace KestrelQuic.Http3.Qpack;

/// <summary>Receives the field lines of a decoded field section, in order.</summary>
/// <remarks>
/// The spans are only valid during the call. When decoding ends in an error or with
/// <see cref="QpackDecodeStatus.FieldSectionTooLarge"/>, lines already delivered must be discarded.
/// Names are delivered as sent: checking HTTP/3 message rules (lower case, pseudo-header placement) is the caller's job,
/// see <see cref="Http3FieldValidation"/>.
/// </remarks>
public interface IQpackFieldHandler
{
    /// <summary>One field line.</summary>
    void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value);
}

/// <summary>Outcome of <see cref="QpackDecoder.DecodeFieldSection(long, ReadOnlySpan{byte}, IQpackFieldHandler)"/>.</summary>
public enum QpackDecodeStatus
{
    /// <summary>All field lines were delivered; any Section Acknowledgment is queued for the decoder stream.</summary>
    Completed,

    /// <summary>
    /// The Required Insert Count is above the Insert Count: nothing was delivered. Keep the section and call again when
    /// more encoder-stream bytes have been processed (<see cref="QpackDecoder.InsertCount"/> reaching
    /// <see cref="QpackDecodeResult.RequiredInsertCount"/>), or <see cref="QpackDecoder.AbandonStream"/> it.
    /// </summary>
    Blocked,

    /// <summary>
    /// The decoded size (RFC 9114 §4.2.2: name + value + 32 per line) exceeds our SETTINGS_MAX_FIELD_SECTION_SIZE.
    /// The section was still fully parsed and acknowledged, so QPACK state stays consistent; this is a stream-level
    /// problem: discard the message (e.g. reset the stream with <see cref="Http3ErrorCode.ExcessiveLoad"/> or
    /// <see cref="Http3ErrorCode.RequestCancelled"/>).
    /// </summary>
    FieldSectionTooLarge,

    /// <summary>A QPACK connection error: close the connection with <see cref="QpackDecodeResult.ErrorCode"/>.</summary>
    Error,
}

/// <summary>Result of decoding one encoded field section.</summary>
public readonly struct QpackDecodeResult
{
    internal QpackDecodeResult(QpackDecodeStatus status, long requiredInsertCount, long fieldSectionSize, QpackError error)
    {
        Status = status;
        RequiredInsertCount = requiredInsertCount;
        FieldSectionSize = fieldSectionSize;
        Error = error;
    }

    /// <summary>What happened.</summary>
    public QpackDecodeStatus Status { get; }

    /// <summary>The section's Required Insert Count, once its prefix was parsed (0 otherwise).</summary>
    public long RequiredInsertCount { get; }

    /// <summary>Decoded size of the lines seen (RFC 9114 §4.2.2 accounting).</summary>
    public long FieldSectionSize { get; }

    /// <summary>The error when <see cref="Status"/> is <see cref="QpackDecodeStatus.Error"/>.</summary>
    public QpackError Error { get; }

    /// <summary>Shorthand for <see cref="QpackError.Code"/>.</summary>
    public Http3ErrorCode ErrorCode => Error.Code;

    /// <inheritdoc/>
    public override string ToString() => Status == QpackDecodeStatus.Error ? $"Error: {Error}" : Status.ToString();
}

/// <summary>
/// A QPACK connection error (RFC 9204 §6): <see cref="Http3ErrorCode.QpackDecompressionFailed"/>,
/// <see cref="Http3ErrorCode.QpackEncoderStreamError"/> or <see cref="Http3ErrorCode.QpackDecoderStreamError"/>,
/// with a diagnostic message. Default value: no error.
/// </summary>
public readonly struct QpackError
{
    internal QpackError(Http3ErrorCode code, string message)
    {
        Code = code;
        Message = message;
    }

    /// <summary>True when this represents an error.</summary>
    public bool IsError => Message is not null;

    /// <summary>The HTTP/3 error code to close the connection with.</summary>
    public Http3ErrorCode Code { get; }

    /// <summary>What was wrong, for logs; null when not an error.</summary>
    public string? Message { get; }

    /// <inheritdoc/>
    public override string ToString() => IsError ? $"{Code} (0x{(long)Code:x}): {Message}" : "none";
}
