using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Endpoint;

/// <summary>Settings of a <see cref="QuicEndpointCore"/>.</summary>
internal sealed class EndpointSettings
{
    /// <summary>Accept connections with this configuration (null: a client-only endpoint).</summary>
    public QuicConfiguration? ServerConfiguration { get; init; }

    /// <summary>Length of the local connection IDs of every connection on this endpoint (short headers carry no length).</summary>
    public int ConnectionIdLength { get; init; } = 8;

    /// <summary>Key for stateless reset tokens and address validation tokens; random when null (tokens then die with the process).</summary>
    public byte[]? StaticKey { get; init; }

    /// <summary>Connections beyond this many are refused with CONNECTION_REFUSED.</summary>
    public int MaxConnections { get; init; } = 10_000;

    /// <summary>Handshakes in progress beyond this many are refused (after Retry, when Retry is enabled).</summary>
    public int MaxHandshakes { get; init; } = 1_000;

    /// <summary>Stateless resets sent per second at most (RFC 9000 §10.3: limit them).</summary>
    public int StatelessResetsPerSecond { get; init; } = 100;

    /// <summary>Server: hold the TLS handshake at the ClientHello until the layer above supplies the connection's configuration.</summary>
    public bool DeferServerConfiguration { get; init; }

    /// <summary>Creates each connection's optional trace sinks (secrets log, qlog); null: none.</summary>
    public Diagnostics.IConnectionTracerFactory? Tracers { get; init; }

    /// <summary>Server: session tickets remembered to make 0-RTT single-use; when full, early data is rejected.</summary>
    public int EarlyDataAntiReplayCapacity { get; init; } = Tls.EarlyDataAntiReplay.DefaultCapacity;

    public TimeSpan RetryTokenLifetime { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan NewTokenLifetime { get; init; } = TimeSpan.FromDays(1);
}

/// <summary>What the endpoint tells the layer above.</summary>
internal enum EndpointEventKind
{
    /// <summary>A client Initial created a new server connection.</summary>
    ConnectionAccepted,

    /// <summary>A connection ended and was removed; nothing routes to it any more.</summary>
    ConnectionRemoved,
}

internal readonly record struct EndpointEvent(EndpointEventKind Kind, EndpointConnection Connection);

/// <summary>Counters of the endpoint (datagrams that never reached a connection, stateless responses).</summary>
internal sealed class EndpointStatistics
{
    public long DatagramsReceived;
    public long DroppedMalformed;
    public long DroppedTooShort;
    public long DroppedNoConnection;
    public long DroppedUnsupportedVersion;
    public long DroppedResponseQueueFull;
    public long VersionNegotiationSent;
    public long RetrySent;
    public long InvalidTokens;
    public long StatelessResetsSent;
    public long StatelessResetsRateLimited;
    public long StatelessResetsReceived;
    public long ConnectionsAccepted;
    public long ConnectionsRefused;

    /// <summary>0-RTT datagrams kept because they overtook their connection's Initial.</summary>
    public long ZeroRttBuffered;

    /// <summary>Kept 0-RTT datagrams handed to the connection their Initial then created.</summary>
    public long ZeroRttDelivered;
}

/// <summary>
/// The sans-IO QUIC endpoint: routes datagrams to connections by destination connection ID, creates server
/// connections for new clients (with Version Negotiation, Retry and address validation tokens), answers packets for
/// unknown connections with stateless resets, keeps every connection's timer in one queue and schedules sends.
/// Owns no socket and reads no clock; the caller serializes all calls.
/// </summary>
internal sealed class QuicEndpointCore : IDisposable
{
    private const int MinimumInitialDatagramSize = 1200;
    private const int MinimumStatelessResetSize = 21;
    private const int MaxQueuedResponses = 64;
    private const int ResponseBufferSize = 1500;

    // RFC 9000 §5.2.2: 0-RTT packets that overtook their Initial (reordering; a ClientHello split over two Initials)
    // may be kept for it. A few, briefly, in buffers allocated once: a flood of them only displaces its own kind.
    private const int MaxEarlyZeroRttDatagrams = 16;
    internal const int EarlyZeroRttBufferSize = 1500;
    private static readonly long EarlyZeroRttLifetime = TimeSpan.FromSeconds(1).Ticks;

