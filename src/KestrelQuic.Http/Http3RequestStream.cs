using System.Buffers;
using System.Globalization;
using System.Net;
using KestrelQuic.Http3;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http;

/// <summary>
/// One request on a bidirectional stream (RFC 9114 §4.1): HEADERS, the request body as DATA frames (streamed from the
/// <see cref="HttpContent"/>, concurrently with the response), then the response HEADERS, a lazily read body and
/// trailers. Cancellation aborts the stream with H3_REQUEST_CANCELLED.
/// </summary>
internal sealed class Http3RequestStream
{
    private const long RequestCancelled = (long)Http3ErrorCode.RequestCancelled;

    private readonly Http3ClientConnection _connection;
    private readonly HttpRequestMessage _request;
    private readonly Http3HandlerOptions _options;
    private readonly Http3FrameReader _reader;
    private readonly Http3FieldCollector _fields = new();
    private readonly TaskCompletionSource _continue = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _finalStatus = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private QuicStream? _stream;
    private Http3StreamInput? _input;
    private HttpResponseMessage? _response;
    private Task? _sendBody;
    private long _chunkRemaining;
    private long _bodyReceived;
    private long _expectedLength = -1;
    private bool _responseStarted;
    private bool _bodyFinished;
    private bool _sawTrailers;
    private int _completed;
    private int _reading;
    private volatile bool _refused;

    public Http3RequestStream(Http3ClientConnection connection, HttpRequestMessage request, Http3HandlerOptions options)
    {
        _connection = connection;
        _request = request;
        _options = options;
        _reader = new Http3FrameReader(Http3StreamKind.Request, isClient: true, maxBufferedPayloadLength: options.MaxResponseHeadersLength * 1024L);
    }

    /// <summary>The QUIC stream ID, <see cref="long.MaxValue"/> until the stream is open.</summary>
    public long StreamId => _stream?.Id ?? long.MaxValue;

    public Http3ClientConnection Connection => _connection;

