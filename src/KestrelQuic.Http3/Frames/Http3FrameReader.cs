using System.Buffers;

namespace KestrelQuic.Http3.Frames;

/// <summary>The kind of stream a <see cref="Http3FrameReader"/> reads frames from; it decides which frames are allowed.</summary>
public enum Http3StreamKind
{
    /// <summary>The peer's control stream: SETTINGS first, then CANCEL_PUSH, GOAWAY, MAX_PUSH_ID.</summary>
    Control,

    /// <summary>A request stream (bidirectional): HEADERS, DATA, PUSH_PROMISE.</summary>
    Request,

    /// <summary>A push stream, after its header: HEADERS, DATA.</summary>
    Push,
}

/// <summary>Outcome of <see cref="Http3FrameReader.TryReadFrame"/>.</summary>
public enum Http3FrameReadStatus
{
    /// <summary>A frame (or a DATA chunk) was read.</summary>
    Frame,

    /// <summary>More bytes are needed; retry when they arrive with the unconsumed rest of the buffer.</summary>
    NeedMoreData,

    /// <summary>A connection error; close with the reported code.</summary>
    Error,
}

/// <summary>
/// A frame read by <see cref="Http3FrameReader"/>. DATA frames are delivered in chunks as bytes arrive (never
/// buffered whole); every other frame is delivered once complete, with its fields parsed.
/// </summary>
public readonly struct Http3Frame
{
    internal Http3Frame(long type, long length, ReadOnlySequence<byte> payload, long id, Http3Settings? settings, bool endOfFrame)
    {
        Type = type;
        Length = length;
        Payload = payload;
        Id = id;
        Settings = settings;
        IsEndOfFrame = endOfFrame;
    }

    /// <summary>The frame type (<see cref="Http3FrameType"/>).</summary>
    public long Type { get; }

    /// <summary>The frame's declared payload length.</summary>
    public long Length { get; }

    /// <summary>
    /// DATA: this chunk of content. HEADERS: the encoded field section. PUSH_PROMISE: the encoded field section after
    /// the push ID. SETTINGS: the raw payload. Slices the caller's buffer: valid until it is released.
    /// </summary>
    public ReadOnlySequence<byte> Payload { get; }

    /// <summary>CANCEL_PUSH, MAX_PUSH_ID, PUSH_PROMISE: the push ID. GOAWAY: the stream ID (from a server) or push ID (from a client).</summary>
    public long Id { get; }

    /// <summary>SETTINGS: the parsed parameters.</summary>
    public Http3Settings? Settings { get; }

    /// <summary>False for DATA chunks followed by more of the same frame; true otherwise.</summary>
    public bool IsEndOfFrame { get; }
}

/// <summary>
/// Incremental HTTP/3 frame parser for one stream (RFC 9114 §7). Feed it the stream's bytes; it consumes what it
/// parsed by slicing the buffer passed by reference (PipeReader style: advance to <c>buffer.Start</c>, examined to
/// <c>buffer.End</c> on <see cref="Http3FrameReadStatus.NeedMoreData"/>).
/// </summary>
/// <remarks>
/// Enforced here: frame layout (exact payload lengths, H3_FRAME_ERROR), which frames each stream kind may carry
/// (H3_FRAME_UNEXPECTED), HTTP/2-only types (H3_FRAME_UNEXPECTED), SETTINGS first and once on the control stream
/// (H3_MISSING_SETTINGS / H3_FRAME_UNEXPECTED), SETTINGS validation (H3_SETTINGS_ERROR), GOAWAY stream IDs from a
/// server (H3_ID_ERROR), and a bound on buffered frame payloads (H3_EXCESSIVE_LOAD). Reserved and unknown frame types
/// are skipped without buffering. Left to the caller: message-level order on request streams (HEADERS before DATA,
/// trailers), push ID limits and GOAWAY monotonicity, and the QPACK decoding of field sections.
/// </remarks>
public sealed class Http3FrameReader
{
    private readonly Http3StreamKind _kind;
    private readonly bool _isClient;
    private readonly long _maxBufferedPayloadLength;

    private long _dataRemaining = -1; // >= 0 inside a DATA frame
    private long _dataLength;
    private long _skipRemaining;      // > 0 inside an ignored frame
    private bool _sawFirstFrame;
    private Http3ErrorCode _failure;