    private readonly EndpointSettings _settings;
    private readonly QuicConfiguration? _serverConfig;
    private readonly int _cidLength;
    private readonly StatelessResetTokenGenerator _resetTokens;
    private readonly AddressValidationTokens _addressTokens;
    private readonly Tls.EarlyDataAntiReplay? _antiReplay;
    private readonly Func<ReadOnlySpan<byte>, byte[]> _resetTokenFunc;
    private readonly Dictionary<byte[], EndpointConnection> _byConnectionId = new(ConnectionIdComparer.Instance);
    private readonly Dictionary<byte[], EndpointConnection>.AlternateLookup<ReadOnlySpan<byte>> _byConnectionIdSpan;
    private readonly Dictionary<EndPoint, List<EndpointConnection>> _byRemote = new();
    private readonly HashSet<EndpointConnection> _connections = new();
    private readonly PriorityQueue<EndpointConnection, long> _timers = new();
    private readonly Queue<EndpointConnection> _sendQueue = new();
    private readonly Queue<EndpointConnection> _activeQueue = new();
    private readonly List<EndpointConnection> _dueTimers = new();
    private readonly Queue<EndpointEvent> _events = new();
    private readonly byte[][] _responseBuffers = new byte[MaxQueuedResponses][];
    private readonly (int Length, EndPoint Destination)[] _responses = new (int, EndPoint)[MaxQueuedResponses];
    private readonly uint[] _supportedVersions;
    private EarlyZeroRtt[]? _earlyZeroRtt;
    private int _earlyZeroRttNext;
    private int _responseHead;
    private int _responseCount;
    private long _nextConnectionId;
    private int _handshakesInProgress;
    private double _resetBudget;
    private long _resetBudgetTime = long.MinValue;
    private long _now;

    public QuicEndpointCore(EndpointSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        _settings = settings;
        _serverConfig = settings.ServerConfiguration;
        if (_serverConfig is not null)
        {
            _serverConfig.ThrowIfInvalid();
            if (_serverConfig.ConnectionIdLength != settings.ConnectionIdLength)
            {
                throw new ArgumentException("The server configuration's ConnectionIdLength must match the endpoint's.", nameof(settings));
            }
        }

        _cidLength = settings.ConnectionIdLength;
        byte[] key = settings.StaticKey ?? RandomNumberGenerator.GetBytes(32);
        _resetTokens = new StatelessResetTokenGenerator(key);
        _addressTokens = new AddressValidationTokens(key, settings.RetryTokenLifetime, settings.NewTokenLifetime);
        _resetTokenFunc = _resetTokens.Generate;
        _byConnectionIdSpan = _byConnectionId.GetAlternateLookup<ReadOnlySpan<byte>>();
        _supportedVersions = (_serverConfig?.SupportedVersions ?? [QuicVersion.Version1, QuicVersion.Version2]).ToArray();
        _resetBudget = settings.StatelessResetsPerSecond;
        if (_serverConfig is not null) _antiReplay = new Tls.EarlyDataAntiReplay(settings.EarlyDataAntiReplayCapacity);
    }

    public EndpointStatistics Statistics { get; } = new();

    public bool IsServer => _serverConfig is not null;

    public int ConnectionCount => _connections.Count;

    public int HandshakesInProgress => _handshakesInProgress;

    /// <summary>Entries in the timer heap, stale ones included (tests: it stays proportional to the live connections).</summary>
    internal int TimerQueueLength => _timers.Count;

    /// <summary>When set, new connections are refused (a listener that stopped accepting).</summary>
    public bool RefuseNewConnections { get; set; }

    internal StatelessResetTokenGenerator ResetTokens => _resetTokens;

    internal AddressValidationTokens AddressTokens => _addressTokens;

    /// <summary>Server: the register shared by this endpoint's connections that makes 0-RTT single-use per ticket.</summary>
    internal Tls.EarlyDataAntiReplay? AntiReplay => _antiReplay;

    /// <summary>The earliest connection timer; <see cref="long.MaxValue"/> when none is armed.</summary>
    public long NextTimeout
    {
        get
        {
            while (_timers.TryPeek(out EndpointConnection? c, out long t))
            {
                if (!c.Removed && c.RegisteredTimeout == t) return t;
                _timers.Dequeue(); // stale entry
            }

            return long.MaxValue;
        }
    }