    /// <summary>Sends the request and reads the response headers; the body is read later through the response content.</summary>
    public async Task<HttpResponseMessage> SendAsync(CancellationToken cancellationToken)
    {
        try
        {
            // 0-RTT data can be replayed by an attacker: only idempotent requests without a body go before the handshake completes.
            Task handshake = _connection.Quic.HandshakeCompleted;
            if (!handshake.IsCompleted && !IsSafeForEarlyData(_request))
            {
                await handshake.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            _stream = await _connection.OpenRequestStreamAsync(this, cancellationToken).ConfigureAwait(false);
        }
        catch (QuicException e)
        {
            _connection.CancelReservation();
            throw new HttpRequestException(HttpRequestError.ConnectionError, "The HTTP/3 connection failed: " + e.Message, e);
        }
        catch
        {
            _connection.CancelReservation();
            throw;
        }

        _input = new Http3StreamInput(_stream, 4096, (_options.MaxResponseHeadersLength * 1024) + Http3FrameWriter.MaxFrameHeaderLength);
        Http3Qlog? qlog = _connection.Qlog;
        if (qlog is not null)
        {
            qlog.StreamTypeSet(local: true, _stream.Id, streamType: null);
            _reader.FrameHeaderRead = OnFrameHeaderRead;
        }

        CancellationTokenRegistration registration = cancellationToken.UnsafeRegister(static s => ((Http3RequestStream)s!).AbortStream(), this);
        try
        {
            HttpContent? content = _request.Content;
            long? contentLength = content?.Headers.ContentLength;
            var headers = new ArrayBufferWriter<byte>(256);
            List<KeyValuePair<string, string>>? traced = qlog is null ? null : [];
            Http3RequestHeaderWriter.WriteHeadersFrame(headers, _request, _connection.Encoder, _stream.Id, contentLength, traced);
            if (qlog is not null && Http3FrameHeaderParser.TryReadFrameHeader(headers.WrittenSpan, out _, out long headersPayload, out _))
            {
                qlog.Headers(created: true, _stream.Id, traced!, status: -1, headersPayload);
            }

            // Insertions the section refers to go out first (the server would otherwise wait for them).
            await _connection.FlushEncoderInstructionsAsync().ConfigureAwait(false);

            if (content is null)
            {
                await _stream.WriteAsync(headers.WrittenMemory, completeWrites: true, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await _stream.WriteAsync(headers.WrittenMemory, cancellationToken).ConfigureAwait(false);
                _sendBody = SendBodyAsync(content, contentLength, cancellationToken);
            }

            Task<HttpResponseMessage> readHeaders = ReadResponseHeadersAsync(cancellationToken);
            if (_sendBody is not null)
            {
                // The server may answer (and stop reading) before the body is sent; a body failure before any
                // answer fails the request.
                Task first = await Task.WhenAny(_sendBody, readHeaders).ConfigureAwait(false);
                if (first == _sendBody && _sendBody.IsFaulted && !readHeaders.IsCompleted)
                {
                    AbortStream();
                    await _sendBody.ConfigureAwait(false);
                }
            }

            HttpResponseMessage response = await readHeaders.ConfigureAwait(false);
            if (_sendBody is { IsCompleted: false })
            {
                _ = _sendBody.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            return response;
        }
        catch (Exception e)
        {
            AbortStream();
            Complete();
            if (_refused)
            {
                throw new Http3RetryException("The server refused the request with GOAWAY.", e);
            }

            if (cancellationToken.IsCancellationRequested)
            {
                throw new TaskCanceledException("The request was cancelled.", e, cancellationToken);
            }

            throw MapRequestException(e);
        }
        finally
        {
            registration.Dispose();
        }
    }

    private static bool IsSafeForEarlyData(HttpRequestMessage request) =>
        request.Content is null && (request.Method == HttpMethod.Get || request.Method == HttpMethod.Head || request.Method == HttpMethod.Options || request.Method == HttpMethod.Trace);

    /// <summary>The server's GOAWAY covers this stream: it will not be processed; fail it so it is retried.</summary>
    public void OnRefusedByGoAway()
    {
        if (!_responseStarted)
        {
            _refused = true;
            AbortStream();
        }
    }

    private Exception MapRequestException(Exception e)
    {
        switch (e)
        {
            case HttpRequestException:
                return e;
            case QuicException { QuicError: QuicError.StreamAborted, ApplicationErrorCode: long code } when code == (long)Http3ErrorCode.RequestRejected:
                // H3_REQUEST_REJECTED: not processed, safe to retry (RFC 9114 §8.1).
                return new Http3RetryException("The server rejected the request (H3_REQUEST_REJECTED).", e);
            case QuicException q when _connection.AbortException is Exception connectionError:
                return Http3Errors.Request(HttpRequestError.HttpProtocolError, connectionError.Message, ErrorCodeOf(connectionError), q);
            case QuicException { QuicError: QuicError.StreamAborted } q:
                return Http3Errors.Request(HttpRequestError.HttpProtocolError, "The server aborted the request stream.", q.ApplicationErrorCode, q);
            case QuicException q:
                return Http3Errors.Request(HttpRequestError.HttpProtocolError, "The HTTP/3 connection failed: " + q.Message, q.ApplicationErrorCode, q);
            default:
                return new HttpRequestException(HttpRequestError.Unknown, "The HTTP/3 request failed: " + e.Message, e);
        }
    }

    private static long? ErrorCodeOf(Exception e) => e.Data[Http3Errors.ErrorCodeKey] is long code ? code : null;

    private async Task SendBodyAsync(HttpContent content, long? contentLength, CancellationToken cancellationToken)
    {
        await Task.Yield();
        var body = new Http3RequestBodyStream(_stream!, _connection.Qlog);
        try
        {
            if (_request.Headers.ExpectContinue == true)
            {
                // Expect: 100-continue (RFC 9110 §10.1.1): hold the body until 100, a final response, or the timeout.
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                Task delay = Task.Delay(_options.Expect100ContinueTimeout, timeout.Token);
                await Task.WhenAny(_continue.Task, _finalStatus.Task, delay).ConfigureAwait(false);
                await timeout.CancelAsync().ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
                if (_finalStatus.Task.IsCompletedSuccessfully && _finalStatus.Task.Result >= 300)
                {
                    // Refused without reading the body: cancel our half of the stream instead of sending it.
                    _stream!.Abort(QuicAbortDirection.Write, RequestCancelled);
                    return;
                }
            }

            await content.CopyToAsync(body, cancellationToken).ConfigureAwait(false);
            if (contentLength is long expected && body.BytesWritten != expected)
            {
                throw new HttpRequestException(HttpRequestError.Unknown, $"The request content sent {body.BytesWritten} bytes but declared Content-Length {expected}.");
            }

            _stream!.CompleteWrites();
        }
        catch (QuicException e) when (e.QuicError == QuicError.StreamAborted && e.ApplicationErrorCode == (long)Http3ErrorCode.NoError)
        {
            // STOP_SENDING with H3_NO_ERROR: the server answered without needing the rest of the body (RFC 9114 §4.1).
        }
    }

    private async Task<HttpResponseMessage> ReadResponseHeadersAsync(CancellationToken cancellationToken)
    {
        Http3StreamInput input = _input!;
        while (true)
        {
            (FrameResult result, Http3Frame frame, ReadOnlySequence<byte> rest) = await ReadFrameAsync(input, cancellationToken).ConfigureAwait(false);
            if (result != FrameResult.Frame)
            {
                throw Http3Errors.Request(HttpRequestError.ResponseEnded, "The server ended the request stream without a response.", (long)Http3ErrorCode.RequestIncomplete);
            }

            switch (frame.Type)
            {
                case Http3FrameType.Headers:
                    break;
                case Http3FrameType.Data:
                    throw ConnectionError(Http3ErrorCode.FrameUnexpected, "DATA before HEADERS");
                default:
                    // PUSH_PROMISE: we never sent MAX_PUSH_ID (RFC 9114 §7.2.5).
                    throw ConnectionError(Http3ErrorCode.IdError, "PUSH_PROMISE without MAX_PUSH_ID");
            }

            await DecodeAsync(frame.Payload, trailers: false, cancellationToken).ConfigureAwait(false);
            input.ConsumeTo(rest);
            int statusCode = _fields.Status;
            if (statusCode < 0)
            {
                throw StreamError(Http3ErrorCode.MessageError, "The response has no :status.");
            }

            if (statusCode < 200)
            {
                if (statusCode == 101)
                {
                    throw StreamError(Http3ErrorCode.MessageError, "101 Switching Protocols is not allowed in HTTP/3.");
                }

                // Interim responses are not surfaced; 100 releases a body held by Expect: 100-continue.
                if (statusCode == 100)
                {
                    _continue.TrySetResult();
                }

                continue;
            }

            _finalStatus.TrySetResult(statusCode);
            _responseStarted = true;
            return BuildResponse(statusCode);
        }
    }

    private HttpResponseMessage BuildResponse(int statusCode)
    {
        var content = new Http3ResponseContent(new Http3ResponseStream(this));
        var response = new HttpResponseMessage((HttpStatusCode)statusCode)
        {
            Version = HttpVersion.Version30,
            RequestMessage = _request,
            Content = content,
        };

        foreach (KeyValuePair<string, string> field in _fields.Fields)
        {
            if (field.Key == "content-length")
            {
                if (!long.TryParse(field.Value, NumberStyles.None, CultureInfo.InvariantCulture, out long length) || (_expectedLength >= 0 && _expectedLength != length))
                {
                    throw StreamError(Http3ErrorCode.MessageError, "Invalid content-length.");
                }

                _expectedLength = length;
            }

            if (!response.Headers.TryAddWithoutValidation(field.Key, field.Value))
            {
                content.Headers.TryAddWithoutValidation(field.Key, field.Value);
            }
        }

        if (_request.Method == HttpMethod.Head || statusCode is 204 or 304)
        {
            // No content whatever content-length says (RFC 9110 §6.4.1).
            _expectedLength = -1;
        }

        _response = response;
        return response;
    }

    /// <summary>Reads body bytes; 0 at the end (trailers, if any, are then in the response's TrailingHeaders).</summary>
    public async ValueTask<int> ReadBodyAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (_bodyFinished || destination.IsEmpty)
        {
            return 0;
        }

        Volatile.Write(ref _reading, 1);
        Http3StreamInput? input = _input;
        if (input is null)
        {
            Volatile.Write(ref _reading, 0);
            throw Http3Errors.Body(HttpRequestError.ResponseEnded, "The response was aborted.");
        }

        try
        {
            while (true)
            {
                if (_chunkRemaining > 0)
                {
                    int n = input.CopyTo(destination.Span.Slice(0, (int)Math.Min(destination.Length, _chunkRemaining)));
                    _chunkRemaining -= n;
                    return Received(n);
                }

                if (input.BufferedLength == 0 && _reader.DataPayloadRemaining > 0)
                {
                    // Large bodies: straight from the QUIC stream into the caller's buffer.
                    int n = await input.ReadDirectAsync(destination.Slice(0, (int)Math.Min(destination.Length, _reader.DataPayloadRemaining)), cancellationToken).ConfigureAwait(false);
                    if (n == 0)
                    {
                        throw ConnectionError(Http3ErrorCode.FrameError, "the request stream ended inside a DATA frame");
                    }

                    _reader.ConsumeDataPayload(n);
                    return Received(n);
                }

                (FrameResult result, Http3Frame frame, ReadOnlySequence<byte> rest) = await ReadFrameAsync(input, cancellationToken).ConfigureAwait(false);
                if (result == FrameResult.DataPending)
                {
                    continue;
                }

                if (result == FrameResult.End)
                {
                    FinishBody();
                    return 0;
                }

                if (_sawTrailers)
                {
                    throw ConnectionError(Http3ErrorCode.FrameUnexpected, "a frame after the trailers");
                }

                switch (frame.Type)
                {
                    case Http3FrameType.Data:
                        // Leave the chunk in the buffer; it is copied out above.
                        input.Consume(input.BufferedLength - (int)rest.Length - (int)frame.Payload.Length);
                        _chunkRemaining = frame.Payload.Length;
                        break;
                    case Http3FrameType.Headers:
                        await DecodeAsync(frame.Payload, trailers: true, cancellationToken).ConfigureAwait(false);
                        input.ConsumeTo(rest);
                        _sawTrailers = true;
                        foreach (KeyValuePair<string, string> field in _fields.Fields)
                        {
                            _response!.TrailingHeaders.TryAddWithoutValidation(field.Key, field.Value);
                        }

                        break;
                    default:
                        throw ConnectionError(Http3ErrorCode.IdError, "PUSH_PROMISE without MAX_PUSH_ID");
                }
            }
        }
        catch (Exception e) when (e is not HttpIOException)
        {
            AbortStream();
            Complete();
            if (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException("Reading the response body was cancelled.", e, cancellationToken);
            }

            Exception mapped = MapRequestException(e);
            throw Http3Errors.Body(HttpRequestError.ResponseEnded, "Reading the HTTP/3 response body failed: " + mapped.Message, ErrorCodeOf(mapped), mapped.InnerException ?? e);
        }
        finally
        {
            Volatile.Write(ref _reading, 0);
            if (Volatile.Read(ref _completed) != 0)
            {
                ReleaseInput();
            }
        }
    }

    private enum FrameResult
    {
        Frame,
        DataPending,
        End,
    }

    private int Received(int n)
    {
        _bodyReceived += n;
        if (_expectedLength >= 0 && _bodyReceived > _expectedLength)
        {
            throw StreamError(Http3ErrorCode.MessageError, "The response body is longer than its content-length.");
        }

        return n;
    }

    private void FinishBody()
    {
        if (_expectedLength >= 0 && _bodyReceived != _expectedLength)
        {
            throw StreamError(Http3ErrorCode.MessageError, $"The response body has {_bodyReceived} bytes, its content-length says {_expectedLength}.");
        }

        _bodyFinished = true;
        Complete();
    }

    /// <summary>The response content was disposed: stop the stream unless it was read to the end.</summary>
    public void OnResponseDisposed()
    {
        if (!_bodyFinished)
        {
            AbortStream();
        }

        Complete();
    }

    /// <summary>
    /// Reads the next frame. DATA payloads are returned as chunks of what is buffered, or as
    /// <see cref="FrameResult.DataPending"/> when none of the payload is buffered (the caller reads it directly).
    /// </summary>
    private async ValueTask<(FrameResult Result, Http3Frame Frame, ReadOnlySequence<byte> Remaining)> ReadFrameAsync(Http3StreamInput input, CancellationToken cancellationToken)
    {
        while (true)
        {
            ReadOnlySequence<byte> buffer = input.Buffered;
            Http3FrameReadStatus status = _reader.TryReadFrame(ref buffer, out Http3Frame frame, out Http3ErrorCode error);
            switch (status)
            {
                case Http3FrameReadStatus.Error:
                    throw ConnectionError(error, "invalid frame on a request stream");
                case Http3FrameReadStatus.Frame:
                    return (FrameResult.Frame, frame, buffer);
            }

            input.ConsumeTo(buffer);
            if (_reader.DataPayloadRemaining > 0)
            {
                if (!_responseStarted)
                {
                    throw ConnectionError(Http3ErrorCode.FrameUnexpected, "DATA before HEADERS");
                }

                return (FrameResult.DataPending, default, default);
            }

            if (!await input.ReadMoreAsync(cancellationToken).ConfigureAwait(false))
            {
                Http3ErrorCode end = _reader.CheckEndOfStream(input.Buffered);
                if (end != Http3ErrorCode.NoError)
                {
                    throw ConnectionError(end, "the request stream ended inside a frame");
                }

                return (FrameResult.End, default, default);
            }
        }
    }

    /// <summary>qlog: DATA frames and the frames the reader skips are traced as their header arrives; HEADERS once decoded.</summary>
    private void OnFrameHeaderRead(long type, long length)
    {
        if (type == Http3FrameType.Data || !Http3FrameType.IsKnown(type))
        {
            _connection.Qlog!.Frame(created: false, StreamId, type, length);
        }
    }

    private async ValueTask DecodeAsync(ReadOnlySequence<byte> section, bool trailers, CancellationToken cancellationToken)
    {
        _fields.Reset(trailers);
        QpackDecodeStatus status = await _connection.DecodeFieldSectionAsync(StreamId, section, _fields, cancellationToken).ConfigureAwait(false);
        _connection.Qlog?.Headers(created: false, StreamId, _fields.Fields, trailers ? -1 : _fields.Status, section.Length);
        if (status == QpackDecodeStatus.FieldSectionTooLarge)
        {
            _stream!.Abort(QuicAbortDirection.Both, (long)Http3ErrorCode.ExcessiveLoad);
            throw new HttpRequestException(HttpRequestError.ConfigurationLimitExceeded, $"The response headers exceed the limit of {_options.MaxResponseHeadersLength} KB.");
        }

        if (_fields.Error is string error)
        {
            throw StreamError(Http3ErrorCode.MessageError, "Malformed response: " + error + ".");
        }
    }

    private HttpRequestException StreamError(Http3ErrorCode code, string message)
    {
        _stream?.Abort(QuicAbortDirection.Both, (long)code);
        return Http3Errors.Request(HttpRequestError.HttpProtocolError, message, (long)code);
    }

    private HttpRequestException ConnectionError(Http3ErrorCode code, string message)
    {
        _connection.Abort(code, message);
        return (HttpRequestException)_connection.AbortException!;
    }

    private void AbortStream()
    {
        if (_stream is { } stream)
        {
            stream.Abort(QuicAbortDirection.Both, RequestCancelled);
        }
    }

    private void Complete()
    {
        if (Interlocked.Exchange(ref _completed, 1) == 0)
        {
            if (!_bodyFinished && _stream is not null)
            {
                _connection.AbandonStream(_stream.Id);
            }

            _connection.OnRequestCompleted(this);
            if (_sendBody is { IsCompleted: false })
            {
                // The response is over while the body is still going out: cancel it rather than let the dispose below
                // send a FIN that would make a truncated body look complete.
                _stream?.Abort(QuicAbortDirection.Write, RequestCancelled);
            }

            _stream?.Dispose();
            if (Volatile.Read(ref _reading) == 0)
            {
                ReleaseInput();
            }
        }
    }

    private void ReleaseInput()
    {
        // The pooled buffer goes back only when no read can still be using it.
        if (Interlocked.Exchange(ref _input, null) is { } input && Volatile.Read(ref _reading) == 0)
        {
            _ = input.DisposeAsync();
        }
    }
}
