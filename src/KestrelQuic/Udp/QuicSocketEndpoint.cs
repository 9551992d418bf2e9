using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using KestrelQuic.Connection;
using KestrelQuic.Diagnostics;
using KestrelQuic.Endpoint;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KestrelQuic.Udp;

/// <summary>Receives what happens on the connections of a <see cref="QuicSocketEndpoint"/> (called under its lock; must not block).</summary>
internal interface IEndpointConnectionOwner
{
    void OnConnectionEvent(in ConnectionEvent connectionEvent);

    void OnRemoved();
}

/// <summary>
/// The monotonic clock of the async layer, in ticks, aligned with UTC at start so address validation tokens survive
/// restarts and so the connections' TLS can read it as wall time (ticket ages and lifetimes, certificate validity).
/// </summary>
internal static class QuicClock
{
    private static readonly long s_epoch = DateTime.UtcNow.Ticks;
    private static readonly long s_start = Stopwatch.GetTimestamp();

    public static long Now => s_epoch + (long)((Stopwatch.GetTimestamp() - s_start) * ((double)TimeSpan.TicksPerSecond / Stopwatch.Frequency));
}

/// <summary>
/// Drives a sans-IO <see cref="QuicEndpointCore"/> over one UDP socket: a receive loop that takes datagrams in
/// batches, one timer for all connections, and batched (GSO) sends. Every access to the core happens under
/// <see cref="Lock"/>; the public API objects take it for their operations and call <see cref="AfterApplicationOperationLocked"/>.
/// </summary>
internal sealed class QuicSocketEndpoint : IAsyncDisposable, IThreadPoolWorkItem, IQuicMetricsSource
{
    private const int MaxDatagramsPerReceiveBatch = 64;
    private const int DatagramsBeforeReceiveThread = 1000;
    // Room for the largest datagram the engine may build (PMTU probes, large paths); batches stay within MaxBytesPerSend.
    private const int SendSlotSize = 65_527;

    private readonly QuicEndpointCore _core;
    private readonly IPEndPointCache _endPoints = new();
    private readonly Dictionary<EndPoint, SocketAddress> _socketAddresses = new();
    private readonly byte[] _sendBuffer = GC.AllocateUninitializedArray<byte>(UdpDatagramSocket.MaxBytesPerSend + SendSlotSize, pinned: true);
    private readonly List<Receiver> _receivers = new(1);
    private readonly Timer _timer;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly int _receiveBufferSize;
    private readonly int _sendBufferSize;
    private readonly int _receiveBatchSize;
    private volatile UdpDatagramSocket _socket;
    private bool _disposeWhenEmpty;
    private long _armedTimeout = long.MaxValue;
    private bool _flushScheduled;
    private bool _disposed;
    private readonly ILogger _logger;
    private readonly Dictionary<EndpointConnection, ConnectionTracking> _tracked = new();

    /// <summary>Peers decide how often a server's connections fail: Information for 10 a minute, then Debug.</summary>
    private readonly LogRateLimiter _peerFailureLogs = new(limit: 10, window: TimeSpan.FromMinutes(1));
    private MetricsTotals _removedTotals;