    /// <summary>Starts a client connection to <paramref name="remote"/>.</summary>
    public EndpointConnection Connect(QuicConfiguration configuration, EndPoint remote, long now, byte[]? token = null)
    {
        _now = now;
        ArgumentNullException.ThrowIfNull(configuration);
        if (configuration.ConnectionIdLength != _cidLength)
        {
            throw new ArgumentException($"ConnectionIdLength must be {_cidLength} on this endpoint.", nameof(configuration));
        }

        QuicConnectionCore core = QuicConnectionCore.CreateClient(configuration, remote, now, token, _settings.Tracers);
        EndpointConnection connection = Track(core);
        AfterOperation(connection);
        return connection;
    }

    /// <summary>Processes one received datagram. The buffer is decrypted in place. Never throws on peer input.</summary>
    public void ReceiveDatagram(Span<byte> datagram, EndPoint remote, long now)
    {
        _now = now;
        Statistics.DatagramsReceived++;
        if (!PacketHeaderParser.TryParse(datagram, _cidLength, out PacketHeader header))
        {
            Statistics.DroppedMalformed++;
            return;
        }

        ReadOnlySpan<byte> dcid = datagram.Slice(header.DestinationConnectionIdOffset, header.DestinationConnectionIdLength);
        if (_byConnectionIdSpan.TryGetValue(dcid, out EndpointConnection? connection) ||
            (_cidLength == 0 && !header.IsLongHeader && TryFindByRemote(remote, out connection)))
        {
            connection.Core.ReceiveDatagram(datagram, remote, now);
            AfterOperation(connection!);
            return;
        }

        if (!header.IsLongHeader)
        {
            HandleUnroutableShortHeader(datagram, dcid, remote, now);
            return;
        }

        if (header.Type == PacketType.VersionNegotiation)
        {
            Statistics.DroppedNoConnection++;
            return;
        }

        if (!IsServer)
        {
            Statistics.DroppedNoConnection++;
            return;
        }

        if (!_supportedVersions.AsSpan().Contains(header.Version))
        {
            // RFC 9000 §6.1, §14.1: only datagrams that could start a connection deserve a Version Negotiation packet.
            if (datagram.Length >= MinimumInitialDatagramSize)
            {
                SendVersionNegotiation(datagram, in header, remote);
            }
            else
            {
                Statistics.DroppedUnsupportedVersion++;
            }

            return;
        }

        if (header.Type == PacketType.ZeroRtt && _serverConfig is { EnableEarlyData: true } && KeepEarlyZeroRtt(datagram, in header, remote, now))
        {
            return;
        }

        if (header.Type != PacketType.Initial)
        {
            // Handshake for nobody (a connection long gone), or 0-RTT that could not be kept.
            Statistics.DroppedNoConnection++;
            return;
        }

        AcceptInitial(datagram, in header, remote, now);
    }

    /// <summary>Keeps a copy of a 0-RTT datagram for the Initial it overtook, replacing the oldest kept one if need be.</summary>
    private bool KeepEarlyZeroRtt(ReadOnlySpan<byte> datagram, in PacketHeader header, EndPoint remote, long now)
    {
        if (datagram.Length > EarlyZeroRttBufferSize || header.DestinationConnectionIdLength < 8) return false;
        EarlyZeroRtt[] slots = _earlyZeroRtt ??= CreateEarlyZeroRttSlots();
        EarlyZeroRtt slot = slots[_earlyZeroRttNext];
        _earlyZeroRttNext = (_earlyZeroRttNext + 1) % slots.Length;
        if (slot.Length != 0) Statistics.DroppedNoConnection++; // displaced before its Initial came
        datagram.CopyTo(slot.Buffer);
        slot.Length = datagram.Length;
        slot.DcidOffset = header.DestinationConnectionIdOffset;
        slot.DcidLength = header.DestinationConnectionIdLength;
        slot.Remote = remote;
        slot.ReceivedAt = now;
        Statistics.ZeroRttBuffered++;
        return true;
    }

    private static EarlyZeroRtt[] CreateEarlyZeroRttSlots()
    {
        var slots = new EarlyZeroRtt[MaxEarlyZeroRttDatagrams];
        for (int i = 0; i < slots.Length; i++) slots[i] = new EarlyZeroRtt();
        return slots;
    }