    /// <summary>Creates a reader for one stream.</summary>
    /// <param name="kind">The stream's kind.</param>
    /// <param name="isClient">True when we are the client (frames come from a server).</param>
    /// <param name="maxBufferedPayloadLength">
    /// Largest payload of a non-DATA frame that will be buffered (HEADERS, PUSH_PROMISE, SETTINGS); longer frames are
    /// <see cref="Http3ErrorCode.ExcessiveLoad"/>. Size it from SETTINGS_MAX_FIELD_SECTION_SIZE and flow control.
    /// </param>
    public Http3FrameReader(Http3StreamKind kind, bool isClient = true, long maxBufferedPayloadLength = 64 * 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxBufferedPayloadLength);
        _kind = kind;
        _isClient = isClient;
        _maxBufferedPayloadLength = maxBufferedPayloadLength;
    }

    /// <summary>The stream kind.</summary>
    public Http3StreamKind Kind => _kind;

    /// <summary>
    /// Called with the type and payload length of every frame as its header is consumed: once per frame, before any
    /// of a DATA frame's payload is delivered, and also for the reserved and unknown frames the reader skips (which
    /// the caller never sees otherwise). For tracing (qlog frame_parsed); null by default, costing one null check.
    /// </summary>
    public Action<long, long>? FrameHeaderRead { get; set; }

    /// <summary>True while part of a frame has been consumed but not all of it.</summary>
    public bool IsInsideFrame => _dataRemaining >= 0 || _skipRemaining > 0;

    /// <summary>Payload bytes of the current DATA frame not yet delivered; 0 outside a DATA frame.</summary>
    public long DataPayloadRemaining => _dataRemaining > 0 ? _dataRemaining : 0;

    /// <summary>
    /// Marks <paramref name="count"/> payload bytes of the current DATA frame as consumed by the caller, who read them
    /// from the transport straight into its destination instead of passing them through <see cref="TryReadFrame"/>
    /// (saves a copy for large bodies). <paramref name="count"/> must not exceed <see cref="DataPayloadRemaining"/>.
    /// </summary>
    public void ConsumeDataPayload(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, DataPayloadRemaining);
        _dataRemaining -= count;
        if (_dataRemaining == 0)
        {
            _dataRemaining = -1;
        }
    }

    /// <summary>
    /// Reads the next frame (or DATA chunk). Reserved, unknown and extension frames are skipped transparently.
    /// After <see cref="Http3FrameReadStatus.Error"/> the reader stays failed.
    /// </summary>
    public Http3FrameReadStatus TryReadFrame(ref ReadOnlySequence<byte> buffer, out Http3Frame frame, out Http3ErrorCode error)
    {
        frame = default;
        if (_failure != 0)
        {
            error = _failure;
            return Http3FrameReadStatus.Error;
        }

        while (true)
        {
            if (_skipRemaining > 0)
            {
                long skip = Math.Min(_skipRemaining, buffer.Length);
                buffer = buffer.Slice(skip);
                _skipRemaining -= skip;
                if (_skipRemaining > 0)
                {
                    error = Http3ErrorCode.NoError;
                    return Http3FrameReadStatus.NeedMoreData;
                }
            }

            if (_dataRemaining >= 0)
            {
                return ReadDataChunk(ref buffer, out frame, out error);
            }

            var reader = new SequenceReader<byte>(buffer);
            if (!Http3VarInt.TryRead(ref reader, out long type) || !Http3VarInt.TryRead(ref reader, out long length))
            {
                error = Http3ErrorCode.NoError;
                return Http3FrameReadStatus.NeedMoreData;
            }

            Http3ErrorCode check = CheckFrameType(type);
            if (check != Http3ErrorCode.NoError)
            {
                return Fail(check, out error);
            }

            if (type == Http3FrameType.Data)
            {
                _sawFirstFrame = true;
                buffer = buffer.Slice(reader.Position);
                _dataRemaining = length;
                _dataLength = length;
                FrameHeaderRead?.Invoke(type, length);
                return ReadDataChunk(ref buffer, out frame, out error);
            }

            if (!Http3FrameType.IsKnown(type))
            {
                // Reserved or unknown (extension) frame: its meaning is ignored, its bytes skipped.
                _sawFirstFrame = true;
                buffer = buffer.Slice(reader.Position);
                _skipRemaining = length;
                FrameHeaderRead?.Invoke(type, length);
                continue;
            }

            if ((type is Http3FrameType.CancelPush or Http3FrameType.GoAway or Http3FrameType.MaxPushId) && length > Http3VarInt.MaxLength)
            {
                return Fail(Http3ErrorCode.FrameError, out error);
            }

            if (length > _maxBufferedPayloadLength)
            {
                return Fail(Http3ErrorCode.ExcessiveLoad, out error);
            }

            if (reader.Remaining < length)
            {
                // Wait for the whole frame; the header is re-read next time (it is at most 16 bytes).
                error = Http3ErrorCode.NoError;
                return Http3FrameReadStatus.NeedMoreData;
            }

            // Only now is the frame consumed; state changes must wait for this point as the header is re-read on retry.
            _sawFirstFrame = true;
            FrameHeaderRead?.Invoke(type, length);
            ReadOnlySequence<byte> payload = buffer.Slice(reader.Position, length);
            buffer = buffer.Slice(payload.End);
            return ParsePayload(type, length, payload, out frame, out error);
        }
    }

    /// <summary>
    /// Call when the stream ends cleanly (FIN) after all its bytes went through <see cref="TryReadFrame"/>. Returns
    /// <see cref="Http3ErrorCode.ClosedCriticalStream"/> for a control stream, <see cref="Http3ErrorCode.FrameError"/>
    /// when a frame was truncated (including unconsumed bytes in <paramref name="remaining"/>), else
    /// <see cref="Http3ErrorCode.NoError"/>.
    /// </summary>
    public Http3ErrorCode CheckEndOfStream(in ReadOnlySequence<byte> remaining)
    {
        if (_kind == Http3StreamKind.Control)
        {
            return Http3ErrorCode.ClosedCriticalStream;
        }

        if (IsInsideFrame || !remaining.IsEmpty)
        {
            return Http3ErrorCode.FrameError;
        }

        return Http3ErrorCode.NoError;
    }

    private Http3FrameReadStatus ReadDataChunk(ref ReadOnlySequence<byte> buffer, out Http3Frame frame, out Http3ErrorCode error)
    {
        error = Http3ErrorCode.NoError;
        long take = Math.Min(_dataRemaining, buffer.Length);
        if (take == 0 && _dataRemaining > 0)
        {
            frame = default;
            return Http3FrameReadStatus.NeedMoreData;
        }

        ReadOnlySequence<byte> chunk = buffer.Slice(0, take);
        buffer = buffer.Slice(take);
        _dataRemaining -= take;
        bool end = _dataRemaining == 0;
        if (end)
        {
            _dataRemaining = -1;
        }

        frame = new Http3Frame(Http3FrameType.Data, _dataLength, chunk, 0, null, end);
        return Http3FrameReadStatus.Frame;
    }

    private Http3ErrorCode CheckFrameType(long type)
    {
        if (_kind == Http3StreamKind.Control && !_sawFirstFrame)
        {
            return type == Http3FrameType.Settings ? Http3ErrorCode.NoError : Http3ErrorCode.MissingSettings;
        }

        if (Http3FrameType.IsHttp2Only(type))
        {
            return Http3ErrorCode.FrameUnexpected;
        }

        return (_kind, type) switch
        {
            (Http3StreamKind.Control, Http3FrameType.Data or Http3FrameType.Headers or Http3FrameType.PushPromise or Http3FrameType.Settings) => Http3ErrorCode.FrameUnexpected,
            (Http3StreamKind.Control, Http3FrameType.MaxPushId) when _isClient => Http3ErrorCode.FrameUnexpected,
            (Http3StreamKind.Request, Http3FrameType.CancelPush or Http3FrameType.Settings or Http3FrameType.GoAway or Http3FrameType.MaxPushId) => Http3ErrorCode.FrameUnexpected,
            (Http3StreamKind.Request, Http3FrameType.PushPromise) when !_isClient => Http3ErrorCode.FrameUnexpected,
            (Http3StreamKind.Push, Http3FrameType.CancelPush or Http3FrameType.Settings or Http3FrameType.GoAway or Http3FrameType.MaxPushId or Http3FrameType.PushPromise) => Http3ErrorCode.FrameUnexpected,
            _ => Http3ErrorCode.NoError,
        };
    }

    private Http3FrameReadStatus ParsePayload(long type, long length, ReadOnlySequence<byte> payload, out Http3Frame frame, out Http3ErrorCode error)
    {
        frame = default;
        switch (type)
        {
            case Http3FrameType.Headers:
                frame = new Http3Frame(type, length, payload, 0, null, true);
                break;

            case Http3FrameType.Settings:
                if (!Http3Settings.TryParse(payload, out Http3Settings settings, out Http3ErrorCode settingsError))
                {
                    return Fail(settingsError, out error);
                }

                frame = new Http3Frame(type, length, payload, 0, settings, true);
                break;

            case Http3FrameType.PushPromise:
            {
                var reader = new SequenceReader<byte>(payload);
                if (!Http3VarInt.TryRead(ref reader, out long pushId))
                {
                    return Fail(Http3ErrorCode.FrameError, out error);
                }

                frame = new Http3Frame(type, length, payload.Slice(reader.Position), pushId, null, true);
                break;
            }

            default:
            {
                // CANCEL_PUSH, GOAWAY, MAX_PUSH_ID: exactly one variable-length integer.
                var reader = new SequenceReader<byte>(payload);
                if (!Http3VarInt.TryRead(ref reader, out long id) || !reader.End)
                {
                    return Fail(Http3ErrorCode.FrameError, out error);
                }

                if (type == Http3FrameType.GoAway && _isClient && (id & 0x3) != 0)
                {
                    // From a server, GOAWAY carries a client-initiated bidirectional stream ID.
                    return Fail(Http3ErrorCode.IdError, out error);
                }

                frame = new Http3Frame(type, length, payload, id, null, true);
                break;
            }
        }

        error = Http3ErrorCode.NoError;
        return Http3FrameReadStatus.Frame;
    }

    private Http3FrameReadStatus Fail(Http3ErrorCode code, out Http3ErrorCode error)
    {
        _failure = code;
        error = code;
        return Http3FrameReadStatus.Error;
    }
}

