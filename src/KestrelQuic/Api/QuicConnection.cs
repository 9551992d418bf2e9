using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Threading.Channels;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Crypto;
using KestrelQuic.Endpoint;
using KestrelQuic.Tls;
using KestrelQuic.Udp;
using Microsoft.Extensions.Logging;

namespace KestrelQuic;

/// <summary>
/// A QUIC connection (modelled on System.Net.Quic.QuicConnection, plus what aioquic offers: datagrams, key update,
/// connection ID changes, session ticket and token events). Client connections come from <see cref="ConnectAsync"/>,
/// server connections from <see cref="QuicListener.AcceptConnectionAsync"/>.
/// </summary>
public sealed class QuicConnection : IAsyncDisposable, IEndpointConnectionOwner
{
    private const int MaxQueuedDatagrams = 1024;

    /// <summary>Tickets or tokens kept, per kind, for a handler attached later (a server may send any number; the newest are kept).</summary>
    private const int MaxUnclaimedPerKind = 4;

    private readonly QuicSocketEndpoint _endpoint;
    private readonly QuicListener? _listener;
    private readonly Dictionary<ulong, QuicStream> _streams = new();
    // Bounded only in name (the peer's stream limit bounds it): a bounded channel's deque starts empty, where an
    // unbounded channel's queue starts with a 32-slot segment that every idle connection would keep.
    private readonly AcceptQueue<QuicStream> _inboundStreams = new();
    private Channel<byte[]>? _datagrams; // created on first use (under the endpoint lock): most connections never see a datagram
    private readonly TaskCompletionSource _handshake = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<QuicCloseReason> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Queue<TaskCompletionSource> _pings = new();
    private readonly string? _sessionKey;
    private readonly IQuicSessionStore? _sessionStore;
    private readonly object _publishLock = new();
    private EventHandler<byte[]>? _sessionTicketReceived;
    private EventHandler<byte[]>? _newTokenReceived;
    private List<byte[]>? _unclaimedTickets;
    private List<byte[]>? _unclaimedTokens;
    private EndpointConnection _handle = null!;
    private TaskCompletionSource? _streamsAvailable;
    private TaskCompletionSource<bool>? _migration;
    private Exception? _error;
    private bool _closedLocally;
    private bool _disposed;
    private QuicQlogTrace? _qlogTrace;

