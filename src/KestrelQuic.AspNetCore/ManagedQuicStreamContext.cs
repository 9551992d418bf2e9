using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace KestrelQuic.AspNetCore;

/// <summary>
/// One QUIC stream as Kestrel sees it: a <see cref="ConnectionContext"/> whose transport is the stream's two halves,
/// with the stream features Kestrel's HTTP/3 layer requires. Features it lacks fall back to the connection's
/// (Kestrel takes the request's TLS feature, hence its scheme, from here).
/// </summary>
internal sealed class ManagedQuicStreamContext : ConnectionContext,
    IStreamIdFeature, IStreamDirectionFeature, IProtocolErrorCodeFeature, IStreamAbortFeature, IStreamClosedFeature, IPersistentStateFeature,
    IManagedQuicStreamFeature
{
    private const long H3NoError = 0x100;

    private readonly ManagedQuicConnectionContext _connection;
    private readonly QuicStream _stream;
    private readonly CancellationTokenSource _closedTokenSource = new();
    private readonly List<(Action<object?> Callback, object? State)> _onClosed = new();
    private readonly Lock _sync = new();
    private readonly FeatureCollection _features;
    private readonly QuicStreamPipeReader? _input;
    private readonly QuicStreamPipeWriter? _output;
    private Dictionary<object, object?>? _persistentState;
    private ConnectionAbortedException? _abortReason;
    private long _error = -1;
    private bool _closed;
    private bool _disposed;

    public ManagedQuicStreamContext(ManagedQuicConnectionContext connection, QuicStream stream)
    {
        _connection = connection;
        _stream = stream;
        ConnectionId = $"{connection.ConnectionId}:{stream.Id:X8}";
        CanRead = stream.CanRead;
        CanWrite = stream.CanWrite;
        LocalEndPoint = connection.LocalEndPoint;
        RemoteEndPoint = connection.RemoteEndPoint;
        _features = new FeatureCollection(connection.Features);
        _features.Set<IStreamIdFeature>(this);
        _features.Set<IStreamDirectionFeature>(this);
        _features.Set<IProtocolErrorCodeFeature>(this);
        _features.Set<IStreamAbortFeature>(this);
        _features.Set<IStreamClosedFeature>(this);
        _features.Set<IPersistentStateFeature>(this);
        _features.Set<IManagedQuicStreamFeature>(this);
        if (CanRead) _input = new QuicStreamPipeReader(this, stream);
        if (CanWrite) _output = new QuicStreamPipeWriter(this, stream);
        Transport = new DuplexPipe(_input ?? NoInput, _output ?? NoOutput);
        _ = Task.WhenAll(stream.ReadsClosed, stream.WritesClosed).ContinueWith(
            static (_, s) => ((ManagedQuicStreamContext)s!).OnStreamClosed(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>A completed reader for streams without a receiving half (our unidirectional streams).</summary>
    private static PipeReader NoInput
    {
        get
        {
            var pipe = new Pipe();
            pipe.Writer.Complete();
            return pipe.Reader;
        }
    }

    /// <summary>A writer that fails, for streams without a sending half (the peer's unidirectional streams).</summary>
    private static PipeWriter NoOutput
    {
        get
        {
            var pipe = new Pipe();
            pipe.Reader.Complete();
            return pipe.Writer;
        }
    }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features => _features;

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override IDuplexPipe Transport { get; set; }

    public override CancellationToken ConnectionClosed
    {
        get => _closedTokenSource.Token;
        set => throw new NotSupportedException();
    }

    public long StreamId => _stream.Id;

    public bool CanRead { get; }

    public bool CanWrite { get; }

    public long Error
    {
        get => Volatile.Read(ref _error);
        set
        {
            ManagedQuicConnectionContext.ValidateErrorCode(value);
            Volatile.Write(ref _error, value);
        }
    }

    IDictionary<object, object?> IPersistentStateFeature.State => _persistentState ??= new Dictionary<object, object?>();

    public QuicStream Stream => _stream;

    public bool IsEarlyData => _stream.IsEarlyData;

    public override void Abort(ConnectionAbortedException abortReason)
    {
        lock (_sync)
        {
            if (_abortReason is not null) return;
            _abortReason = abortReason;
        }

        // Once the connection is closing, RESET_STREAM/STOP_SENDING would only race the CONNECTION_CLOSE (and a peer
        // seeing its control streams stopped treats that as H3_CLOSED_CRITICAL_STREAM).
        if (_connection.IsClosing) return;

        // Kestrel aborts the peer's control and QPACK streams with H3_NO_ERROR just before it closes the connection.
        // STOP_SENDING on them would reach the peer first and look like H3_CLOSED_CRITICAL_STREAM; the
        // CONNECTION_CLOSE that follows ends them anyway.
        long code = CurrentCode;
        if (!CanWrite && code == H3NoError) return;
        // A pending read or flush wakes up with the abort and fails with _abortReason (see MapException).
        _stream.Abort(QuicAbortDirection.Both, code);
    }

    public void AbortRead(long errorCode, ConnectionAbortedException abortReason)
    {
        if (!CanRead) throw new InvalidOperationException("Unable to abort reading from a stream that doesn't support reading.");
        Error = errorCode;
        lock (_sync) _abortReason ??= abortReason;
        if (!_connection.IsClosing) _stream.Abort(QuicAbortDirection.Read, errorCode);
    }

    public void AbortWrite(long errorCode, ConnectionAbortedException abortReason)
    {
        if (!CanWrite) throw new InvalidOperationException("Unable to abort writing to a stream that doesn't support writing.");
        Error = errorCode;
        lock (_sync) _abortReason ??= abortReason;
        if (!_connection.IsClosing) _stream.Abort(QuicAbortDirection.Write, errorCode);
    }

    public void OnClosed(Action<object?> callback, object? state)
    {
        lock (_sync)
        {
            if (!_closed)
            {
                _onClosed.Add((callback, state));
                return;
            }
        }

        callback(state);
    }

    public override async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        if (_connection.IsClosing)
        {
            // Kestrel disposes its control streams as the connection ends: no FIN or STOP_SENDING for them, the
            // CONNECTION_CLOSE ends everything (a FIN on a control stream is H3_CLOSED_CRITICAL_STREAM for the peer).
            _input?.Complete();
            _output?.CompleteWithoutSending();
            return;
        }

        if (_input is not null) await _input.CompleteAsync().ConfigureAwait(false);
        if (_output is not null) await _output.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The output was completed without error: send the FIN (after what was flushed).</summary>
    internal void OnWritesCompleted()
    {
        _stream.CompleteWrites();
        _connection.TrackFinishedStream(_stream);
    }

    /// <summary>The output was completed with an error: reset the sending half unless it is finished.</summary>
    internal void AbortWriteOnError()
    {
        if (!_connection.IsClosing) _stream.Abort(QuicAbortDirection.Write, CurrentCode);
    }

    /// <summary>Maps the engine's stream failures to the exceptions Kestrel's HTTP/3 layer distinguishes, recording the peer's code.</summary>
    internal Exception MapException(Exception e)
    {
        if (e is QuicException q)
        {
            switch (q.QuicError)
            {
                case QuicError.StreamAborted:
                case QuicError.ConnectionAborted:
                    if (q.ApplicationErrorCode is long code) TrySetError(code);
                    return new ConnectionResetException(q.Message, q);
                case QuicError.OperationAborted:
                    return _abortReason ?? new ConnectionAbortedException(q.Message, q);
                default:
                    return new ConnectionAbortedException(q.Message, q);
            }
        }

        if (e is ObjectDisposedException or InvalidOperationException) return _abortReason ?? new ConnectionAbortedException(e.Message, e);
        return e;
    }

    private long CurrentCode => Error >= 0 ? Error : _connection.DefaultStreamErrorCode;

    private void TrySetError(long code)
    {
        if (code is >= 0 and <= ManagedQuicConnectionContext.MaxErrorCode) Interlocked.CompareExchange(ref _error, code, -1);
    }

    private void OnStreamClosed()
    {
        // Kestrel aborts the request from its OnClosed callback only when an error code is known: record the peer's.
        if (_stream.ReadsClosed.Exception?.InnerException is QuicException { ApplicationErrorCode: long r }) TrySetError(r);
        else if (_stream.WritesClosed.Exception?.InnerException is QuicException { ApplicationErrorCode: long w }) TrySetError(w);
        else if (_stream.ReadsClosed.IsFaulted || _stream.WritesClosed.IsFaulted) TrySetError(_connection.DefaultStreamErrorCode);

        List<(Action<object?> Callback, object? State)> callbacks;
        lock (_sync)
        {
            _closed = true;
            callbacks = new(_onClosed);
            _onClosed.Clear();
        }

        foreach ((Action<object?> callback, object? state) in callbacks)
        {
            try
            {
                callback(state);
            }
            catch (Exception e)
            {
                _connection.LogCallbackFailure(e);
            }
        }

        try
        {
            _closedTokenSource.Cancel();
        }
        catch (AggregateException e)
        {
            _connection.LogCallbackFailure(e);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