    /// <summary>Hands the kept 0-RTT datagrams of the client's first DCID to the connection its Initial just created.</summary>
    private void DeliverEarlyZeroRtt(EndpointConnection connection, ReadOnlySpan<byte> clientDcid, EndPoint remote, long now)
    {
        if (_earlyZeroRtt is not { } slots) return;
        for (int i = 0; i < slots.Length; i++)
        {
            // Oldest first: the order they arrived in.
            EarlyZeroRtt slot = slots[(_earlyZeroRttNext + i) % slots.Length];
            if (slot.Length == 0) continue;
            if (now - slot.ReceivedAt > EarlyZeroRttLifetime)
            {
                slot.Length = 0;
                Statistics.DroppedNoConnection++;
                continue;
            }

            if (!slot.Buffer.AsSpan(slot.DcidOffset, slot.DcidLength).SequenceEqual(clientDcid) || !remote.Equals(slot.Remote)) continue;
            int length = slot.Length;
            slot.Length = 0;
            Statistics.ZeroRttDelivered++;
            connection.Core.ReceiveDatagram(slot.Buffer.AsSpan(0, length), remote, now);
            if (connection.Core.State is ConnectionState.Closed or ConnectionState.Draining) return;
        }
    }

    /// <summary>Handles every connection timer due at <paramref name="now"/>.</summary>
    public void HandleTimeout(long now)
    {
        _now = now;
        // Collect the due connections first: a connection's timer can still be due after its HandleTimeout (an ACK
        // deadline only clears when the ACK is polled), and handling re-queued entries in the same pass never ends.
        while (_timers.TryPeek(out EndpointConnection? c, out long t) && t <= now)
        {
            _timers.Dequeue();
            if (c.Removed || c.RegisteredTimeout != t) continue;
            c.RegisteredTimeout = long.MaxValue;
            _dueTimers.Add(c);
        }

        foreach (EndpointConnection c in _dueTimers)
        {
            if (c.Removed) continue;
            c.Core.HandleTimeout(now);
            AfterOperation(c);
        }

        _dueTimers.Clear();
    }

    /// <summary>
    /// Writes the next datagram to send into <paramref name="buffer"/>: stateless responses first, then connections
    /// in turn (each until it has nothing more, so datagrams for one destination come out together for batching).
    /// Returns 0 when nothing is left to send now.
    /// </summary>
    public int PollDatagram(Span<byte> buffer, long now, out EndPoint? destination)
    {
        _now = now;
        if (_responseCount > 0)
        {
            (int length, EndPoint to) = _responses[_responseHead];
            _responseBuffers[_responseHead].AsSpan(0, length).CopyTo(buffer);
            _responses[_responseHead] = default;
            _responseHead = (_responseHead + 1) % MaxQueuedResponses;
            _responseCount--;
            destination = to;
            return length;
        }

        while (_sendQueue.TryPeek(out EndpointConnection? c))
        {
            if (!c.Removed)
            {
                int n = c.Core.PollDatagram(buffer, now, out destination);
                if (n > 0) return n;
            }

            _sendQueue.Dequeue();
            c.SendQueued = false;
            if (!c.Removed) AfterOperation(c, queueSend: false);
        }

        destination = null;
        return 0;
    }

    /// <summary>Tells the endpoint that the layer above changed <paramref name="connection"/> (wrote data, closed, …): it may have something to send and its timer may have moved.</summary>
    public void OnApplicationOperation(EndpointConnection connection, long now)
    {
        _now = now;
        if (connection.Removed) return;
        AfterOperation(connection);
    }

    /// <summary>Dequeues a connection that may have events to drain (<see cref="QuicConnectionCore.TryDequeueEvent"/>).</summary>
    public bool TryDequeueActive(out EndpointConnection connection)
    {
        if (_activeQueue.TryDequeue(out EndpointConnection? c))
        {
            c.ActiveQueued = false;
            connection = c;
            return true;
        }

        connection = null!;
        return false;
    }

    public bool TryDequeueEvent(out EndpointEvent endpointEvent) => _events.TryDequeue(out endpointEvent);

    /// <summary>All live connections (for shutdown).</summary>
    public IReadOnlyCollection<EndpointConnection> Connections => _connections;