    private QuicConnection(QuicSocketEndpoint endpoint, QuicListener? listener, long defaultStreamErrorCode, long defaultCloseErrorCode, string? sessionKey, IQuicSessionStore? sessionStore)
    {
        _endpoint = endpoint;
        _listener = listener;
        DefaultStreamErrorCode = defaultStreamErrorCode;
        DefaultCloseErrorCode = defaultCloseErrorCode;
        _sessionKey = sessionKey;
        _sessionStore = sessionStore;
        _ = _handshake.Task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Raised (on the thread pool) when the server sent a session ticket; <see cref="QuicClientConnectionOptions.SessionStore"/>
    /// already stored it. Tickets that arrived before any handler was attached (for example during
    /// <see cref="ConnectAsync"/>) are raised to the first handler attached, up to the last few.
    /// </summary>
    public event EventHandler<byte[]>? SessionTicketReceived
    {
        add => Subscribe(value, ticket: true);
        remove
        {
            lock (_publishLock) _sessionTicketReceived -= value;
        }
    }

    /// <summary>
    /// Raised (on the thread pool) when the server sent a NEW_TOKEN token; <see cref="QuicClientConnectionOptions.SessionStore"/>
    /// already stored it. Tokens that arrived before any handler was attached are raised to the first handler attached,
    /// up to the last few.
    /// </summary>
    public event EventHandler<byte[]>? NewTokenReceived
    {
        add => Subscribe(value, ticket: false);
        remove
        {
            lock (_publishLock) _newTokenReceived -= value;
        }
    }

    /// <summary>Whether this implementation can run here (always: it needs no native QUIC library).</summary>
    public static bool IsSupported => true;

    /// <summary>A process-unique number for this connection (logs, Kestrel's ConnectionId).</summary>
    public long Id => _handle.Id;

    /// <summary>True for connections accepted by a <see cref="QuicListener"/>.</summary>
    public bool IsServer { get; private init; }

    /// <summary>The local address of the UDP socket (a client's changes with <see cref="MigrateAsync"/>).</summary>
    public IPEndPoint LocalEndPoint => _endpoint.LocalEndPoint;

    /// <summary>The peer's address on the current path (it changes when the peer migrates).</summary>
    public IPEndPoint RemoteEndPoint
    {
        get
        {
            lock (_endpoint.Lock) return (IPEndPoint)_handle.Core.RemoteAddress!;
        }
    }

    /// <summary>The server name: what the client asked for (SNI), on both sides.</summary>
    public string? TargetHostName
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.IsServer ? _handle.Core.Tls.ServerName ?? _handle.Core.ClientHello?.ServerName : _handle.Core.Tls.ServerName;
        }
    }

    /// <summary>The application protocol agreed through ALPN.</summary>
    public SslApplicationProtocol NegotiatedApplicationProtocol
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.Tls.NegotiatedApplicationProtocol is { } p ? new SslApplicationProtocol(p) : default;
        }
    }

    /// <summary>The TLS cipher suite protecting the connection.</summary>
    public TlsCipherSuite NegotiatedCipherSuite
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.Tls.NegotiatedCipherSuite is CipherSuite s ? (TlsCipherSuite)(ushort)s : default;
        }
    }

    /// <summary>
    /// The QUIC version in use (<see cref="Protocol.QuicVersion.Version1"/> or <see cref="Protocol.QuicVersion.Version2"/>):
    /// the negotiated one, which may differ from the version a client started with (see
    /// <see cref="Configuration.QuicConfiguration.SupportedVersions"/>).
    /// </summary>
    public uint Version
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.Version;
        }
    }

    /// <summary>The peer's certificate: the server's on a client; the client's, if it sent one, on a server.</summary>
    public X509Certificate2? RemoteCertificate
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.Tls.PeerCertificate;
        }
    }

    /// <summary>True when the handshake resumed a session (no certificate was exchanged).</summary>
    public bool IsResumed
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.Tls.IsResumed;
        }
    }

    /// <summary>True when 0-RTT data was accepted.</summary>
    public bool IsEarlyDataAccepted
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.EarlyDataAccepted;
        }
    }

    /// <summary>Largest payload <see cref="SendDatagramAsync"/> accepts now (0 when the peer does not accept DATAGRAM frames).</summary>
    public int MaxDatagramPayloadSize
    {
        get
        {
            lock (_endpoint.Lock)
            {
                if (_handle.Core.PeerTransportParameters?.MaxDatagramFrameSize is not ulong max) return 0;
                return (int)Math.Min((ulong)Math.Max(0, _handle.Core.MaxPayloadForDatagramFrame() - 64), max > 8 ? max - 8 : 0);
            }
        }
    }

    /// <summary>Smoothed round-trip time.</summary>
    public TimeSpan SmoothedRtt
    {
        get
        {
            lock (_endpoint.Lock) return TimeSpan.FromTicks(_handle.Core.Rtt.SmoothedRtt);
        }
    }

    /// <summary>
    /// Completes when the handshake completed; fails with a <see cref="QuicException"/> when it did not. Already
    /// complete for connections returned by <see cref="QuicListener.AcceptConnectionAsync"/> and by
    /// <see cref="ConnectAsync"/> unless <see cref="QuicClientConnectionOptions.WaitForHandshake"/> was false or
    /// <see cref="QuicClientConnectionOptions.ConnectWithEarlyData"/> let it return early.
    /// </summary>
    public Task HandshakeCompleted => _handshake.Task;

    /// <summary>Completes when the connection ended, with why.</summary>
    public Task<QuicCloseReason> Closed => _closed.Task;

    /// <summary>How the connection ended, or null while it is open.</summary>
    public QuicCloseReason? CloseReason
    {
        get
        {
            lock (_endpoint.Lock) return _handle.Core.CloseReason;
        }
    }

    /// <summary>Error code for streams disposed before the peer finished.</summary>
    public long DefaultStreamErrorCode { get; }

    /// <summary>Error code used by <see cref="DisposeAsync"/> when the connection was not closed.</summary>
    public long DefaultCloseErrorCode { get; }

    /// <summary>
    /// This connection's qlog trace, for events of the protocol above QUIC (the HTTP/3 client writes its frames there),
    /// or null when <see cref="QuicConfiguration.QlogDirectory"/> is not set: check for null and nothing else is spent.
    /// </summary>
    public QuicQlogTrace? QlogTrace
    {
        get
        {
            if (_qlogTrace is { } trace) return trace;
            if (_handle.Core.Qlog is not { } sink) return null;
            return _qlogTrace = new QuicQlogTrace(_endpoint, sink);
        }
    }

    internal EndpointConnection Handle => _handle;

    internal QuicSocketEndpoint Endpoint => _endpoint;

    /// <summary>Connects to a server: resolves its name, binds a UDP socket and completes the handshake.</summary>
    public static async ValueTask<QuicConnection> ConnectAsync(QuicClientConnectionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.RemoteEndPoint);
        ArgumentNullException.ThrowIfNull(options.Configuration);
        cancellationToken.ThrowIfCancellationRequested();
        QuicConfiguration config = options.Configuration.Clone();

        IPEndPoint remote;
        string? host = null;
        switch (options.RemoteEndPoint)
        {
            case IPEndPoint ip:
                remote = ip;
                break;
            case DnsEndPoint dns:
                host = dns.Host;
                IPAddress[] addresses = IPAddress.TryParse(dns.Host, out IPAddress? literal)
                    ? [literal]
                    : await Dns.GetHostAddressesAsync(dns.Host, dns.AddressFamily, cancellationToken).ConfigureAwait(false);
                if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
                remote = new IPEndPoint(addresses[0], dns.Port);
                if (literal is not null) host = null;
                break;
            default:
                throw new ArgumentException("The remote endpoint must be an IPEndPoint or a DnsEndPoint.", nameof(options));
        }

        // Connecting to a literal address still checks the certificate against it (its IP SANs); it is not sent as SNI.
        config.ServerName ??= host ?? remote.Address.ToString();
        config.ThrowIfInvalid();
        string sessionKey = (config.ServerName ?? remote.Address.ToString()) + ":" + remote.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        byte[]? token = null;
        if (options.SessionStore is { } store)
        {
            config.SessionTicket ??= store.TakeSessionTicket(sessionKey);
            token = store.TakeToken(sessionKey);
        }

        IPEndPoint local = options.LocalEndPoint ?? new IPEndPoint(remote.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        ILogger? logger = options.LoggerFactory?.CreateLogger(Diagnostics.QuicLog.CategoryName);
        var settings = new EndpointSettings { ConnectionIdLength = config.ConnectionIdLength, Tracers = new Diagnostics.ConnectionTracerFactory(logger) };
        QuicSocketEndpoint endpoint = QuicSocketEndpoint.Start(local, settings, config.SocketReceiveBufferSize, config.SocketSendBufferSize, disposeWhenEmpty: true, logger);
        var connection = new QuicConnection(endpoint, null, options.DefaultStreamErrorCode, options.DefaultCloseErrorCode, sessionKey, options.SessionStore);
        try
        {
            lock (endpoint.Lock)
            {
                endpoint.ConnectLocked(config, remote, token, handle =>
                {
                    connection._handle = handle;
                    return connection;
                });
            }
        }
        catch
        {
            await endpoint.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        if (!options.WaitForHandshake)
        {
            _ = connection.EnforceHandshakeTimeoutAsync(options.HandshakeTimeout);
            return connection;
        }

        if (options.ConnectWithEarlyData)
        {
            bool early;
            lock (endpoint.Lock)
            {
                early = connection._handle.Core.CanSendEarlyData;
            }

            if (early)
            {
                _ = connection.EnforceHandshakeTimeoutAsync(options.HandshakeTimeout);
                return connection;
            }
        }

        try
        {
            await connection._handshake.Task.WaitAsync(options.HandshakeTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            await connection.AbandonHandshakeAsync("handshake timeout", handshakeTimeout: true).ConfigureAwait(false);
            throw new QuicException(QuicError.ConnectionTimeout, null, $"The handshake did not complete within {options.HandshakeTimeout}.");
        }
        catch (OperationCanceledException)
        {
            await connection.AbandonHandshakeAsync("cancelled").ConfigureAwait(false);
            throw;
        }

        return connection;
    }

    /// <summary>
    /// ConnectAsync gives up: sends CONNECTION_CLOSE at once and closes the connection's private socket. The caller
    /// never receives this connection, so a closing period (3 PTOs, seconds before any RTT sample) would only keep
    /// the socket and its port bound for nobody; a late server packet then meets a closed port instead.
    /// </summary>
    private async ValueTask AbandonHandshakeAsync(string reason, bool handshakeTimeout = false)
    {
        await AbortAsync(0, reason, handshakeTimeout).ConfigureAwait(false);
        await _endpoint.DisposeAsync().ConfigureAwait(false);
    }

    private async Task EnforceHandshakeTimeoutAsync(TimeSpan timeout)
    {
        try
        {
            await _handshake.Task.WaitAsync(timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            lock (_endpoint.Lock)
            {
                Fail(new QuicException(QuicError.ConnectionTimeout, null, $"The handshake did not complete within {timeout}."));
            }

            await AbortAsync(0, "handshake timeout", handshakeTimeout: true).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The handshake failed: HandshakeCompleted and every pending operation report it.
        }
    }

    internal static QuicConnection CreateAccepted(QuicSocketEndpoint endpoint, EndpointConnection handle, QuicListener listener, long defaultStreamErrorCode, long defaultCloseErrorCode)
    {
        var connection = new QuicConnection(endpoint, listener, defaultStreamErrorCode, defaultCloseErrorCode, null, null) { IsServer = true };
        connection._handle = handle;
        handle.Tag = connection;
        return connection;
    }

    /// <summary>Opens a stream; waits while the peer's stream limit (MAX_STREAMS) is reached.</summary>
    public async ValueTask<QuicStream> OpenOutboundStreamAsync(QuicStreamType type, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Task wait;
            lock (_endpoint.Lock)
            {
                ThrowIfClosed();
                if (_handle.Core.TryOpenStream(type == QuicStreamType.Bidirectional, out ulong id))
                {
                    var stream = new QuicStream(this, _endpoint, _handle, id, IsServer);
                    _streams.Add(id, stream);
                    return stream;
                }

                // STREAMS_BLOCKED was queued: send it, then wait for MAX_STREAMS.
                _endpoint.AfterApplicationOperationLocked(_handle);
                _streamsAvailable ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _streamsAvailable.Task;
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// How many more streams of <paramref name="type"/> can be opened now without waiting for the peer's MAX_STREAMS
    /// (0 once the connection is closed). A connection pool uses it to decide when to open another connection.
    /// </summary>
    public long GetAvailableOutboundStreamCount(QuicStreamType type)
    {
        lock (_endpoint.Lock)
        {
            if (_error is not null || _handle is null) return 0;
            return (long)Math.Min(_handle.Core.AvailableLocalStreams(type), long.MaxValue);
        }
    }

    /// <summary>Waits for the next stream the peer opens.</summary>
    public async ValueTask<QuicStream> AcceptInboundStreamAsync(CancellationToken cancellationToken = default)
    {
        return await _inboundStreams.ReadAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Closes the connection with an application error code (CONNECTION_CLOSE 0x1d). Pending operations fail with <see cref="QuicError.OperationAborted"/>.</summary>
    public ValueTask CloseAsync(long errorCode, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(errorCode);
        cancellationToken.ThrowIfCancellationRequested();
        return AbortAsync(errorCode, string.Empty);
    }

    /// <summary>Sends a PING and completes when it is acknowledged.</summary>
    public async ValueTask PingAsync(CancellationToken cancellationToken = default)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_endpoint.Lock)
        {
            ThrowIfClosed();
            _pings.Enqueue(tcs);
            _handle.Core.Ping();
            _endpoint.AfterApplicationOperationLocked(_handle);
        }

        await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Starts a key update (RFC 9001 §6). False when not allowed yet (handshake unconfirmed or the previous update unacknowledged).</summary>
    public bool RequestKeyUpdate()
    {
        lock (_endpoint.Lock)
        {
            ThrowIfClosed();
            bool started = _handle.Core.RequestKeyUpdate(QuicClock.Now);
            _endpoint.AfterApplicationOperationLocked(_handle);
            return started;
        }
    }

    /// <summary>Switches to another connection ID the peer issued (retiring the current one). False when the peer issued none spare.</summary>
    public bool ChangeConnectionId()
    {
        lock (_endpoint.Lock)
        {
            ThrowIfClosed();
            bool changed = _handle.Core.ChangeConnectionId();
            _endpoint.AfterApplicationOperationLocked(_handle);
            return changed;
        }
    }

    /// <summary>
    /// Client connection migration (RFC 9000 §9): moves the connection to a new UDP socket bound to
    /// <paramref name="localEndPoint"/> (default: the current address with a new ephemeral port) and completes once the
    /// server answered a PATH_CHALLENGE on the new path. Connection state and streams carry on; the client switches to
    /// a fresh connection ID when the server issued one. The previous socket keeps receiving until the new path is
    /// validated; if validation fails the connection returns to it and this throws a <see cref="QuicException"/>
    /// (<see cref="QuicError.ConnectionTimeout"/>). The handshake must be confirmed first.
    /// </summary>
    public async ValueTask MigrateAsync(IPEndPoint? localEndPoint = null, CancellationToken cancellationToken = default)
    {
        if (IsServer) throw new InvalidOperationException("Only clients migrate (RFC 9000 §9).");
        lock (_endpoint.Lock)
        {
            ThrowIfClosed();
            if (!_handle.Core.IsHandshakeConfirmed) throw new InvalidOperationException("The handshake is not confirmed yet (RFC 9000 §9).");
            if (_handle.Core.PeerTransportParameters?.DisableActiveMigration == true) throw new InvalidOperationException("The server disabled active migration.");
            if (_migration is not null || _handle.Core.IsPathValidationInProgress) throw new InvalidOperationException("A migration is already in progress.");
            _migration = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        UdpDatagramSocket socket;
        UdpDatagramSocket previous;
        Task<bool> outcome;
        try
        {
            IPEndPoint current = _endpoint.LocalEndPoint;
            socket = _endpoint.BindSocket(localEndPoint ?? new IPEndPoint(current.Address, 0));
            lock (_endpoint.Lock)
            {
                try
                {
                    ThrowIfClosed();
                    previous = _endpoint.SwitchToNewSocketLocked(socket);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }

                _handle.Core.OnLocalAddressChanged(QuicClock.Now);
                // PATH_CHALLENGE alone is a probe; a PING makes the packet non-probing, so the server moves to the new
                // path too (RFC 9000 §9.2) even when no application data is flowing.
                var ping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _ = ping.Task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                _pings.Enqueue(ping);
                _handle.Core.Ping();
                _endpoint.AfterApplicationOperationLocked(_handle, flushNow: true);
                outcome = _migration!.Task;
            }
        }
        catch
        {
            lock (_endpoint.Lock) _migration = null;
            throw;
        }

        bool validated;
        try
        {
            validated = await outcome.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            lock (_endpoint.Lock) _migration = null;
            _endpoint.RetireSocket(socket, fallback: previous);
            throw;
        }
        catch (QuicException)
        {
            throw; // the connection ended: its endpoint closes every socket
        }

        lock (_endpoint.Lock) _migration = null;
        if (validated)
        {
            _endpoint.RetireSocket(previous);
            return;
        }

        _endpoint.RetireSocket(socket, fallback: previous);
        throw new QuicException(QuicError.ConnectionTimeout, null, "The new path could not be validated; the connection stays on its previous local address.");
    }

    /// <summary>Sends an unreliable datagram (RFC 9221). Throws when the peer does not accept datagrams or it exceeds <see cref="MaxDatagramPayloadSize"/>.</summary>
    public ValueTask SendDatagramAsync(ReadOnlyMemory<byte> datagram, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_endpoint.Lock)
        {
            ThrowIfClosed();
            if (!_handle.Core.SendDatagram(datagram.Span))
            {
                throw new InvalidOperationException(_handle.Core.PeerTransportParameters?.MaxDatagramFrameSize is null
                    ? "The peer does not accept DATAGRAM frames."
                    : "The datagram is too large for the peer or the path, or too many are queued.");
            }

            _endpoint.AfterApplicationOperationLocked(_handle);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Waits for the next datagram from the peer (the oldest are dropped when more than 1,024 wait unread).</summary>
    public async ValueTask<byte[]> ReceiveDatagramAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            Channel<byte[]> datagrams;
            lock (_endpoint.Lock) datagrams = DatagramsLocked();
            return await datagrams.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e) when (e.InnerException is not null)
        {
            throw e.InnerException;
        }
    }

    /// <summary>Closes with <see cref="DefaultCloseErrorCode"/> unless already closed, and releases the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await AbortAsync(DefaultCloseErrorCode, string.Empty).ConfigureAwait(false);
    }

    private ValueTask AbortAsync(long errorCode, string reason, bool handshakeTimeout = false)
    {
        lock (_endpoint.Lock)
        {
            if (_handle is null) return ValueTask.CompletedTask;
            QuicConnectionCore core = _handle.Core;
            if (core.State is ConnectionState.Handshake or ConnectionState.Established)
            {
                _closedLocally = true;
                if (handshakeTimeout) core.CloseOnHandshakeTimeout(QuicClock.Now);
                else core.Close((ulong)errorCode, reason, QuicClock.Now);
                _endpoint.AfterApplicationOperationLocked(_handle, flushNow: true);
            }

            Fail(new QuicException(QuicError.OperationAborted, null, "The connection was closed locally."));
        }

        return ValueTask.CompletedTask;
    }

    private void ThrowIfClosed()
    {
        if (_error is not null) throw _error;
        ObjectDisposedException.ThrowIf(_disposed, this);
    }

    // ---- events from the endpoint, under its lock ----

    void IEndpointConnectionOwner.OnConnectionEvent(in ConnectionEvent e)
    {
        switch (e.Kind)
        {
            case ConnectionEventKind.HandshakeCompleted:
                _handshake.TrySetResult();
                if (IsServer) _listener?.OnHandshakeCompleted(this);
                break;
            case ConnectionEventKind.StreamOpened:
                if (!_streams.ContainsKey(e.StreamId))
                {
                    var stream = new QuicStream(this, _endpoint, _handle, e.StreamId, IsServer);
                    _streams.Add(e.StreamId, stream);
                    _inboundStreams.TryWrite(stream);
                }

                break;
            case ConnectionEventKind.StreamReadable:
                if (_streams.TryGetValue(e.StreamId, out QuicStream? readable)) readable.OnReadable();
                break;
            case ConnectionEventKind.StreamWritable:
                if (_streams.TryGetValue(e.StreamId, out QuicStream? writable)) writable.OnWritable();
                break;
            case ConnectionEventKind.StreamReset:
                if (_streams.TryGetValue(e.StreamId, out QuicStream? reset)) reset.OnPeerReset(e.ErrorCode);
                break;
            case ConnectionEventKind.StreamStopSending:
                if (_streams.TryGetValue(e.StreamId, out QuicStream? stopped)) stopped.OnPeerStopSending(e.ErrorCode);
                break;
            case ConnectionEventKind.StreamClosed:
                if (_streams.Remove(e.StreamId, out QuicStream? closed)) closed.OnReleased();
                break;
            case ConnectionEventKind.StreamsAvailable:
                _streamsAvailable?.TrySetResult();
                _streamsAvailable = null;
                break;
            case ConnectionEventKind.DatagramReceived:
                DatagramsLocked().Writer.TryWrite(e.Data!);
                break;
            case ConnectionEventKind.SessionTicketReceived:
                Publish(e.Data!, ticket: true);
                break;
            case ConnectionEventKind.NewTokenReceived:
                Publish(e.Data!, ticket: false);
                break;
            case ConnectionEventKind.PingAcknowledged:
                if (_pings.TryDequeue(out TaskCompletionSource? ping)) ping.TrySetResult();
                break;
            case ConnectionEventKind.ClientHelloReceived:
                if (_listener is not null && _handle.Core.ClientHello is { } hello) _ = ChooseConfigurationAsync(hello);
                break;
            case ConnectionEventKind.PathValidated:
                _migration?.TrySetResult(true);
                break;
            case ConnectionEventKind.PathValidationFailed:
                _migration?.TrySetResult(false);
                break;
            case ConnectionEventKind.Terminated:
                Terminate();
                break;
        }
    }

    void IEndpointConnectionOwner.OnRemoved() => Terminate();

    private Channel<byte[]> DatagramsLocked()
    {
        if (_datagrams is null)
        {
            _datagrams = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(MaxQueuedDatagrams) { FullMode = BoundedChannelFullMode.DropOldest, SingleWriter = true });
            if (_error is not null) _datagrams.Writer.TryComplete(_error);
        }

        return _datagrams;
    }

    private void Terminate()
    {
        QuicCloseReason reason = _handle.Core.CloseReason ?? new QuicCloseReason { Reason = "endpoint closed" };
        Fail(QuicException.FromCloseReason(_handle.Core.CloseReason, _closedLocally));
        _closed.TrySetResult(reason);
    }

    private void Fail(Exception error)
    {
        _error ??= error;
        _handshake.TrySetException(_error);
        _inboundStreams.TryComplete(_error);
        _datagrams?.Writer.TryComplete(_error);
        _streamsAvailable?.TrySetException(_error);
        _streamsAvailable = null;
        _migration?.TrySetException(_error);
        while (_pings.TryDequeue(out TaskCompletionSource? ping)) ping.TrySetException(_error);
        foreach (QuicStream s in _streams.Values) s.OnConnectionClosed(_error);
    }

    private void Publish(byte[] data, bool ticket)
    {
        ThreadPool.UnsafeQueueUserWorkItem(
            static state =>
            {
                (QuicConnection c, byte[] d, bool isTicket) = state;
                if (c._sessionStore is { } store && c._sessionKey is { } key)
                {
                    if (isTicket) store.StoreSessionTicket(key, d);
                    else store.StoreToken(key, d);
                }

                EventHandler<byte[]>? handler;
                lock (c._publishLock)
                {
                    handler = isTicket ? c._sessionTicketReceived : c._newTokenReceived;
                    if (handler is null) c.KeepUnclaimed(d, isTicket);
                }

                handler?.Invoke(c, d);
            },
            (this, data, ticket),
            preferLocal: false);
    }

    private void KeepUnclaimed(byte[] data, bool ticket)
    {
        List<byte[]> list = ticket ? (_unclaimedTickets ??= new List<byte[]>()) : (_unclaimedTokens ??= new List<byte[]>());
        if (list.Count == MaxUnclaimedPerKind) list.RemoveAt(0);
        list.Add(data);
    }

    private void Subscribe(EventHandler<byte[]>? handler, bool ticket)
    {
        if (handler is null) return;
        List<byte[]>? unclaimed;
        lock (_publishLock)
        {
            if (ticket)
            {
                _sessionTicketReceived += handler;
                unclaimed = _unclaimedTickets;
                _unclaimedTickets = null;
            }
            else
            {
                _newTokenReceived += handler;
                unclaimed = _unclaimedTokens;
                _unclaimedTokens = null;
            }
        }

        if (unclaimed is null) return;
        ThreadPool.UnsafeQueueUserWorkItem(
            static state =>
            {
                (QuicConnection c, EventHandler<byte[]> h, List<byte[]> items) = state;
                foreach (byte[] d in items) h(c, d);
            },
            (this, handler, unclaimed),
            preferLocal: false);
    }

    private async Task ChooseConfigurationAsync(ClientHelloInfo hello)
    {
        await Task.Yield(); // never run the user's callback under the endpoint lock
        QuicConfiguration? configuration = null;
        Exception? failure = null;
        try
        {
            configuration = await _listener!.ChooseConfigurationAsync(this, hello).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            failure = e;
        }

        lock (_endpoint.Lock)
        {
            if (_handle.Removed) return;
            if (configuration is not null)
            {
                try
                {
                    _handle.Core.ResumeHandshake(configuration, QuicClock.Now);
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException)
                {
                    failure = e;
                }
            }

            if (failure is not null || configuration is null)
            {
                _handle.Core.RefuseHandshake("connection options callback failed", QuicClock.Now);
                _listener!.OnCallbackFailed(this, failure);
            }

            _endpoint.AfterApplicationOperationLocked(_handle);
        }
    }
}
