using System.Net;

namespace KestrelQuic.Http;

/// <summary>
/// The connections to one server (scheme, host, port). A request goes to the first connection with room (below the
/// handler's per-connection limit and the server's current MAX_STREAMS); when none has room another connection is
/// opened, up to <see cref="Http3HandlerOptions.MaxConnectionsPerServer"/>. Requests arriving while a connection is
/// being established join it rather than each opening their own.
/// </summary>
internal sealed class Http3ConnectionPool : IAsyncDisposable
{
    private readonly Http3HandlerOptions _options;
    private readonly IQuicSessionStore _sessionStore;
    private readonly string _host;
    private readonly int _port;
    private readonly string? _serverName;
    private readonly List<Http3ClientConnection> _connections = [];
    private readonly object _sync = new();
    private readonly CancellationTokenSource _disposed = new();
    private Task<Http3ClientConnection>? _pending; // the connection being established that requests may still join
    private object? _pendingAttempt;                // identifies the attempt behind _pending
    private int _pendingReserved;
    private int _connecting;                        // connections being established, _pending's included
    private int _connectionsOpened;

    /// <param name="options">Handler options.</param>
    /// <param name="sessionStore">Tickets and tokens.</param>
    /// <param name="host">Where to connect (the origin, or an alternative service).</param>
    /// <param name="port">UDP port to connect to.</param>
    /// <param name="serverName">TLS server name when it differs from <paramref name="host"/> (an alternative service speaks for its origin).</param>
    public Http3ConnectionPool(Http3HandlerOptions options, IQuicSessionStore sessionStore, string host, int port, string? serverName = null)
    {
        _serverName = serverName;
        _options = options;
        _sessionStore = sessionStore;
        _host = host;
        _port = port;
    }

    /// <summary>Connections opened so far (for tests and diagnostics).</summary>
    public int ConnectionsOpened => Volatile.Read(ref _connectionsOpened);

    /// <summary>Returns a connection with a reservation for one request (release through the connection).</summary>
    public async ValueTask<Http3ClientConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        Task<Http3ClientConnection> wait;
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
            int total = _connections.Count + _connecting;
            bool mayOpenMore = total < _options.MaxConnectionsPerServer;
            foreach (Http3ClientConnection connection in _connections)
            {
                if (connection.TryReserve(mayOpenMore))
                {
                    return connection;
                }
            }

            if (_pending is not null && (_pendingReserved < _options.MaxConcurrentStreamsPerConnection || !mayOpenMore))
            {
                _pendingReserved++;
                wait = _pending;
            }
            else if (mayOpenMore)
            {
                wait = StartConnectLocked();
            }
            else
            {
                // Everything is full: queue on the least loaded connection, which waits for the server's MAX_STREAMS.
                Http3ClientConnection? least = null;
                foreach (Http3ClientConnection connection in _connections)
                {
                    if (connection.IsUsable && (least is null || connection.Reserved < least.Reserved))
                    {
                        least = connection;
                    }
                }

                if (least is not null)
                {
                    least.ForceReserve();
                    return least;
                }

                wait = StartConnectLocked();
            }
        }

        Http3ClientConnection result = await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        result.ForceReserve();
        return result;
    }

    /// <summary>Starts a connection that later requests join (up to the per-connection limit); the caller holds the lock.</summary>
    private Task<Http3ClientConnection> StartConnectLocked()
    {
        // Another attempt may still be in flight: it stays counted in _connecting but takes no more requests.
        object attempt = new();
        _pendingAttempt = attempt;
        _pendingReserved = 1;
        _connecting++;
        return _pending = ConnectAsync(attempt);
    }

    private async Task<Http3ClientConnection> ConnectAsync(object attempt)
    {
        await Task.Yield();
        Interlocked.Increment(ref _connectionsOpened);
        Http3ClientConnection? connection = null;
        try
        {
            connection = await Http3ClientConnection.ConnectAsync(this, _options, _disposed.Token).ConfigureAwait(false);
            return connection;
        }
        catch (Exception e) when (e is not HttpRequestException)
        {
            throw new HttpRequestException(HttpRequestError.ConnectionError, $"Could not connect to {_host}:{_port} over HTTP/3: {e.Message}", e);
        }
        finally
        {
            lock (_sync)
            {
                _connecting--;
                if (_pendingAttempt == attempt)
                {
                    _pending = null;
                    _pendingAttempt = null;
                    _pendingReserved = 0;
                }

                if (connection is not null)
                {
                    _connections.Add(connection);
                }
            }
        }
    }

    /// <summary>The connections taking requests now.</summary>
    public Http3ClientConnection[] GetConnections()
    {
        lock (_sync)
        {
            return [.. _connections];
        }
    }

    /// <summary>The QUIC options for a new connection.</summary>
    public QuicClientConnectionOptions CreateConnectionOptions()
    {
        KestrelQuic.Configuration.QuicConfiguration config = _options.Configuration.Clone();
        if (config.ApplicationProtocols.Count == 0)
        {
            config.ApplicationProtocols.Add("h3");
        }

        // Servers do not open bidirectional streams in HTTP/3 (RFC 9114 §6.1).
        config.MaxBidirectionalStreams = 0;
        config.EnableEarlyData |= _options.EnableEarlyData;

        // The certificate must be for the request's authority, an IP literal included: the engine checks
        // ServerName against the certificate's names (DNS or IP) and never sends an IP literal as SNI.
        config.ServerName ??= _serverName ?? _host;

        return new QuicClientConnectionOptions
        {
            RemoteEndPoint = IPAddress.TryParse(_host, out IPAddress? address) ? new IPEndPoint(address, _port) : new DnsEndPoint(_host, _port),
            LocalEndPoint = _options.LocalEndPoint,
            Configuration = config,
            SessionStore = _sessionStore,
            HandshakeTimeout = _options.ConnectTimeout,
            ConnectWithEarlyData = _options.EnableEarlyData,
            DefaultStreamErrorCode = (long)Http3.Http3ErrorCode.RequestCancelled,
            DefaultCloseErrorCode = (long)Http3.Http3ErrorCode.NoError,
            LoggerFactory = _options.LoggerFactory,
        };
    }

    /// <summary>Called by a connection after GOAWAY or failure: it takes no new requests.</summary>
    public void OnConnectionUnusable(Http3ClientConnection connection)
    {
        lock (_sync)
        {
            _connections.Remove(connection);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http3ClientConnection[] connections;
        lock (_sync)
        {
            if (_disposed.IsCancellationRequested)
            {
                return;
            }

            _disposed.Cancel();
            connections = [.. _connections];
            _connections.Clear();
        }

        foreach (Http3ClientConnection connection in connections)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}
