using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore;

/// <summary>
/// One QUIC connection as Kestrel sees it. Kestrel accepts the peer's streams, opens its control stream, sets the
/// HTTP/3 error code and aborts; the abort becomes an application CONNECTION_CLOSE with that code, after the data
/// Kestrel already flushed (GOAWAY, finished responses) had a chance to reach the peer.
/// </summary>
internal sealed class ManagedQuicConnectionContext : MultiplexedConnectionContext, IProtocolErrorCodeFeature, ITlsConnectionFeature, IManagedQuicConnectionFeature
{
    internal const long MaxErrorCode = (1L << 62) - 1;
    private const long H3NoError = 0x100;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(1);

    private readonly QuicConnection _connection;
    private readonly ILogger _logger;
    private readonly FeatureCollection _features = new();
    private readonly CancellationTokenSource _closedTokenSource = new();
    private readonly ConcurrentDictionary<long, QuicStream> _finishing = new();
    private readonly Lock _sync = new();
    private ConnectionAbortedException? _abortReason;
    private Task? _closeTask;
    private long _error = -1;
    private bool _disposed;

    public ManagedQuicConnectionContext(QuicConnection connection, ILogger logger)
    {
        _connection = connection;
        _logger = logger;
        ConnectionId = $"MQ{connection.Id:X8}";
        LocalEndPoint = connection.LocalEndPoint;
        _features.Set<IProtocolErrorCodeFeature>(this);
        _features.Set<ITlsConnectionFeature>(this);
        _features.Set<IManagedQuicConnectionFeature>(this);
    }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features => _features;

    public override IDictionary<object, object?> Items { get; set; } = new ConcurrentDictionary<object, object?>();

    public override CancellationToken ConnectionClosed
    {
        get => _closedTokenSource.Token;
        set => throw new NotSupportedException();
    }

    public long Error
    {
        get => Volatile.Read(ref _error);
        set
        {
            ValidateErrorCode(value);
            Volatile.Write(ref _error, value);
        }
    }

    public X509Certificate2? ClientCertificate { get; set; }

    /// <summary>Kestrel aborted the connection: CONNECTION_CLOSE follows and ends every stream, so streams leave the wire alone.</summary>
    internal bool IsClosing => Volatile.Read(ref _abortReason) is not null;

    internal long DefaultStreamErrorCode => _connection.DefaultStreamErrorCode;

    public QuicConnection Connection => _connection;

    internal static void ValidateErrorCode(long value)
    {
        if (value is < 0 or > MaxErrorCode) throw new ArgumentOutOfRangeException(nameof(value), value, $"An error code must be between 0 and 2^62-1.");
    }

    public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult(ClientCertificate);

    /// <summary>Called once the handshake completed and Kestrel is about to get the connection.</summary>
    internal void Start()
    {
        RemoteEndPoint = _connection.RemoteEndPoint;
        ClientCertificate = _connection.RemoteCertificate;
        _ = _connection.Closed.ContinueWith(
            static (t, s) => ((ManagedQuicConnectionContext)s!).OnConnectionClosed(t.Result), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously | TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        Log.ConnectionAccepted(_logger, ConnectionId, _connection.RemoteEndPoint, _connection.NegotiatedApplicationProtocol.ToString(), _connection.NegotiatedCipherSuite, _connection.Version);
    }

    public override async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            QuicStream stream = await _connection.AcceptInboundStreamAsync(cancellationToken).ConfigureAwait(false);
            return new ManagedQuicStreamContext(this, stream);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Kestrel cancels to stop accepting (graceful shutdown) and keeps using the connection.
            return null;
        }
        catch (QuicException e)
        {
            throw MapConnectionException(e);
        }
    }

    public override async ValueTask<ConnectionContext> ConnectAsync(IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        QuicStreamType type = features?.Get<IStreamDirectionFeature>() is { CanRead: false } ? QuicStreamType.Unidirectional : QuicStreamType.Bidirectional;
        try
        {
            QuicStream stream = await _connection.OpenOutboundStreamAsync(type, cancellationToken).ConfigureAwait(false);
            return new ManagedQuicStreamContext(this, stream);
        }
        catch (QuicException e)
        {
            throw MapConnectionException(e);
        }
        catch (ObjectDisposedException e)
        {
            throw _abortReason ?? new ConnectionAbortedException(e.Message, e);
        }
    }

    public override void Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    public override void Abort(ConnectionAbortedException abortReason)
    {
        lock (_sync)
        {
            if (_abortReason is not null) return;
            _abortReason = abortReason;
            long code = Error >= 0 ? Error : _connection.DefaultCloseErrorCode;
            Log.ConnectionAborting(_logger, ConnectionId, code, abortReason.Message);
            _closeTask = CloseAsync(code);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        Task? close;
        lock (_sync)
        {
            if (_disposed) return;
            _disposed = true;
            close = _closeTask;
        }

        try
        {
            if (close is not null) await close.ConfigureAwait(false);
            await _connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.ShutdownFailed(_logger, ConnectionId, e);
        }

        // _closedTokenSource is not disposed: Kestrel may still read ConnectionClosed, and the engine's Closed
        // continuation may still cancel it.
    }

    /// <summary>A stream whose writes Kestrel completed: a graceful close waits until its data is acknowledged.</summary>
    internal void TrackFinishedStream(QuicStream stream)
    {
        if (stream.WritesClosed.IsCompleted) return;
        _finishing[stream.Id] = stream;
        _ = stream.WritesClosed.ContinueWith(
            static (_, s) => { var (self, st) = ((ManagedQuicConnectionContext, QuicStream))s!; self._finishing.TryRemove(st.Id, out QuicStream? _); },
            (this, stream), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    internal void LogCallbackFailure(Exception e) => Log.CallbackFailed(_logger, ConnectionId, e);

    private async Task CloseAsync(long code)
    {
        // Yield: Kestrel calls Abort from its processing loop and must not wait for the drain.
        await Task.Yield();
        if (code == H3NoError && _connection.CloseReason is null)
        {
            // Graceful: let finished responses and the GOAWAY on the control stream reach the peer before
            // CONNECTION_CLOSE, which discards whatever is still unsent.
            try
            {
                Task drained = Task.WhenAll(_finishing.Values.Select(static s => s.WritesClosed.ContinueWith(static _ => { }, TaskScheduler.Default)));
                await drained.WaitAsync(DrainTimeout).ConfigureAwait(false);
                await _connection.PingAsync().AsTask().WaitAsync(PingTimeout).ConfigureAwait(false);
            }
            catch (Exception e) when (e is TimeoutException or QuicException or ObjectDisposedException)
            {
                // Closing anyway: the peer went away or did not acknowledge in time.
            }
        }

        try
        {
            await _connection.CloseAsync(code).ConfigureAwait(false);
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException)
        {
        }
    }

    private Exception MapConnectionException(QuicException e)
    {
        QuicCloseReason? reason = _connection.CloseReason;
        if (e.QuicError == QuicError.ConnectionAborted || reason is { ClosedByPeer: true })
        {
            if (e.ApplicationErrorCode is long code and >= 0 and <= MaxErrorCode) Error = code;
            return new ConnectionResetException(e.Message, e);
        }

        if (_abortReason is not null) return _abortReason;
        var aborted = new ConnectionAbortedException(e.Message, e);
        Abort(aborted);
        return aborted;
    }

    private void OnConnectionClosed(QuicCloseReason reason)
    {
        Log.ConnectionClosed(_logger, ConnectionId, reason.ToString());
        try
        {
            _closedTokenSource.Cancel();
        }
        catch (AggregateException e)
        {
            LogCallbackFailure(e);
        }
    }
}