    public void Dispose()
    {
        foreach (EndpointConnection c in _connections)
        {
            c.Removed = true;
            c.Core.Dispose();
        }

        // Whoever still holds the disposed endpoint must not keep its connections alive through the queues.
        _connections.Clear();
        _byConnectionId.Clear();
        _byRemote.Clear();
        _timers.Clear();
        _sendQueue.Clear();
        _activeQueue.Clear();
        _dueTimers.Clear();
        _events.Clear();
        _addressTokens.Dispose();
    }

    private void AcceptInitial(Span<byte> datagram, in PacketHeader header, EndPoint remote, long now)
    {
        // RFC 9000 §14.1: a client's first datagram is padded to 1200 bytes; §7.2: its DCID has at least 8 bytes.
        if (datagram.Length < MinimumInitialDatagramSize)
        {
            Statistics.DroppedTooShort++;
            return;
        }

        if (header.DestinationConnectionIdLength < 8)
        {
            Statistics.DroppedMalformed++;
            return;
        }

        ReadOnlySpan<byte> dcid = datagram.Slice(header.DestinationConnectionIdOffset, header.DestinationConnectionIdLength);
        ReadOnlySpan<byte> scid = datagram.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength);
        ReadOnlySpan<byte> token = datagram.Slice(header.TokenOffset, header.TokenLength);
        QuicConfiguration config = _serverConfig!;

        if (RefuseNewConnections || _connections.Count >= _settings.MaxConnections)
        {
            Statistics.ConnectionsRefused++;
            SendInitialClose(header.Version, dcid, scid, remote, TransportErrorCode.ConnectionRefused, "connection limit reached");
            return;
        }

        byte[]? originalDcid = null;
        byte[]? retryScid = null;
        bool validated = false;
        if (!token.IsEmpty)
        {
            if (_addressTokens.TryValidate(token, remote, now, out AddressValidationToken t))
            {
                if (t.Kind == AddressValidationTokenKind.Retry)
                {
                    // The client must echo our Retry's SCID as its DCID (RFC 9000 §7.3).
                    if (!dcid.SequenceEqual(t.RetrySourceConnectionId))
                    {
                        Statistics.InvalidTokens++;
                        SendInitialClose(header.Version, dcid, scid, remote, TransportErrorCode.InvalidToken, "retry token mismatch");
                        return;
                    }

                    originalDcid = t.OriginalDestinationConnectionId;
                    retryScid = t.RetrySourceConnectionId;
                }

                validated = true;
            }
            else
            {
                Statistics.InvalidTokens++;
                if (token[0] == (byte)AddressValidationTokenKind.Retry)
                {
                    // RFC 9000 §8.1.3: a Retry token that fails validation closes the attempt with INVALID_TOKEN.
                    SendInitialClose(header.Version, dcid, scid, remote, TransportErrorCode.InvalidToken, "invalid retry token");
                    return;
                }

                // A NEW_TOKEN token we cannot use (expired, another server's, another address): as if there were none.
            }
        }

        if (!validated && ShouldRetry(config))
        {
            SendRetry(header.Version, dcid, scid, remote, now);
            return;
        }

        if (_handshakesInProgress >= _settings.MaxHandshakes)
        {
            Statistics.ConnectionsRefused++;
            SendInitialClose(header.Version, dcid, scid, remote, TransportErrorCode.ConnectionRefused, "too many handshakes");
            return;
        }

        QuicConnectionCore core = QuicConnectionCore.CreateServer(
            config,
            header.Version,
            dcid,
            scid,
            remote,
            now,
            originalDestinationConnectionId: originalDcid,
            retrySourceConnectionId: retryScid,
            addressValidated: validated,
            resetTokenGenerator: _resetTokenFunc,
            deferConfiguration: _settings.DeferServerConfiguration,
            tracers: _settings.Tracers,
            antiReplay: _antiReplay);
        byte[] clientDcid = dcid.ToArray();
        core.ReceiveDatagram(datagram, remote, now);
        if (core.Statistics.PacketsReceived == 0)
        {
            // Nothing decrypted with the Initial keys of its DCID: forged or corrupted. Keep no state for it, or a
            // flood of such datagrams would hold handshake slots until they time out.
            Statistics.DroppedMalformed++;
            core.Dispose();
            return;
        }

        EndpointConnection connection = Track(core);
        // Retransmitted Initials and 0-RTT packets still carry the client's DCID until it sees our SCID.
        Route(connection, clientDcid);
        DeliverEarlyZeroRtt(connection, clientDcid, remote, now);
        Statistics.ConnectionsAccepted++;
        _events.Enqueue(new EndpointEvent(EndpointEventKind.ConnectionAccepted, connection));
        AfterOperation(connection);
    }

