using System.IO.Pipelines;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Streams;
using KestrelQuic.Udp;

namespace KestrelQuic;

/// <summary>Which half of a stream an abort applies to.</summary>
[Flags]
public enum QuicAbortDirection
{
    /// <summary>Stop receiving: sends STOP_SENDING.</summary>
    Read = 1,

    /// <summary>Stop sending: sends RESET_STREAM.</summary>
    Write = 2,

    /// <summary>Both halves.</summary>
    Both = Read | Write,
}

/// <summary>
/// A QUIC stream as a <see cref="System.IO.Stream"/> (modelled on System.Net.Quic.QuicStream). Reads return 0 at the
/// peer's FIN; a peer RESET_STREAM or STOP_SENDING surfaces as a <see cref="QuicException"/> with
/// <see cref="QuicError.StreamAborted"/> and the peer's error code.
/// </summary>
public sealed class QuicStream : Stream, IDuplexPipe
{
    private readonly QuicConnection _connection;
    private readonly QuicSocketEndpoint _endpoint;
    private readonly EndpointConnection _handle;
    private readonly AsyncSignal _readSignal = new();
    private readonly AsyncSignal _writeSignal = new();
    private readonly TaskCompletionSource _readsClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _writesClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Exception? _readError;
    private Exception? _writeError;
    private bool _readFinished;
    private bool _writesCompleted;
    private bool _released;
    private bool _disposed;
    private bool _earlyData;
    private PipeReader? _input;
    private PipeWriter? _output;