    private QuicSocketEndpoint(UdpDatagramSocket socket, EndpointSettings settings, bool disposeWhenEmpty, int receiveBufferSize, int sendBufferSize, ILogger? logger)
    {
        // A listener serves many peers: a bigger batch per system call. A client's private endpoint has one peer.
        _receiveBatchSize = disposeWhenEmpty ? 4 : 16;
        _socket = socket;
        _logger = logger ?? NullLogger.Instance;
        _core = new QuicEndpointCore(settings);
        _disposeWhenEmpty = disposeWhenEmpty;
        _receiveBufferSize = receiveBufferSize;
        _sendBufferSize = sendBufferSize;
        _timer = new Timer(static s => ((QuicSocketEndpoint)s!).OnTimer(), this, Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>Serializes every access to the endpoint and its connections.</summary>
    public Lock Lock { get; } = new();

    public QuicEndpointCore Core => _core;

    /// <summary>The address of the socket the endpoint sends from (it changes when a client migrates).</summary>
    public IPEndPoint LocalEndPoint => _socket.LocalEndPoint;

    /// <summary>The socket the endpoint sends from.</summary>
    public UdpDatagramSocket Socket => _socket;

    /// <summary>Disposes the endpoint once its last connection is gone (now, if it has none). Under the lock.</summary>
    public void DisposeWhenEmptyLocked()
    {
        _disposeWhenEmpty = true;
        if (_core.ConnectionCount == 0 && !_disposed) _ = Task.Run(DisposeAsync);
    }

    /// <summary>Server endpoints: a client Initial created a connection (called under the lock).</summary>
    public Action<EndpointConnection>? ConnectionAccepted { get; set; }

    /// <summary>Binds a socket and starts receiving.</summary>
    public static QuicSocketEndpoint Start(IPEndPoint localEndPoint, EndpointSettings settings, int receiveBufferSize, int sendBufferSize, bool disposeWhenEmpty, ILogger? logger = null)
    {
        UdpDatagramSocket socket = UdpDatagramSocket.Bind(localEndPoint, receiveBufferSize, sendBufferSize);
        try
        {
            var endpoint = new QuicSocketEndpoint(socket, settings, disposeWhenEmpty, receiveBufferSize, sendBufferSize, logger);
            QuicMetrics.Register(endpoint);
            lock (endpoint.Lock) endpoint.StartReceivingLocked(socket);
            return endpoint;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Call under <see cref="Lock"/> after changing a connection: schedules its sends and timer. The flush itself
    /// runs on a thread-pool work item that coalesces many application calls (writes, reads that open windows) into
    /// one pass, and keeps socket syscalls off the caller's thread; <paramref name="flushNow"/> sends at once (close).
    /// </summary>
    public void AfterApplicationOperationLocked(EndpointConnection connection, bool flushNow = false)
    {
        Debug.Assert(Lock.IsHeldByCurrentThread);
        if (_disposed) return;
        long now = QuicClock.Now;
        _core.OnApplicationOperation(connection, now);
        if (flushNow)
        {
            ProcessLocked(now);
            return;
        }

        // A bulk sender outruns its congestion window: then the next acknowledgment (or probe timeout) sends the new
        // data, and a flush pass now would only contend for the lock with the receive path.
        if (!_flushScheduled && !(connection.Core.IsCongestionLimited && connection.Core.PendingEventCount == 0))
        {
            _flushScheduled = true;
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    void IThreadPoolWorkItem.Execute()
    {
        lock (Lock)
        {
            _flushScheduled = false;
            if (_disposed) return;
            ProcessLocked(QuicClock.Now);
        }
    }

    /// <summary>Starts a client connection on this endpoint (under the lock).</summary>
    public EndpointConnection ConnectLocked(Configuration.QuicConfiguration configuration, IPEndPoint remote, byte[]? token, Func<EndpointConnection, IEndpointConnectionOwner> createOwner)
    {
        Debug.Assert(Lock.IsHeldByCurrentThread);
        ObjectDisposedException.ThrowIf(_disposed, this);
        long now = QuicClock.Now;
        EndpointConnection connection = _core.Connect(configuration, NormalizeRemote(remote), now, token);
        Track(connection, now);
        connection.Tag = createOwner(connection);
        ProcessLocked(now);
        return connection;
    }

    /// <summary>
    /// Client migration, first half: makes <paramref name="socket"/> (from <see cref="BindSocket"/>) the one every
    /// send leaves from. The previous socket keeps receiving (the peer answers there until it sees the new path)
    /// until <see cref="RetireSocket"/>. Returns the previous socket. Connection IDs and state are untouched; the
    /// caller tells the connection (<see cref="QuicConnectionCore.OnLocalAddressChanged"/>) under the lock.
    /// </summary>
    public UdpDatagramSocket SwitchToNewSocketLocked(UdpDatagramSocket socket)
    {
        Debug.Assert(Lock.IsHeldByCurrentThread);
        ObjectDisposedException.ThrowIf(_disposed, this);
        UdpDatagramSocket previous = _socket;
        StartReceivingLocked(socket);
        _socket = socket;
        _socketAddresses.Clear(); // socket addresses are per address family / dual mode of the sending socket
        return previous;
    }

    /// <summary>Binds a socket with this endpoint's buffer sizes (outside the lock: binding is a syscall).</summary>
    public UdpDatagramSocket BindSocket(IPEndPoint localEndPoint) => UdpDatagramSocket.Bind(localEndPoint, _receiveBufferSize, _sendBufferSize);

    /// <summary>
    /// Client migration, second half: stops receiving on <paramref name="retired"/> and closes it. When it is the
    /// current socket (a migration that failed), <paramref name="fallback"/> becomes the sending socket again.
    /// </summary>
    public void RetireSocket(UdpDatagramSocket retired, UdpDatagramSocket? fallback = null)
    {
        lock (Lock)
        {
            if (_disposed) return;
            if (_socket == retired)
            {
                if (fallback is null) return; // never close the only socket
                _socket = fallback;
                _socketAddresses.Clear();
            }

            for (int i = 0; i < _receivers.Count; i++)
            {
                if (_receivers[i].Socket == retired)
                {
                    _receivers[i].Retired = true;
                    if (_receivers[i].Threaded) UdpBatchReceiver.Shutdown(retired);
                    _receivers.RemoveAt(i);
                    break;
                }
            }
        }

        retired.Dispose(); // ends its receive loop
    }

    public async ValueTask DisposeAsync()
    {
        lock (Lock)
        {
            if (_disposed) return;
            _disposed = true;
        }

        _shutdown.Cancel();
        await _timer.DisposeAsync().ConfigureAwait(false);
        Receiver[] receivers;
        lock (Lock) receivers = _receivers.ToArray();
        foreach (Receiver r in receivers)
        {
            if (r.Threaded) UdpBatchReceiver.Shutdown(r.Socket);
            r.Socket.Dispose();
        }
        foreach (Receiver r in receivers)
        {
            try
            {
                await r.Loop.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
            }
        }

        lock (Lock)
        {
            // Whatever is still open ends with the socket; let the owners fail their pending operations.
            long now = QuicClock.Now;
            foreach (EndpointConnection c in _core.Connections.ToArray())
            {
                (c.Tag as IEndpointConnectionOwner)?.OnRemoved();
                Untrack(c, now);
            }

            _core.Dispose();
        }

        QuicMetrics.Unregister(this);

        _shutdown.Dispose();
    }

    private IPEndPoint NormalizeRemote(IPEndPoint remote)
    {
        // A dual-stack socket reports IPv4 peers as IPv4 (the cache unmaps them): use the same form for sending and routing.
        if (remote.Address.IsIPv4MappedToIPv6) return new IPEndPoint(remote.Address.MapToIPv4(), remote.Port);
        return remote;
    }

    private void StartReceivingLocked(UdpDatagramSocket socket)
    {
        var receiver = new Receiver(socket);
        _receivers.Add(receiver);
        // A listener gets its receive thread at once. A client's private endpoint starts on the asynchronous loop and
        // moves to a thread only once it has received a bulk of datagrams: a thread per short-lived connection
        // (handshake, one request) would cost more to create than it saves.
        if (!_disposeWhenEmpty && TryStartReceiveThreadLocked(receiver) is { } thread)
        {
            receiver.Loop = thread;
            return;
        }

        receiver.Loop = Task.Factory.StartNew(() => ReceiveLoopAsync(receiver), CancellationToken.None, TaskCreationOptions.DenyChildAttach, TaskScheduler.Default).Unwrap();
    }

    /// <summary>
    /// Hands <paramref name="receiver"/>'s socket to a thread of its own that sleeps in poll (a datagram wakes it
    /// directly) and takes many datagrams per call with recvmmsg and GRO. Null where that path is unavailable; the
    /// caller then keeps receiving asynchronously. Under the lock, so a disposal sees <see cref="Receiver.Threaded"/>.
    /// </summary>
    private Task? TryStartReceiveThreadLocked(Receiver receiver)
    {
        Debug.Assert(Lock.IsHeldByCurrentThread);
        if (_disposed || receiver.Retired || UdpBatchReceiver.TryCreate(receiver.Socket, _receiveBatchSize) is not { } batch) return null;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        receiver.Threaded = true;
        var thread = new Thread(() => ReceiveThread(receiver, batch, done))
        {
            IsBackground = true,
            Name = "KestrelQuic receive " + receiver.Socket.LocalEndPoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        thread.Start();
        return done.Task;
    }

    private void ReceiveThread(Receiver receiver, UdpBatchReceiver batch, TaskCompletionSource done)
    {
        try
        {
            CancellationToken ct = _shutdown.Token;
            UdpDatagramSocket socket = receiver.Socket;
            int unprocessed = 0;
            while (!ct.IsCancellationRequested && !receiver.Retired)
            {
                int n = batch.Receive();
                if (n < 0) return;
                if (n == 0)
                {
                    if (unprocessed > 0)
                    {
                        // The socket queue is empty: answer everything taken so far (one ACK, one flush) before sleeping.
                        lock (Lock)
                        {
                            if (_disposed) return;
                            ProcessLocked(QuicClock.Now);
                        }

                        unprocessed = 0;
                        continue;
                    }

                    batch.WaitReadable(1000);
                    continue;
                }

                int datagrams = 0;
                long bytes = 0;
                lock (Lock)
                {
                    if (_disposed) return;
                    long now = QuicClock.Now;
                    bool logDrops = _logger.IsEnabled(LogLevel.Debug);
                    for (int i = 0; i < n; i++)
                    {
                        if (!batch.GetMessage(i, out Span<byte> data, out SocketAddress source, out int segmentSize)) continue;
                        EndPoint remote = _endPoints.GetEndPoint(source);
                        while (!data.IsEmpty)
                        {
                            // A GRO train: each segment is a datagram of its own.
                            Span<byte> datagram = data[..Math.Min(segmentSize, data.Length)];
                            data = data[datagram.Length..];
                            datagrams++;
                            bytes += datagram.Length;
                            if (logDrops) ReceiveAndLogDrops(datagram, remote, now);
                            else _core.ReceiveDatagram(datagram, remote, now);
                        }
                    }

                    unprocessed += datagrams;
                    if (n < batch.Capacity || unprocessed >= MaxDatagramsPerReceiveBatch)
                    {
                        // Short batch: the queue was drained; process now rather than after one more empty receive.
                        ProcessLocked(now);
                        unprocessed = 0;
                    }
                }

                socket.CountReceivedBatch(datagrams, bytes);
            }
        }
        catch (ObjectDisposedException)
        {
        }
        finally
        {
            batch.Dispose();
            done.TrySetResult();
        }
    }

    private async Task ReceiveLoopAsync(Receiver receiver)
    {
        CancellationToken ct = _shutdown.Token;
        UdpDatagramSocket socket = receiver.Socket;
        byte[] buffer = receiver.Buffer;
        SocketAddress receiveAddress = receiver.Address;
        int unflushed = 0;
        Task? handover = null;
        while (!ct.IsCancellationRequested && !receiver.Retired)
        {
            int n;
            try
            {
                ValueTask<int> pending = socket.ReceiveAsync(buffer, receiveAddress, ct);
                if (!pending.IsCompleted && unflushed > 0)
                {
                    // The socket queue is empty: answer everything taken so far (one ACK, one flush) before waiting.
                    lock (Lock)
                    {
                        if (_disposed) return;
                        ProcessLocked(QuicClock.Now);
                    }

                    unflushed = 0;
                }

                n = await pending.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                if (ct.IsCancellationRequested || receiver.Retired) return;
                continue;
            }

            lock (Lock)
            {
                if (_disposed) return;
                long now = QuicClock.Now;
                if (_logger.IsEnabled(LogLevel.Debug))
                {
                    ReceiveAndLogDrops(buffer.AsSpan(0, n), receiveAddress, now);
                }
                else
                {
                    _core.ReceiveDatagram(buffer.AsSpan(0, n), _endPoints.GetEndPoint(receiveAddress), now);
                }

                if (++unflushed >= MaxDatagramsPerReceiveBatch)
                {
                    ProcessLocked(now);
                    unflushed = 0;
                }

                if (++receiver.AsyncReceived == DatagramsBeforeReceiveThread)
                {
                    // A bulk receiver: continue on a thread (no receive is pending now, so nothing is lost in between).
                    ProcessLocked(now);
                    if (TryStartReceiveThreadLocked(receiver) is { } thread) handover = thread;
                }
            }

            if (handover is not null)
            {
                await handover.ConfigureAwait(false);
                return;
            }
        }
    }

    private void OnTimer()
    {
        lock (Lock)
        {
            if (_disposed) return;
            _armedTimeout = long.MaxValue;
            ProcessLocked(QuicClock.Now);
        }
    }

    private void ProcessLocked(long now)
    {
        _core.HandleTimeout(now);
        DispatchLocked();
        FlushLocked(now);
        DispatchLocked();
        ArmTimerLocked(now);
    }

    private void DispatchLocked()
    {
        while (_core.TryDequeueEvent(out EndpointEvent e))
        {
            switch (e.Kind)
            {
                case EndpointEventKind.ConnectionAccepted:
                    Track(e.Connection, QuicClock.Now);
                    ConnectionAccepted?.Invoke(e.Connection);
                    break;
                case EndpointEventKind.ConnectionRemoved:
                    DrainConnectionEvents(e.Connection);
                    (e.Connection.Tag as IEndpointConnectionOwner)?.OnRemoved();
                    Untrack(e.Connection, QuicClock.Now);
                    if (_disposeWhenEmpty && _core.ConnectionCount == 0)
                    {
                        // A client's private endpoint ends with its connection (after the closing period).
                        _ = Task.Run(DisposeAsync);
                    }

                    break;
            }
        }

        while (_core.TryDequeueActive(out EndpointConnection connection))
        {
            DrainConnectionEvents(connection);
        }
    }

    private void DrainConnectionEvents(EndpointConnection connection)
    {
        var owner = connection.Tag as IEndpointConnectionOwner;
        while (connection.Core.TryDequeueEvent(out ConnectionEvent ev))
        {
            if (ev.Kind == ConnectionEventKind.HandshakeCompleted) OnHandshakeCompleted(connection);
            owner?.OnConnectionEvent(in ev);
        }
    }

    // ---- observability: per-connection bookkeeping (never per packet) ----

    /// <summary>Totals for the observable instruments; called by <see cref="QuicMetrics"/> on the collecting thread.</summary>
    MetricsTotals IQuicMetricsSource.Snapshot()
    {
        lock (Lock)
        {
            MetricsTotals totals = _removedTotals;
            foreach (EndpointConnection c in _tracked.Keys) totals.Add(c.Core.Statistics);
            totals.Add(_core.Statistics);
            if (_core.AntiReplay is { } antiReplay)
            {
                totals.EarlyDataReplays += antiReplay.ReplaysRejected;
                totals.EarlyDataRegisterFull += antiReplay.RejectedFull;
            }

            return totals;
        }
    }

    private void Track(EndpointConnection connection, long now)
    {
        if (!_tracked.TryAdd(connection, new ConnectionTracking(now))) return;
        QuicMetrics.OnConnectionCreated(connection.Core.IsServer);
    }

    private void OnHandshakeCompleted(EndpointConnection connection)
    {
        if (!_tracked.TryGetValue(connection, out ConnectionTracking? tracking) || tracking.HandshakeCompleted) return;
        tracking.HandshakeCompleted = true;
        QuicConnectionCore core = connection.Core;
        QuicMetrics.OnHandshakeCompleted(core.IsServer, QuicClock.Now - tracking.StartTime);
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            string version = "0x" + core.Version.ToString("x8", System.Globalization.CultureInfo.InvariantCulture);
            if (core.IsServer) QuicLog.ConnectionAccepted(_logger, connection.Id, core.RemoteAddress?.ToString(), core.Tls.NegotiatedApplicationProtocol, version);
            else QuicLog.ConnectionConnected(_logger, connection.Id, core.RemoteAddress?.ToString(), core.Tls.NegotiatedApplicationProtocol, version, core.Tls.IsResumed);
        }
    }

    private void Untrack(EndpointConnection connection, long now)
    {
        if (!_tracked.Remove(connection, out ConnectionTracking? tracking)) return;
        QuicConnectionCore core = connection.Core;
        _removedTotals.Add(core.Statistics);
        QuicMetrics.OnConnectionRemoved(core, tracking.HandshakeCompleted, now - tracking.StartTime);
        if (_logger.IsEnabled(LogLevel.Information)) LogClose(connection, tracking, now);
    }

    private void LogClose(EndpointConnection connection, ConnectionTracking tracking, long now)
    {
        QuicConnectionCore core = connection.Core;
        QuicCloseReason? reason = core.CloseReason;
        string errorType = QuicMetrics.ErrorType(reason);
        string text = reason?.Reason ?? "endpoint closed";
        bool protocolError = tracking.HandshakeCompleted && reason is { IsApplicationError: false, IdleTimeout: false, StatelessReset: false }
            && reason.ErrorCode != (ulong)TransportErrorCode.NoError;
        if (!tracking.HandshakeCompleted || protocolError)
        {
            LogLevel level = core.IsServer ? PeerFailureLevel(now) : LogLevel.Information;
            if (_logger.IsEnabled(level))
            {
                string remote = core.RemoteAddress?.ToString() ?? string.Empty;
                if (protocolError)
                {
                    QuicLog.ProtocolError(_logger, level, connection.Id, remote, errorType, Hex(reason!.ErrorCode), Hex(reason.FrameType), reason.ClosedByPeer ? "peer" : "local", text);
                }
                else if (reason is { IsApplicationError: false, IdleTimeout: false, StatelessReset: false, ErrorCode: >= 0x100 and <= 0x1ff })
                {
                    var alert = (TlsAlert)(byte)(reason.ErrorCode - 0x100);
                    QuicLog.HandshakeFailedAlert(_logger, level, connection.Id, remote, QuicMetrics.SnakeCase(alert.ToString()), (int)alert, reason.ClosedByPeer ? "peer" : "local", text);
                }
                else
                {
                    QuicLog.HandshakeIncomplete(_logger, level, connection.Id, remote, errorType, text);
                }
            }
        }

        if (_logger.IsEnabled(LogLevel.Debug))
        {
            QuicLog.ConnectionClosed(_logger, connection.Id, TimeSpan.FromTicks(now - tracking.StartTime).TotalMilliseconds, errorType, Hex(reason?.ErrorCode ?? 0),
                reason?.IsApplicationError ?? false, reason?.ClosedByPeer ?? false, text);
        }
    }

    /// <summary>The level of a server connection's failure line: Information within the rate, Debug beyond it.</summary>
    private LogLevel PeerFailureLevel(long now)
    {
        switch (_peerFailureLogs.Next(now))
        {
            case LogRateDecision.Allow:
                return LogLevel.Information;
            case LogRateDecision.StartSuppressing:
                QuicLog.PeerFailureLogsSuppressed(_logger, _peerFailureLogs.Limit, _peerFailureLogs.Window.TotalSeconds);
                return LogLevel.Debug;
            default:
                return LogLevel.Debug;
        }
    }

    private static string Hex(ulong value) => "0x" + value.ToString("x", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Debug logging on: compares the endpoint's drop counters around the datagram to name the reason.</summary>
    private void ReceiveAndLogDrops(Span<byte> datagram, SocketAddress receiveAddress, long now) =>
        ReceiveAndLogDrops(datagram, _endPoints.GetEndPoint(receiveAddress), now);

    private void ReceiveAndLogDrops(Span<byte> datagram, EndPoint remote, long now)
    {
        EndpointStatistics s = _core.Statistics;
        long malformed = s.DroppedMalformed, tooShort = s.DroppedTooShort, noConnection = s.DroppedNoConnection, version = s.DroppedUnsupportedVersion, refused = s.ConnectionsRefused;
        int length = datagram.Length;
        _core.ReceiveDatagram(datagram, remote, now);
        string? reason =
            s.DroppedMalformed != malformed ? "malformed" :
            s.DroppedTooShort != tooShort ? "too short for a client Initial" :
            s.DroppedUnsupportedVersion != version ? "unsupported version" :
            s.ConnectionsRefused != refused ? "connection refused (limits or not accepting)" :
            s.DroppedNoConnection != noConnection ? "no connection for its connection ID" : null;
        if (reason is not null) QuicLog.DatagramDropped(_logger, length, remote.ToString(), reason);
    }

    private sealed class ConnectionTracking(long startTime)
    {
        public long StartTime { get; } = startTime;

        public bool HandshakeCompleted { get; set; }
    }

    private void FlushLocked(long now)
    {
        int offset = 0;
        int count = 0;
        int segmentSize = 0;
        EndPoint? batchDestination = null;
        while (true)
        {
            int n = _core.PollDatagram(_sendBuffer.AsSpan(offset, SendSlotSize), now, out EndPoint? destination);
            if (n <= 0 || destination is null) break;

            if (count > 0 && (n > segmentSize || !destination.Equals(batchDestination)))
            {
                // Not part of the current batch (GSO needs one destination and equal sizes but the last): send it, restart with this one.
                Send(_sendBuffer.AsSpan(0, offset), segmentSize, batchDestination!);
                _sendBuffer.AsSpan(offset, n).CopyTo(_sendBuffer);
                offset = 0;
                count = 0;
            }

            if (count == 0)
            {
                batchDestination = destination;
                segmentSize = n;
            }

            offset += n;
            count++;
            if (n < segmentSize || count == UdpDatagramSocket.MaxSegmentsPerSend || offset + segmentSize > UdpDatagramSocket.MaxBytesPerSend)
            {
                // A short datagram ends a batch; so does the segment or byte limit of one GSO send.
                Send(_sendBuffer.AsSpan(0, offset), segmentSize, batchDestination!);
                offset = 0;
                count = 0;
            }
        }

        if (count > 0) Send(_sendBuffer.AsSpan(0, offset), segmentSize, batchDestination!);
    }

    private void Send(ReadOnlySpan<byte> segments, int segmentSize, EndPoint destination)
    {
        if (segments.IsEmpty) return;
        UdpDatagramSocket socket = _socket;
        if (!_socketAddresses.TryGetValue(destination, out SocketAddress? address))
        {
            if (_socketAddresses.Count > 4096) _socketAddresses.Clear(); // bounded: peers come and go
            address = socket.CreateSocketAddress((IPEndPoint)destination);
            _socketAddresses.Add(destination, address);
        }

        try
        {
            socket.Send(segments, segmentSize, address);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // UDP: a failed send is a lost packet; loss recovery deals with it.
        }
    }

    private void ArmTimerLocked(long now)
    {
        long next = _core.NextTimeout;
        if (next == _armedTimeout) return;
        _armedTimeout = next;
        if (next == long.MaxValue)
        {
            _timer.Change(Timeout.Infinite, Timeout.Infinite);
            return;
        }

        // Round up to whole milliseconds: firing early only costs a re-arm, but never busy-loop.
        long dueMs = Math.Max(0, (next - now + TimeSpan.TicksPerMillisecond - 1) / TimeSpan.TicksPerMillisecond);
        _timer.Change(Math.Min(dueMs, int.MaxValue - 1), Timeout.Infinite);
    }

    /// <summary>One socket being received from: its own buffer and source address (several live during a client migration).</summary>
    private sealed class Receiver(UdpDatagramSocket socket)
    {
        public UdpDatagramSocket Socket { get; } = socket;

        public byte[] Buffer { get; } = GC.AllocateUninitializedArray<byte>(65536, pinned: true);

        public SocketAddress Address { get; } = socket.CreateReceiveAddress();

        public Task Loop { get; set; } = Task.CompletedTask;

        /// <summary>Received by a dedicated thread (<see cref="UdpBatchReceiver"/>), which a shutdown of the socket wakes.</summary>
        public bool Threaded { get; set; }

        /// <summary>Datagrams taken by the asynchronous loop (a client endpoint moves to a thread after <see cref="DatagramsBeforeReceiveThread"/>).</summary>
        public int AsyncReceived { get; set; }

        public volatile bool Retired;
    }
}