/// <summary>Reads unidirectional stream headers (RFC 9114 §6.2).</summary>
public static class Http3StreamHeaderReader
{
    /// <summary>Reads the stream type; false until all of it has arrived. Consumes it from <paramref name="buffer"/>.</summary>
    public static bool TryReadStreamType(ref ReadOnlySequence<byte> buffer, out long streamType)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!Http3VarInt.TryRead(ref reader, out streamType))
        {
            return false;
        }

        buffer = buffer.Slice(reader.Position);
        return true;
    }

    /// <summary>Reads the push ID that follows the push stream type; false until all of it has arrived.</summary>
    public static bool TryReadPushId(ref ReadOnlySequence<byte> buffer, out long pushId) => TryReadStreamType(ref buffer, out pushId);
}

/// <summary>Stateless frame header parsing, for callers that drive their own state machine.</summary>
public static class Http3FrameHeaderParser
{
    /// <summary>Parses a frame header (Type, Length) from a span; false when it has not fully arrived.</summary>
    public static bool TryReadFrameHeader(ReadOnlySpan<byte> source, out long type, out long payloadLength, out int headerLength)
    {
        if (Http3VarInt.TryRead(source, out type, out int typeLength)
            && Http3VarInt.TryRead(source.Slice(typeLength), out payloadLength, out int lengthLength))
        {
            headerLength = typeLength + lengthLength;
            return true;
        }

        type = 0;
        payloadLength = 0;
        headerLength = 0;
        return false;
    }

    /// <summary>Parses a frame header from a sequence and consumes it; false (consuming nothing) when it has not fully arrived.</summary>
    public static bool TryReadFrameHeader(ref ReadOnlySequence<byte> buffer, out long type, out long payloadLength)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (Http3VarInt.TryRead(ref reader, out type) && Http3VarInt.TryRead(ref reader, out payloadLength))
        {
            buffer = buffer.Slice(reader.Position);
            return true;
        }

        type = 0;
        payloadLength = 0;
        return false;
    }
}