    private bool ShouldRetry(QuicConfiguration config) => config.Retry switch
    {
        RetryMode.Always => true,
        RetryMode.UnderLoad => _handshakesInProgress >= config.RetryHandshakeThreshold,
        _ => false,
    };

    private EndpointConnection Track(QuicConnectionCore core)
    {
        var connection = new EndpointConnection(core, Interlocked.Increment(ref _nextConnectionId));
        _connections.Add(connection);
        foreach (ConnectionIdEntry entry in core.ConnectionIds.LocalIds)
        {
            if (!entry.Retired) Route(connection, entry.ConnectionId);
        }

        core.ConnectionIds.LocalIdChanged += (entry, added) =>
        {
            if (connection.Removed) return;
            if (added) Route(connection, entry.ConnectionId);
            else Unroute(connection, entry.ConnectionId);
        };
        if (!core.IsHandshakeComplete)
        {
            connection.CountedAsHandshake = true;
            _handshakesInProgress++;
        }

        IndexRemote(connection);
        return connection;
    }

    private void Route(EndpointConnection connection, byte[] connectionId)
    {
        if (connectionId.Length == 0) return;
        // A collision between random CIDs is astronomically unlikely; never let one connection steal another's.
        if (_byConnectionId.TryAdd(connectionId, connection)) connection.RoutedIds.Add(connectionId);
    }

    private void Unroute(EndpointConnection connection, byte[] connectionId)
    {
        if (_byConnectionId.TryGetValue(connectionId, out EndpointConnection? owner) && owner == connection)
        {
            _byConnectionId.Remove(connectionId);
            connection.RoutedIds.Remove(connectionId);
        }
    }

    private void IndexRemote(EndpointConnection connection)
    {
        EndPoint? remote = connection.Core.RemoteAddress;
        if (Equals(remote, connection.IndexedRemote)) return;
        UnindexRemote(connection);
        if (remote is null) return;
        if (!_byRemote.TryGetValue(remote, out List<EndpointConnection>? list))
        {
            list = new List<EndpointConnection>(1);
            _byRemote.Add(remote, list);
        }

        list.Add(connection);
        connection.IndexedRemote = remote;
    }

    private void UnindexRemote(EndpointConnection connection)
    {
        if (connection.IndexedRemote is { } old && _byRemote.TryGetValue(old, out List<EndpointConnection>? list))
        {
            list.Remove(connection);
            if (list.Count == 0) _byRemote.Remove(old);
        }

        connection.IndexedRemote = null;
    }

    private bool TryFindByRemote(EndPoint remote, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out EndpointConnection? connection)
    {
        connection = _byRemote.TryGetValue(remote, out List<EndpointConnection>? list) && list.Count > 0 ? list[^1] : null;
        return connection is not null;
    }

    /// <summary>Bookkeeping after anything touched a connection: events, sends, timer, handshake count, removal.</summary>
    private void AfterOperation(EndpointConnection c, bool queueSend = true)
    {
        QuicConnectionCore core = c.Core;
        if (core.PendingEventCount > 0 && !c.ActiveQueued)
        {
            c.ActiveQueued = true;
            _activeQueue.Enqueue(c);
        }

        if (c.CountedAsHandshake && (core.IsHandshakeComplete || core.State >= ConnectionState.Closing))
        {
            c.CountedAsHandshake = false;
            _handshakesInProgress--;
        }

        if (core.State == ConnectionState.Closed)
        {
            Remove(c);
            return;
        }

        if (IsServer && !c.NewTokenIssued && core.IsHandshakeConfirmed && core.RemoteAddress is { } remote)
        {
            // RFC 9000 §8.1.3: a token for the client's next connection lets it skip address validation.
            c.NewTokenIssued = true;
            core.SendNewToken(_addressTokens.CreateNewToken(remote, _now));
        }

        if (!Equals(core.RemoteAddress, c.IndexedRemote)) IndexRemote(c);

        if (queueSend && !c.SendQueued)
        {
            c.SendQueued = true;
            _sendQueue.Enqueue(c);
        }

        long timeout = core.NextTimeout;
        if (timeout != c.RegisteredTimeout)
        {
            c.RegisteredTimeout = timeout;
            if (timeout != long.MaxValue)
            {
                _timers.Enqueue(c, timeout);
                CompactTimersIfMostlyStale();
            }
        }
    }

