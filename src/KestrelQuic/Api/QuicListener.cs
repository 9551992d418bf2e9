using System.Net;
using System.Threading.Channels;
using KestrelQuic.Configuration;
using KestrelQuic.Endpoint;
using KestrelQuic.Tls;
using KestrelQuic.Udp;
using Microsoft.Extensions.Logging;

namespace KestrelQuic;

/// <summary>
/// Listens for QUIC connections on a UDP socket (modelled on System.Net.Quic.QuicListener). Connections are
/// returned by <see cref="AcceptConnectionAsync"/> once their handshake completed. Disposing the listener stops
/// accepting; connections already accepted live on until they close.
/// </summary>
public sealed class QuicListener : IAsyncDisposable
{
    private readonly QuicSocketEndpoint _endpoint;
    private readonly QuicListenerOptions _options;
    private readonly Channel<QuicConnection> _accepted;
    private readonly CancellationTokenSource _disposing = new();
    private bool _disposed;

    private QuicListener(QuicSocketEndpoint endpoint, QuicListenerOptions options)
    {
        _endpoint = endpoint;
        _options = options;
        _accepted = Channel.CreateBounded<QuicConnection>(new BoundedChannelOptions(Math.Max(1, options.ListenBacklog)) { FullMode = BoundedChannelFullMode.Wait });
    }

    /// <summary>Whether listening is possible here (always: no native QUIC library is needed).</summary>
    public static bool IsSupported => true;

    /// <summary>The bound address and port (the real port when 0 was asked for).</summary>
    public IPEndPoint LocalEndPoint => _endpoint.LocalEndPoint;

    /// <summary>Fired (on the thread pool) when a connection options callback throws; the connection was refused.</summary>
    public event EventHandler<Exception>? ConnectionOptionsCallbackFailed;

    /// <summary>The endpoint behind the listener (tests: statistics, connection count, simulating a crash).</summary>
    internal QuicSocketEndpoint Endpoint => _endpoint;

    /// <summary>Binds the UDP socket and starts accepting handshakes.</summary>
    public static ValueTask<QuicListener> ListenAsync(QuicListenerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.ListenEndPoint);
        ArgumentNullException.ThrowIfNull(options.Configuration);
        cancellationToken.ThrowIfCancellationRequested();
        QuicConfiguration config = options.Configuration;
        config.ThrowIfInvalid();
        if (config.ApplicationProtocols.Count == 0) throw new ArgumentException("No application protocols specified.", nameof(options));
        if (config.Certificate is null && config.ServerCertificateSelector is null && options.ConnectionOptionsCallback is null)
        {
            throw new ArgumentException("A server certificate (Configuration.Certificate or ServerCertificateSelector) or a ConnectionOptionsCallback is required.", nameof(options));
        }

        if (options.StaticKey is { Length: < 32 }) throw new ArgumentException("StaticKey must hold at least 32 bytes.", nameof(options));
        ILogger? logger = options.LoggerFactory?.CreateLogger(Diagnostics.QuicLog.CategoryName);
        var settings = new EndpointSettings
        {
            Tracers = new Diagnostics.ConnectionTracerFactory(logger),
            ServerConfiguration = config,
            ConnectionIdLength = config.ConnectionIdLength,
            StaticKey = options.StaticKey,
            MaxConnections = options.MaxConnections,
            MaxHandshakes = options.MaxHandshakes,
            StatelessResetsPerSecond = options.StatelessResetsPerSecond,
            DeferServerConfiguration = options.ConnectionOptionsCallback is not null,
        };
        QuicSocketEndpoint endpoint = QuicSocketEndpoint.Start(options.ListenEndPoint, settings, config.SocketReceiveBufferSize, config.SocketSendBufferSize, disposeWhenEmpty: false, logger);
        var listener = new QuicListener(endpoint, options);
        lock (endpoint.Lock)
        {
            endpoint.ConnectionAccepted = listener.OnConnectionCreated;
        }

        return ValueTask.FromResult(listener);
    }

    /// <summary>Waits for the next connection whose handshake completed.</summary>
    public async ValueTask<QuicConnection> AcceptConnectionAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(QuicListener));
        }
    }

    /// <summary>Stops accepting: new handshakes are refused, connections not yet accepted are closed. Accepted connections are not affected.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        _disposing.Cancel();
        _accepted.Writer.TryComplete();
        var pending = new List<QuicConnection>();
        while (_accepted.Reader.TryRead(out QuicConnection? c)) pending.Add(c);
        foreach (QuicConnection c in pending) await c.CloseAsync(_options.DefaultCloseErrorCode).ConfigureAwait(false);
        lock (_endpoint.Lock)
        {
            _endpoint.Core.RefuseNewConnections = true;
            foreach (EndpointConnection c in _endpoint.Core.Connections.ToArray())
            {
                // Handshakes in progress will never be accepted now.
                if (!c.Core.IsHandshakeComplete)
                {
                    c.Core.Close(_options.DefaultCloseErrorCode < 0 ? 0 : (ulong)_options.DefaultCloseErrorCode, "listener closed", QuicClock.Now);
                    _endpoint.AfterApplicationOperationLocked(c, flushNow: true);
                }
            }

            _endpoint.DisposeWhenEmptyLocked();
        }

        _disposing.Dispose();
    }

    internal async ValueTask<QuicConfiguration> ChooseConfigurationAsync(QuicConnection connection, ClientHelloInfo hello)
    {
        CancellationToken ct;
        try
        {
            ct = _disposing.Token;
        }
        catch (ObjectDisposedException)
        {
            ct = new CancellationToken(true);
        }

        return await _options.ConnectionOptionsCallback!(connection, hello, ct).ConfigureAwait(false)
            ?? throw new InvalidOperationException("The connection options callback returned null.");
    }

    internal void OnCallbackFailed(QuicConnection connection, Exception? error)
    {
        if (error is null || ConnectionOptionsCallbackFailed is not { } handler) return;
        ThreadPool.UnsafeQueueUserWorkItem(static s => s.handler(s.connection, s.error), (handler, connection, error), preferLocal: false);
    }

    /// <summary>Under the endpoint lock: a client Initial created a connection.</summary>
    private void OnConnectionCreated(EndpointConnection handle)
        => QuicConnection.CreateAccepted(_endpoint, handle, this, _options.DefaultStreamErrorCode, _options.DefaultCloseErrorCode);

    /// <summary>Under the endpoint lock: a server connection finished its handshake.</summary>
    internal void OnHandshakeCompleted(QuicConnection connection)
    {
        if (_disposed || !_accepted.Writer.TryWrite(connection))
        {
            // Backlog full (or no longer listening): refuse rather than queue without bound.
            connection.Handle.Core.Close(0, "backlog full", QuicClock.Now);
            _endpoint.Core.OnApplicationOperation(connection.Handle, QuicClock.Now); // flushed by the dispatch pass that called us
        }
    }
}
