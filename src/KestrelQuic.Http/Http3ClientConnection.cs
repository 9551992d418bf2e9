using System.Buffers;
using KestrelQuic.Http3;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http;

/// <summary>
/// One HTTP/3 connection of the client (RFC 9114 §3, §6): the QUIC connection, our control stream with SETTINGS, the
/// QPACK encoder and decoder streams, and a loop that accepts the server's unidirectional streams (control, QPACK).
/// Request streams are run by <see cref="Http3RequestStream"/>; this class hands out their streams and tracks them for
/// GOAWAY.
/// </summary>
internal sealed class Http3ClientConnection : IAsyncDisposable
{
    private const long H3NoError = (long)Http3ErrorCode.NoError;

    private readonly Http3ConnectionPool _pool;
    private readonly QuicConnection _quic;
    private readonly Http3HandlerOptions _options;
    private readonly QpackDecoder _decoder;
    private readonly QpackEncoder _encoder;
    private readonly SemaphoreSlim _decoderStreamLock = new(1, 1);
    private readonly SemaphoreSlim _encoderStreamLock = new(1, 1);
    private readonly HashSet<Http3RequestStream> _requests = [];
    private readonly object _sync = new();
    private readonly CancellationTokenSource _closing = new();
    private readonly Http3Qlog? _qlog;
    private QuicStream? _control;
    private QuicStream? _qpackEncoderStream;
    private QuicStream? _qpackDecoderStream;
    private TaskCompletionSource _insertCountChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _goAwayId = long.MaxValue;
    private int _reserved;        // requests assigned to this connection (active or about to open a stream)
    private int _unopened;        // of those, requests that have not opened their stream yet
    private long _dynamicSections; // response field sections that referred to the dynamic table
    private Exception? _abortException;
    private Task? _acceptLoop;
    private bool _disposed;

    private Http3ClientConnection(Http3ConnectionPool pool, QuicConnection quic, Http3HandlerOptions options)
    {
        _pool = pool;
        _quic = quic;
        _options = options;
        _decoder = new QpackDecoder(options.QpackMaxTableCapacity, options.QpackBlockedStreams, options.MaxResponseHeadersLength * 1024L);
        _encoder = new QpackEncoder(options.QpackEncoderMaxTableCapacity);
        _qlog = Http3Qlog.For(quic);
    }

    /// <summary>HTTP/3 events for the connection's qlog file; null when qlog is off.</summary>
    public Http3Qlog? Qlog => _qlog;

    /// <summary>The QUIC connection.</summary>
    public QuicConnection Quic => _quic;

    /// <summary>The server's SETTINGS, once its control stream delivered them.</summary>
    public Http3Settings? PeerSettings { get; private set; }

    /// <summary>The lowest stream ID the server said in GOAWAY it will not process; <see cref="long.MaxValue"/> without GOAWAY.</summary>
    public long GoAwayId => Volatile.Read(ref _goAwayId);

    /// <summary>False once the server sent GOAWAY or the connection failed: no new requests go here.</summary>
    public bool IsUsable => Volatile.Read(ref _goAwayId) == long.MaxValue && _abortException is null && !_disposed && _quic.CloseReason is null;

    /// <summary>Requests assigned to this connection.</summary>
    public int Reserved => Volatile.Read(ref _reserved);

    /// <summary>The QPACK encoder for request headers; lock on it while using it.</summary>
    public QpackEncoder Encoder => _encoder;

    /// <summary>The QPACK decoder for response headers; lock on it while using it.</summary>
    public QpackDecoder Decoder => _decoder;

    /// <summary>Response field sections decoded that referred to the dynamic table (a Required Insert Count above 0).</summary>
    public long DynamicFieldSectionsDecoded => Interlocked.Read(ref _dynamicSections);