    /// <summary>
    /// Stale timer entries (superseded deadlines, removed connections) are only dropped when they come due, and until
    /// then they keep their connection alive: a removed connection's idle deadline could pin it for the whole idle
    /// timeout. Rebuild the heap from the live deadlines once stale entries dominate (amortized O(1) per entry).
    /// </summary>
    private void CompactTimersIfMostlyStale()
    {
        if (_timers.Count <= 2 * _connections.Count + 64) return;
        _timers.Clear();
        foreach (EndpointConnection live in _connections)
        {
            if (live.RegisteredTimeout != long.MaxValue) _timers.Enqueue(live, live.RegisteredTimeout);
        }
    }

    private void Remove(EndpointConnection c)
    {
        if (c.Removed) return;
        c.Removed = true;
        foreach (byte[] id in c.RoutedIds)
        {
            if (_byConnectionId.TryGetValue(id, out EndpointConnection? owner) && owner == c) _byConnectionId.Remove(id);
        }

        c.RoutedIds.Clear();
        UnindexRemote(c);
        _connections.Remove(c);
        if (c.CountedAsHandshake)
        {
            c.CountedAsHandshake = false;
            _handshakesInProgress--;
        }

        c.RegisteredTimeout = long.MaxValue;
        CompactTimersIfMostlyStale();
        if (!c.ActiveQueued && c.Core.PendingEventCount > 0)
        {
            c.ActiveQueued = true;
            _activeQueue.Enqueue(c);
        }

        _events.Enqueue(new EndpointEvent(EndpointEventKind.ConnectionRemoved, c));
    }

    private void HandleUnroutableShortHeader(Span<byte> datagram, ReadOnlySpan<byte> dcid, EndPoint remote, long now)
    {
        // Is it a stateless reset for one of our connections to that peer (RFC 9000 §10.3.1)? Then never answer it.
        if (_byRemote.TryGetValue(remote, out List<EndpointConnection>? list))
        {
            for (int i = 0; i < list.Count; i++)
            {
                EndpointConnection c = list[i];
                if (c.Core.TryHandleStatelessReset(datagram, now))
                {
                    Statistics.StatelessResetsReceived++;
                    AfterOperation(c);
                    return;
                }
            }
        }

        Statistics.DroppedNoConnection++;
        if (_cidLength == 0) return; // without CIDs there is no token to derive

        // RFC 9000 §10.3: a reset must be smaller than the packet that triggered it (so two endpoints cannot loop) and at least 21 bytes.
        int length = Math.Min(datagram.Length - 1, 43);
        if (length < MinimumStatelessResetSize) return;
        if (!TakeResetBudget(now))
        {
            Statistics.StatelessResetsRateLimited++;
            return;
        }

        if (!TryReserveResponse(out byte[] buffer, out int slot)) return;
        Span<byte> reset = buffer.AsSpan(0, length);
        RandomNumberGenerator.Fill(reset.Slice(0, length - StatelessResetTokenGenerator.TokenLength));
        reset[0] = (byte)(0x40 | (reset[0] & 0x3f)); // short header form, fixed bit set: indistinguishable from a 1-RTT packet
        _resetTokens.Generate(dcid, reset.Slice(length - StatelessResetTokenGenerator.TokenLength));
        CommitResponse(slot, length, remote);
        Statistics.StatelessResetsSent++;
    }

    private bool TakeResetBudget(long now)
    {
        int rate = _settings.StatelessResetsPerSecond;
        if (rate <= 0) return false;
        if (_resetBudgetTime != long.MinValue && now > _resetBudgetTime)
        {
            _resetBudget = Math.Min(rate, _resetBudget + (now - _resetBudgetTime) * (double)rate / TimeSpan.TicksPerSecond);
        }

        _resetBudgetTime = now;
        if (_resetBudget < 1) return false;
        _resetBudget--;
        return true;
    }