    internal QuicStream(QuicConnection connection, QuicSocketEndpoint endpoint, EndpointConnection handle, ulong id, bool isServer)
    {
        _connection = connection;
        _endpoint = endpoint;
        _handle = handle;
        Id = (long)id;
        Type = StreamId.IsBidirectional(id) ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional;
        bool local = StreamId.IsLocallyInitiated(id, isServer);
        CanReadCore = Type == QuicStreamType.Bidirectional || !local;
        CanWriteCore = Type == QuicStreamType.Bidirectional || local;
        _earlyData = handle.Core.GetStream(id) is { ReceivedEarlyData: true }; // constructed under the endpoint lock
        if (!CanReadCore)
        {
            _readFinished = true;
            _readsClosed.TrySetResult();
        }

        if (!CanWriteCore)
        {
            _writesCompleted = true;
            _writesClosed.TrySetResult();
        }

        // Nobody observing these tasks must not raise unobserved-exception noise.
        _ = _readsClosed.Task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        _ = _writesClosed.Task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>The QUIC stream ID (RFC 9000 §2.1).</summary>
    public long Id { get; }

    /// <summary>Bidirectional or unidirectional.</summary>
    public QuicStreamType Type { get; }

    /// <summary>Completes when the receiving half is done: FIN read (success), or reset/aborted (faulted with a <see cref="QuicException"/>).</summary>
    public Task ReadsClosed => _readsClosed.Task;

    /// <summary>Completes when everything written was acknowledged after <see cref="CompleteWrites"/>, or faults when the sending half was reset.</summary>
    public Task WritesClosed => _writesClosed.Task;

    /// <summary>
    /// The receiving half as a <see cref="PipeReader"/> (for Kestrel-style consumers). Completing it before the peer's
    /// FIN sends STOP_SENDING with <see cref="QuicConnection.DefaultStreamErrorCode"/>. Use either this or the
    /// <see cref="Stream"/> read methods, not both.
    /// </summary>
    public PipeReader Input
    {
        get
        {
            if (!CanReadCore) throw new InvalidOperationException("This stream cannot be read.");
            return _input ??= new QuicStreamPipeReader(this);
        }
    }

    /// <summary>
    /// The sending half as a <see cref="PipeWriter"/>. Completing it sends the FIN after the buffered data; completing
    /// it with an exception resets the stream with <see cref="QuicConnection.DefaultStreamErrorCode"/>. Use either this
    /// or the <see cref="Stream"/> write methods, not both.
    /// </summary>
    public PipeWriter Output
    {
        get
        {
            if (!CanWriteCore) throw new InvalidOperationException("This stream cannot be written.");
            return _output ??= new QuicStreamPipeWriter(this);
        }
    }

    /// <summary>The connection this stream belongs to.</summary>
    public QuicConnection Connection => _connection;

    /// <inheritdoc />
    public override bool CanRead => CanReadCore && !_disposed;

    /// <inheritdoc />
    public override bool CanWrite => CanWriteCore && !_disposed;

    /// <inheritdoc />
    public override bool CanSeek => false;

    /// <inheritdoc />
    public override bool CanTimeout => false;

    /// <inheritdoc />
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc />
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    private bool CanReadCore { get; }

    private bool CanWriteCore { get; }

    /// <summary>
    /// True when some of this stream's data arrived in 0-RTT packets (early data, RFC 9001 §4.6.1), which a captured
    /// first flight could carry again. A <see cref="QuicListener"/> hands out a connection only once its handshake is
    /// complete, which a replayed flight never achieves, so a replay does not reach the application through it; the
    /// flag is there for the application's own rules (e.g. HTTP 425 Too Early, RFC 8470, for what is not safe to
    /// repeat). Check it after reading the request: it reflects every byte read so far. Always false on a client
    /// (servers cannot send 0-RTT).
    /// </summary>
    public bool IsEarlyData
    {
        get
        {
            if (_earlyData) return true;
            lock (_endpoint.Lock)
            {
                RefreshEarlyData();
                return _earlyData;
            }
        }
    }

    private ulong StreamIdValue => (ulong)Id;

    // Under the endpoint lock: the core forgets the stream once it is closed, so remember the flag here.
    private void RefreshEarlyData()
    {
        if (!_earlyData && _handle.Core.GetStream(StreamIdValue) is { ReceivedEarlyData: true }) _earlyData = true;
    }

    /// <inheritdoc />
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!CanReadCore) throw new InvalidOperationException("This stream cannot be read.");
        while (true)
        {
            lock (_endpoint.Lock)
            {
                if (_readError is not null) throw _readError;
                if (_readFinished || _released) return 0;
                if (buffer.IsEmpty) return 0;
                RefreshEarlyData();
                int n = _handle.Core.ReadStream(StreamIdValue, buffer.Span, out bool finished);
                if (finished)
                {
                    _readFinished = true;
                    _readsClosed.TrySetResult();
                }

                if (n > 0 || finished)
                {
                    // Reading may open the flow-control window: let the endpoint send MAX_STREAM_DATA / MAX_DATA.
                    _endpoint.AfterApplicationOperationLocked(_handle);
                    return n;
                }
            }

            await _readSignal.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        => WriteAsync(buffer, completeWrites: false, cancellationToken);

    /// <summary>Writes <paramref name="buffer"/> and, when <paramref name="completeWrites"/> is true, the FIN with it.</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, bool completeWrites, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!CanWriteCore) throw new InvalidOperationException("This stream cannot be written.");
        while (true)
        {
            lock (_endpoint.Lock)
            {
                if (_writeError is not null) throw _writeError;
                if (_writesCompleted) throw new InvalidOperationException("Writes were already completed.");
                int n = _handle.Core.WriteStream(StreamIdValue, buffer.Span, completeWrites);
                buffer = buffer.Slice(n);
                if (buffer.IsEmpty && completeWrites) _writesCompleted = true;
                if (n > 0 || completeWrites) _endpoint.AfterApplicationOperationLocked(_handle);
                if (buffer.IsEmpty) return;
            }

            await _writeSignal.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Sends the FIN: no more data will be written. <see cref="WritesClosed"/> completes once the peer acknowledged everything.</summary>
    public void CompleteWrites()
    {
        if (!CanWriteCore) return;
        lock (_endpoint.Lock)
        {
            if (_writesCompleted || _writeError is not null) return;
            _writesCompleted = true;
            _handle.Core.FinishStream(StreamIdValue);
            _endpoint.AfterApplicationOperationLocked(_handle);
        }
    }

    /// <summary>Aborts one or both halves: STOP_SENDING and/or RESET_STREAM with <paramref name="errorCode"/>.</summary>
    public void Abort(QuicAbortDirection abortDirection, long errorCode)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(errorCode);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(errorCode, (long)StreamId.MaxValue);
        lock (_endpoint.Lock)
        {
            var aborted = new QuicException(QuicError.OperationAborted, null, "The stream was aborted locally.");
            if ((abortDirection & QuicAbortDirection.Read) != 0 && CanReadCore && !_readFinished && _readError is null)
            {
                _handle.Core.StopSending(StreamIdValue, (ulong)errorCode);
                _readError = aborted;
                _readsClosed.TrySetException(aborted);
                _readSignal.Set();
            }

            if ((abortDirection & QuicAbortDirection.Write) != 0 && CanWriteCore && _writeError is null && !_writesClosed.Task.IsCompleted)
            {
                _handle.Core.ResetStream(StreamIdValue, (ulong)errorCode);
                _writeError = aborted;
                _writesCompleted = true;
                _writesClosed.TrySetException(aborted);
                _writeSignal.Set();
            }

            _endpoint.AfterApplicationOperationLocked(_handle);
        }
    }

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override int Read(Span<byte> buffer)
    {
        byte[] rented = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            int n = ReadAsync(rented.AsMemory(0, buffer.Length)).AsTask().GetAwaiter().GetResult();
            rented.AsSpan(0, n).CopyTo(buffer);
            return n;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override void Write(ReadOnlySpan<byte> buffer) => WriteAsync(buffer.ToArray()).AsTask().GetAwaiter().GetResult();

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <summary>Data is handed to the connection on every write; there is nothing to flush.</summary>
    public override void Flush()
    {
    }

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>
    /// Completes writes gracefully (FIN) if they were not completed, and stops reading (STOP_SENDING with the
    /// connection's default stream error code) if the peer's data was not read to the end, as System.Net.Quic does.
    /// </summary>
    public override ValueTask DisposeAsync()
    {
        DisposeCore();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) DisposeCore();
        base.Dispose(disposing);
    }

    private void DisposeCore()
    {
        if (_disposed) return;
        _disposed = true;
        lock (_endpoint.Lock)
        {
            if (CanReadCore && !_readFinished && _readError is null && !_released)
            {
                _handle.Core.StopSending(StreamIdValue, (ulong)_connection.DefaultStreamErrorCode);
                _readError = new ObjectDisposedException(nameof(QuicStream));
                _readsClosed.TrySetException(new QuicException(QuicError.OperationAborted, null, "The stream was disposed."));
            }

            if (CanWriteCore && !_writesCompleted && _writeError is null && !_released)
            {
                _writesCompleted = true;
                _handle.Core.FinishStream(StreamIdValue);
            }

            _endpoint.AfterApplicationOperationLocked(_handle);
        }

        _readSignal.Set();
        _writeSignal.Set();
    }

    // ---- called by the connection under the endpoint lock ----

    internal void OnReadable() => _readSignal.Set();

    internal void OnWritable()
    {
        if (_writesCompleted && _handle.Core.GetStream(StreamIdValue) is { SendState: SendStreamState.DataRecvd })
        {
            _writesClosed.TrySetResult();
        }

        _writeSignal.Set();
    }

    internal void OnPeerReset(ulong errorCode)
    {
        var error = new QuicException(QuicError.StreamAborted, (long)errorCode, $"The peer reset the stream with error code 0x{errorCode:x}.");
        if (_readError is null && !_readFinished)
        {
            _readError = error;
            _readsClosed.TrySetException(error);
        }

        _readSignal.Set();
    }

    internal void OnPeerStopSending(ulong errorCode)
    {
        var error = new QuicException(QuicError.StreamAborted, (long)errorCode, $"The peer stopped reading the stream with error code 0x{errorCode:x}.");
        if (_writeError is null && !_writesClosed.Task.IsCompleted)
        {
            _writeError = error;
            _writesClosed.TrySetException(error);
        }

        _writeSignal.Set();
    }

    /// <summary>The core released the stream: both halves are finished.</summary>
    internal void OnReleased()
    {
        _released = true;
        _readsClosed.TrySetResult();
        _writesClosed.TrySetResult();
        _readSignal.Set();
        _writeSignal.Set();
    }

    internal void OnConnectionClosed(Exception error)
    {
        if (_readError is null && !_readFinished)
        {
            _readError = error;
            _readsClosed.TrySetException(error);
        }

        if (_writeError is null && !_writesClosed.Task.IsCompleted)
        {
            _writeError = error;
            _writesClosed.TrySetException(error);
        }

        _readSignal.Set();
        _writeSignal.Set();
    }
}