    /// <summary>Sends pending QPACK encoder-stream instructions (insertions) in the order they were produced.</summary>
    public async ValueTask FlushEncoderInstructionsAsync()
    {
        QuicStream? stream = _qpackEncoderStream;
        if (stream is null)
        {
            return;
        }

        await _encoderStreamLock.WaitAsync().ConfigureAwait(false);
        try
        {
            ArrayBufferWriter<byte>? output = null;
            lock (_encoder)
            {
                if (_encoder.HasPendingEncoderInstructions)
                {
                    output = new ArrayBufferWriter<byte>(64);
                    _encoder.WriteEncoderInstructions(output);
                }
            }

            if (output is not null)
            {
                await stream.WriteAsync(output.WrittenMemory).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
        {
            // The connection is going away; its close reports the failure.
        }
        finally
        {
            _encoderStreamLock.Release();
        }
    }

    /// <summary>Connects, opens our control and QPACK streams and starts accepting the server's streams.</summary>
    public static async Task<Http3ClientConnection> ConnectAsync(Http3ConnectionPool pool, Http3HandlerOptions options, CancellationToken cancellationToken)
    {
        QuicConnection quic = await QuicConnection.ConnectAsync(pool.CreateConnectionOptions(), cancellationToken).ConfigureAwait(false);
        var connection = new Http3ClientConnection(pool, quic, options);
        try
        {
            await connection.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await quic.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return connection;
    }

    private async Task StartAsync(CancellationToken cancellationToken)
    {
        // Control stream: type, then SETTINGS first (RFC 9114 §6.2.1).
        var settings = new Http3Settings
        {
            QpackMaxTableCapacity = _options.QpackMaxTableCapacity,
            QpackBlockedStreams = _options.QpackBlockedStreams,
            MaxFieldSectionSize = _options.MaxResponseHeadersLength * 1024L,
        };
        var buffer = new ArrayBufferWriter<byte>(64);
        Http3FrameWriter.WriteStreamType(buffer, Http3StreamType.Control);
        Http3FrameWriter.WriteSettingsFrame(buffer, settings);
        _control = await _quic.OpenOutboundStreamAsync(QuicStreamType.Unidirectional, cancellationToken).ConfigureAwait(false);
        if (_qlog is { } qlog)
        {
            var payload = new ArrayBufferWriter<byte>(16);
            settings.WritePayload(payload);
            qlog.StreamTypeSet(local: true, _control.Id, Http3StreamType.Control);
            qlog.Settings(created: true, _control.Id, payload.WrittenSpan.ToArray());
            qlog.ParametersSet(local: true, payload.WrittenSpan.ToArray());
        }

        await _control.WriteAsync(buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);

        // QPACK streams (RFC 9204 §4.2).
        buffer.Clear();
        Http3FrameWriter.WriteStreamType(buffer, Http3StreamType.QpackEncoder);
        _qpackEncoderStream = await _quic.OpenOutboundStreamAsync(QuicStreamType.Unidirectional, cancellationToken).ConfigureAwait(false);
        _qlog?.StreamTypeSet(local: true, _qpackEncoderStream.Id, Http3StreamType.QpackEncoder);
        await _qpackEncoderStream.WriteAsync(buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);

        buffer.Clear();
        Http3FrameWriter.WriteStreamType(buffer, Http3StreamType.QpackDecoder);
        _qpackDecoderStream = await _quic.OpenOutboundStreamAsync(QuicStreamType.Unidirectional, cancellationToken).ConfigureAwait(false);
        _qlog?.StreamTypeSet(local: true, _qpackDecoderStream.Id, Http3StreamType.QpackDecoder);
        await _qpackDecoderStream.WriteAsync(buffer.WrittenMemory, cancellationToken).ConfigureAwait(false);

        _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
        _ = _quic.Closed.ContinueWith(
            static (_, state) => ((Http3ClientConnection)state!).OnQuicClosed(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Assigns a request to this connection if it has room: below the handler's per-connection limit, and (when the
    /// pool may open more connections) below what the server's MAX_STREAMS allows right now.
    /// </summary>
    public bool TryReserve(bool mayOpenMore)
    {
        lock (_sync)
        {
            if (!IsUsable)
            {
                return false;
            }

            if (mayOpenMore)
            {
                if (_reserved >= _options.MaxConcurrentStreamsPerConnection || _unopened >= _quic.GetAvailableOutboundStreamCount(QuicStreamType.Bidirectional))
                {
                    return false;
                }
            }

            _reserved++;
            _unopened++;
            return true;
        }
    }

    /// <summary>Reserves unconditionally (every connection is full and no more may be opened): the request waits for a stream here.</summary>
    public void ForceReserve()
    {
        lock (_sync)
        {
            _reserved++;
            _unopened++;
        }
    }

    /// <summary>Releases a reservation made by <see cref="TryReserve"/> for a request that never opened its stream.</summary>
    public void CancelReservation()
    {
        lock (_sync)
        {
            _reserved--;
            _unopened--;
        }

        DisposeIfDrained();
    }

    /// <summary>Opens the request stream for a reserved request; throws <see cref="Http3RetryException"/> when this connection can no longer take it.</summary>
    public async ValueTask<QuicStream> OpenRequestStreamAsync(Http3RequestStream request, CancellationToken cancellationToken)
    {
        QuicStream stream;
        try
        {
            if (!IsUsable)
            {
                throw new Http3RetryException("The connection is no longer accepting requests.");
            }

            stream = await _quic.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException)
        {
            // The connection closed before the request left: nothing was processed.
            lock (_sync)
            {
                _unopened--;
            }

            throw new Http3RetryException("The connection closed before the request was sent.", e);
        }
        catch
        {
            lock (_sync)
            {
                _unopened--;
            }

            throw;
        }

        lock (_sync)
        {
            _unopened--;
            if (stream.Id >= _goAwayId)
            {
                stream.Abort(QuicAbortDirection.Both, (long)Http3ErrorCode.RequestCancelled);
                throw new Http3RetryException("The server sent GOAWAY before the request was sent.");
            }

            _requests.Add(request);
        }

        return stream;
    }

    /// <summary>A request is done with this connection (response read, failed or cancelled).</summary>
    public void OnRequestCompleted(Http3RequestStream request)
    {
        lock (_sync)
        {
            _requests.Remove(request);
            _reserved--;
        }

        DisposeIfDrained();
    }

    /// <summary>
    /// A connection that takes no new requests (GOAWAY, failure, closed by the peer) is released once nothing is in
    /// flight on it; after GOAWAY that is the graceful close of RFC 9114 §5.2.
    /// </summary>
    private void DisposeIfDrained()
    {
        bool drained;
        lock (_sync)
        {
            drained = _reserved == 0 && !_disposed && !IsUsable;
        }

        if (drained)
        {
            _ = DisposeAsync().AsTask();
        }
    }

    /// <summary>
    /// Decodes a HEADERS payload received on <paramref name="streamId"/>, waiting while it is blocked on the dynamic
    /// table (RFC 9204 §2.1.2). Returns the status; QPACK connection errors close the connection.
    /// </summary>
    public async ValueTask<QpackDecodeStatus> DecodeFieldSectionAsync(long streamId, ReadOnlySequence<byte> section, Http3FieldCollector collector, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            QpackDecodeResult result;
            lock (_decoder)
            {
                result = _decoder.DecodeFieldSection(streamId, section, collector);
                wait = _insertCountChanged.Task;
            }

            switch (result.Status)
            {
                case QpackDecodeStatus.Blocked:
                    await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
                    ThrowIfAborted();
                    continue;
                case QpackDecodeStatus.Error:
                    Abort(result.ErrorCode, result.Error.Message ?? "QPACK error");
                    ThrowIfAborted();
                    break;
            }

            if (result.RequiredInsertCount > 0)
            {
                Interlocked.Increment(ref _dynamicSections);
            }

            await FlushDecoderInstructionsAsync().ConfigureAwait(false);
            return result.Status;
        }
    }

    /// <summary>A request stream was abandoned before its field sections were decoded (Stream Cancellation, RFC 9204 §4.4.2).</summary>
    public void AbandonStream(long streamId)
    {
        lock (_decoder)
        {
            _decoder.AbandonStream(streamId);
        }

        _ = FlushDecoderInstructionsAsync();
    }

    /// <summary>Throws the connection's failure as an <see cref="HttpRequestException"/> if it has one.</summary>
    public void ThrowIfAborted()
    {
        if (_abortException is Exception e)
        {
            throw e;
        }
    }

    /// <summary>The failure of the connection, if it failed.</summary>
    public Exception? AbortException => _abortException;

    /// <summary>Closes the connection with an HTTP/3 connection error (RFC 9114 §8).</summary>
    public void Abort(Http3ErrorCode code, string message)
    {
        lock (_sync)
        {
            _abortException ??= Http3Errors.Request(HttpRequestError.HttpProtocolError, $"HTTP/3 connection error: {message}.", (long)code);
        }

        _pool.OnConnectionUnusable(this);
        _ = _quic.CloseAsync((long)code).AsTask();
    }

    /// <summary>Gracefully closes the connection (H3_NO_ERROR).</summary>
    public async ValueTask DisposeAsync()
    {
        lock (_sync)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _pool.OnConnectionUnusable(this);
        _closing.Cancel();
        await _quic.CloseAsync(H3NoError).ConfigureAwait(false);
        await _quic.DisposeAsync().ConfigureAwait(false);
        if (_acceptLoop is not null)
        {
            await _acceptLoop.ConfigureAwait(false);
        }

        _closing.Dispose();
    }

    private void OnQuicClosed()
    {
        _pool.OnConnectionUnusable(this);
        lock (_decoder)
        {
            _insertCountChanged.TrySetResult();
        }

        DisposeIfDrained();
    }

    private async Task FlushDecoderInstructionsAsync()
    {
        QuicStream? stream = _qpackDecoderStream;
        if (stream is null)
        {
            return;
        }

        await _decoderStreamLock.WaitAsync().ConfigureAwait(false);
        try
        {
            ArrayBufferWriter<byte>? output = null;
            lock (_decoder)
            {
                if (_decoder.HasPendingDecoderInstructions)
                {
                    output = new ArrayBufferWriter<byte>(16);
                    _decoder.WriteDecoderInstructions(output);
                }
            }

            if (output is not null)
            {
                await stream.WriteAsync(output.WrittenMemory).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
        {
            // The connection is going away; its close reports the failure.
        }
        finally
        {
            _decoderStreamLock.Release();
        }
    }

    private async Task AcceptLoopAsync()
    {
        bool sawControl = false, sawEncoder = false, sawDecoder = false;
        try
        {
            while (true)
            {
                QuicStream stream = await _quic.AcceptInboundStreamAsync(_closing.Token).ConfigureAwait(false);
                if (stream.Type == QuicStreamType.Bidirectional)
                {
                    // Servers must not open bidirectional streams (RFC 9114 §6.1); we allow none, so this is unreachable
                    // unless the peer ignores our limit, which QUIC itself rejects.
                    stream.Abort(QuicAbortDirection.Both, (long)Http3ErrorCode.StreamCreationError);
                    continue;
                }

                long type = await ReadStreamTypeAsync(stream).ConfigureAwait(false);
                if (type >= 0)
                {
                    _qlog?.StreamTypeSet(local: false, stream.Id, type);
                }

                switch (type)
                {
                    case Http3StreamType.Control when !sawControl:
                        sawControl = true;
                        _ = Task.Run(() => RunControlStreamAsync(stream));
                        break;
                    case Http3StreamType.QpackEncoder when !sawEncoder:
                        sawEncoder = true;
                        _ = Task.Run(() => RunQpackEncoderStreamAsync(stream));
                        break;
                    case Http3StreamType.QpackDecoder when !sawDecoder:
                        sawDecoder = true;
                        _ = Task.Run(() => RunQpackDecoderStreamAsync(stream));
                        break;
                    case Http3StreamType.Control or Http3StreamType.QpackEncoder or Http3StreamType.QpackDecoder:
                        Abort(Http3ErrorCode.StreamCreationError, "second critical stream of type " + type);
                        return;
                    case Http3StreamType.Push:
                        // We never sent MAX_PUSH_ID, so no push ID is valid (RFC 9114 §4.6).
                        Abort(Http3ErrorCode.IdError, "push stream without MAX_PUSH_ID");
                        return;
                    case -1:
                        break;
                    default:
                        // Unknown or reserved stream types are ignored (RFC 9114 §6.2).
                        stream.Abort(QuicAbortDirection.Read, (long)Http3ErrorCode.StreamCreationError);
                        break;
                }
            }
        }
        catch (Exception e) when (e is QuicException or OperationCanceledException or ObjectDisposedException)
        {
            // Connection closed.
        }
    }

    private static async Task<long> ReadStreamTypeAsync(QuicStream stream)
    {
        byte[] bytes = new byte[8];
        int length = 0;
        while (true)
        {
            int needed = length == 0 ? 1 : 1 << (bytes[0] >> 6);
            if (length == needed)
            {
                var sequence = new ReadOnlySequence<byte>(bytes, 0, length);
                Http3StreamHeaderReader.TryReadStreamType(ref sequence, out long type);
                return type;
            }

            int n = await stream.ReadAsync(bytes.AsMemory(length, needed - length)).ConfigureAwait(false);
            if (n == 0)
            {
                return -1;
            }

            length += n;
        }
    }

    private async Task RunControlStreamAsync(QuicStream stream)
    {
        var reader = new Http3FrameReader(Http3StreamKind.Control, isClient: true);
        if (_qlog is { } qlog)
        {
            // Frames the reader skips (reserved, extensions) are seen only here; the known ones are traced below.
            reader.FrameHeaderRead = (type, length) =>
            {
                if (!Http3FrameType.IsKnown(type))
                {
                    qlog.Frame(created: false, stream.Id, type, length);
                }
            };
        }

        await using var input = new Http3StreamInput(stream, initialSize: 1024, maxSize: 64 * 1024);
        try
        {
            while (true)
            {
                ReadOnlySequence<byte> buffer = input.Buffered;
                Http3FrameReadStatus status = reader.TryReadFrame(ref buffer, out Http3Frame frame, out Http3ErrorCode error);
                input.ConsumeTo(buffer);
                if (status == Http3FrameReadStatus.Error)
                {
                    Abort(error, "invalid frame on the control stream");
                    return;
                }

                if (status == Http3FrameReadStatus.NeedMoreData)
                {
                    if (!await input.ReadMoreAsync(CancellationToken.None).ConfigureAwait(false))
                    {
                        Abort(Http3ErrorCode.ClosedCriticalStream, "the server closed its control stream");
                        return;
                    }

                    continue;
                }

                if (_qlog is { } trace)
                {
                    if (frame.Type == Http3FrameType.Settings)
                    {
                        byte[] payload = frame.Payload.ToArray();
                        trace.Settings(created: false, stream.Id, payload);
                        trace.ParametersSet(local: false, payload);
                    }
                    else
                    {
                        trace.Frame(created: false, stream.Id, frame.Type, frame.Length, frame.Id);
                    }
                }

                switch (frame.Type)
                {
                    case Http3FrameType.Settings:
                        PeerSettings = frame.Settings;
                        lock (_encoder)
                        {
                            _encoder.ApplyPeerSettings(frame.Settings!);
                        }

                        await FlushEncoderInstructionsAsync().ConfigureAwait(false);
                        break;
                    case Http3FrameType.GoAway:
                        OnGoAway(frame.Id);
                        break;
                    case Http3FrameType.CancelPush:
                        Abort(Http3ErrorCode.IdError, "CANCEL_PUSH without MAX_PUSH_ID");
                        return;
                }
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
        {
            // The connection closed; requests see that themselves.
        }
    }

    private void OnGoAway(long id)
    {
        List<Http3RequestStream> refused = [];
        bool idle;
        lock (_sync)
        {
            if (id > _goAwayId)
            {
                // GOAWAY IDs must not increase (RFC 9114 §5.2).
                _abortException ??= Http3Errors.Request(HttpRequestError.HttpProtocolError, "HTTP/3 connection error: GOAWAY ID increased.", (long)Http3ErrorCode.IdError);
            }

            _goAwayId = Math.Min(id, _goAwayId);
            foreach (Http3RequestStream request in _requests)
            {
                if (request.StreamId >= _goAwayId)
                {
                    refused.Add(request);
                }
            }

            idle = _reserved == 0;
        }

        _pool.OnConnectionUnusable(this);
        foreach (Http3RequestStream request in refused)
        {
            request.OnRefusedByGoAway();
        }

        if (_abortException is not null)
        {
            _ = _quic.CloseAsync((long)Http3ErrorCode.IdError).AsTask();
        }
        else if (idle)
        {
            DisposeIfDrained();
        }
    }

    private async Task RunQpackEncoderStreamAsync(QuicStream stream)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            while (true)
            {
                int n = await stream.ReadAsync(buffer).ConfigureAwait(false);
                if (n == 0)
                {
                    Abort(Http3ErrorCode.ClosedCriticalStream, "the server closed its QPACK encoder stream");
                    return;
                }

                bool ok;
                QpackError error;
                lock (_decoder)
                {
                    ok = _decoder.ProcessEncoderStream(buffer.AsSpan(0, n), out error);
                    TaskCompletionSource changed = _insertCountChanged;
                    _insertCountChanged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    changed.TrySetResult();
                }

                if (!ok)
                {
                    Abort(error.Code, error.Message ?? "QPACK encoder stream error");
                    return;
                }

                await FlushDecoderInstructionsAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task RunQpackDecoderStreamAsync(QuicStream stream)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(1024);
        try
        {
            while (true)
            {
                int n = await stream.ReadAsync(buffer).ConfigureAwait(false);
                if (n == 0)
                {
                    Abort(Http3ErrorCode.ClosedCriticalStream, "the server closed its QPACK decoder stream");
                    return;
                }

                bool ok;
                QpackError error;
                lock (_encoder)
                {
                    ok = _encoder.ProcessDecoderStream(buffer.AsSpan(0, n), out error);
                }

                if (!ok)
                {
                    Abort(error.Code, error.Message ?? "QPACK decoder stream error");
                    return;
                }
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