    private void SendVersionNegotiation(ReadOnlySpan<byte> datagram, in PacketHeader header, EndPoint remote)
    {
        if (!TryReserveResponse(out byte[] buffer, out int slot)) return;
        ReadOnlySpan<byte> dcid = datagram.Slice(header.DestinationConnectionIdOffset, header.DestinationConnectionIdLength);
        ReadOnlySpan<byte> scid = datagram.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength);
        // RFC 9000 §6: our versions plus a reserved one, so clients exercise their handling of unknown versions.
        Span<uint> versions = stackalloc uint[_supportedVersions.Length + 1];
        _supportedVersions.CopyTo(versions);
        versions[^1] = 0x1a2a3a4a | ((uint)RandomNumberGenerator.GetInt32(16) << 4 & 0xf0f0f0f0);
        int length = VersionNegotiationPacket.Write(buffer, scid, dcid, versions, (byte)RandomNumberGenerator.GetInt32(128));
        CommitResponse(slot, length, remote);
        Statistics.VersionNegotiationSent++;
    }

    private void SendRetry(uint version, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, EndPoint remote, long now)
    {
        if (!TryReserveResponse(out byte[] buffer, out int slot)) return;
        Span<byte> retryScid = stackalloc byte[_cidLength];
        RandomNumberGenerator.Fill(retryScid);
        byte[] token = _addressTokens.CreateRetryToken(remote, dcid, retryScid, now);
        int length = PacketHeaderWriter.WriteRetry(buffer, version, scid, retryScid, token);
        RetryIntegrity.ComputeTag(version, dcid, buffer.AsSpan(0, length), buffer.AsSpan(length, RetryIntegrity.TagLength));
        CommitResponse(slot, length + RetryIntegrity.TagLength, remote);
        Statistics.RetrySent++;
    }

    /// <summary>Answers an Initial without creating a connection: an Initial packet carrying CONNECTION_CLOSE (RFC 9000 §5.2.2).</summary>
    private void SendInitialClose(uint version, ReadOnlySpan<byte> clientDcid, ReadOnlySpan<byte> clientScid, EndPoint remote, TransportErrorCode code, string reason)
    {
        if (!TryReserveResponse(out byte[] buffer, out int slot)) return;
        InitialSecrets.Derive(version, clientDcid, out byte[] clientSecret, out byte[] serverSecret);
        CryptographicOperations.ZeroMemory(clientSecret);
        using PacketProtectionKeys keys = PacketProtectionKeys.FromSecret(Crypto.CipherSuite.Aes128GcmSha256, serverSecret, version);
        CryptographicOperations.ZeroMemory(serverSecret);
        Span<byte> scid = stackalloc byte[_cidLength];
        RandomNumberGenerator.Fill(scid);
        const int pnLength = 1;
        int headerLength = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, version, clientScid, scid, default, 0, pnLength, out int lengthOffset, out int pnOffset);
        var w = new SpanWriter(buffer.AsSpan(headerLength, ResponseBufferSize - headerLength - PacketAead.TagLength));
        ReadOnlySpan<byte> reasonBytes = System.Text.Encoding.ASCII.GetBytes(reason);
        FrameWriter.WriteConnectionClose(ref w, code, 0, reasonBytes);
        int payload = w.Position;
        PacketHeaderWriter.SetLength(buffer, lengthOffset, pnLength + payload + PacketAead.TagLength);
        int length = PacketProtector.Protect(keys, buffer, pnOffset, pnLength, payload, 0);
        CommitResponse(slot, length, remote);
    }

    private bool TryReserveResponse(out byte[] buffer, out int slot)
    {
        if (_responseCount == MaxQueuedResponses)
        {
            Statistics.DroppedResponseQueueFull++;
            buffer = null!;
            slot = -1;
            return false;
        }

        slot = (_responseHead + _responseCount) % MaxQueuedResponses;
        buffer = _responseBuffers[slot] ??= new byte[ResponseBufferSize];
        return true;
    }

    private void CommitResponse(int slot, int length, EndPoint destination)
    {
        _responses[slot] = (length, destination);
        _responseCount++;
    }
}

/// <summary>A 0-RTT datagram kept for the Initial it overtook (see <see cref="QuicEndpointCore"/>).</summary>
internal sealed class EarlyZeroRtt
{
    public byte[] Buffer { get; } = new byte[QuicEndpointCore.EarlyZeroRttBufferSize];

    /// <summary>0: the slot is free.</summary>
    public int Length { get; set; }

    public int DcidOffset { get; set; }

    public int DcidLength { get; set; }

    public EndPoint? Remote { get; set; }

    public long ReceivedAt { get; set; }
}
