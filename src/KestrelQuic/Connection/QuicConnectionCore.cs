using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Crypto;
using KestrelQuic.Diagnostics;
using KestrelQuic.FlowControl;
using KestrelQuic.PacketProtection;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Streams;
using KestrelQuic.Tls;

namespace KestrelQuic.Connection;

/// <summary>Lifecycle of a connection (RFC 9000 §10).</summary>
internal enum ConnectionState
{
    Handshake,
    Established,
    Closing,
    Draining,
    Closed,
}

/// <summary>
/// The sans-IO QUIC connection: datagrams in (<see cref="ReceiveDatagram"/>), datagrams out
/// (<see cref="PollDatagram"/>), one timer (<see cref="NextTimeout"/> / <see cref="HandleTimeout"/>) and events
/// (<see cref="TryDequeueEvent"/>). It owns no socket, reads no clock and starts no task; the same type serves
/// client and server roles.
/// </summary>
internal sealed partial class QuicConnectionCore : IDisposable
{
    private const long TicksPerMillisecond = TimeSpan.TicksPerMillisecond;
    private const int MaxBufferedUndecryptablePackets = 10;

    private QuicConfiguration _config;
    private readonly PacketNumberSpaceState[] _spaces;
    private readonly ConnectionIdManager _connectionIds;
    private TlsHandshake _tls;
    private TransportParameters _localParameters;
    private readonly RttEstimator _rtt;
    private readonly ICongestionController _congestion;
    private readonly LossDetection _loss;
    private readonly Pacer _pacer;
    private readonly Queue<ConnectionEvent> _events = new();
    private readonly LossHost _lossHost;

    private uint _version;

    // RFC 9368: the version of the client's first flight (the Original Version; after Version Negotiation, the one
    // the client restarted with). _version is the Negotiated Version once compatible negotiation switched it.
    private uint _originalVersion;
    private byte[] _initialKeysConnectionId = [];
    private PacketProtectionKeys? _originalInitialReadKeys; // server: Initial keys of the original version after a switch
    private bool _versionNegotiated;        // server: the client's version_information was acted on
    private bool _versionSettled;           // client: the server's choice is known (CRYPTO seen), no more switching
    private bool _actedOnVersionNegotiation; // client: restarted after a Version Negotiation packet
    private byte[] _originalDestinationConnectionId;
    private byte[]? _retrySourceConnectionId;
    private byte[]? _token;
    private TransportParameters? _peerParameters;
    private OneRttKeys? _oneRttKeys;
    private PacketProtectionKeys? _zeroRttReadKeys;
    private PacketProtectionKeys? _zeroRttWriteKeys;
    private bool _receivedFirstServerPacket;
    private bool _receivedFirstClientPacket;
    private bool _receivedRetry;
    private bool _handshakeComplete;
    private bool _handshakeConfirmed;
    private bool _handshakeDonePending;
    private bool _peerAddressValidated;     // server: the client's address is validated (anti-amplification lifted)
    private bool _peerCompletedAddressValidation; // client: the server has validated our address
    private long _bytesReceivedOnPath;
    private long _bytesSentOnPath;
    private long _idleTimeoutTicks;
    private long _idleDeadline = long.MaxValue;

    // After this long without a datagram in either direction the connection gives back what it can rebuild on the
    // next packet (AEAD contexts, pooled packet records): an idle connection costs kilobytes less.
    private static readonly long s_quietTrimDelay = TimeSpan.FromSeconds(1).Ticks;
    private long _quietTrimDeadline = long.MaxValue;
    private bool _ackElicitingSentSinceReceive;
    private long _closeDeadline = long.MaxValue;
    private bool _closeFramePending;
    private TransportError? _pendingLocalError;
    private ulong _pendingApplicationCloseCode;
    private bool _pendingCloseIsApplication;
    private string _pendingCloseReason = string.Empty;
    private int _pingsRequested;
    private List<(byte[] Packet, long ReceivedTime)>? _undecryptable;

    // While a buffered packet is processed once its keys exist: when it arrived (its ACK Delay counts the wait).
    private long? _reprocessedPacketReceivedTime;
    private long _lastCloseSentTime = long.MinValue;
    private readonly IConnectionTracerFactory? _tracers;
    private readonly IQlogSink? _qlog;

    /// <summary>The connection's qlog sink, null when qlog is off (for events of the layer above, see <see cref="QuicQlogTrace"/>).</summary>
    public IQlogSink? Qlog => _qlog;
    private ConnectionState _state = ConnectionState.Handshake;

    // The latest time the connection was driven with. The core reads no clock: TLS takes its wall time (ticket age
    // and lifetime, certificate validity) from this, as UTC ticks (the socket layer's clock is aligned with UTC).
    private long _now;

    private QuicConnectionCore(QuicConfiguration config, bool isServer, uint version, byte[] originalDcid, EndPoint? remoteAddress, long now, Func<ReadOnlySpan<byte>, byte[]>? resetTokenGenerator = null, IConnectionTracerFactory? tracers = null, EarlyDataAntiReplay? antiReplay = null)
    {
        _config = config;
        _now = now;
        AntiReplay = antiReplay;
        _tracers = tracers;
        KeyLog = tracers?.CreateKeyLog(config);
        _qlog = tracers?.CreateQlog(config, isServer, originalDcid, now);
        // Set before the connection ID manager captures the generator (an object initializer would run too late).
        ResetTokenGenerator = resetTokenGenerator;
        IsServer = isServer;
        _version = version;
        _originalVersion = version;
        _originalDestinationConnectionId = originalDcid;
        RemoteAddress = remoteAddress;
        _spaces = new[]
        {
            new PacketNumberSpaceState(PacketNumberSpace.Initial, config.MaxCryptoBufferSize),
            new PacketNumberSpaceState(PacketNumberSpace.Handshake, config.MaxCryptoBufferSize),
            new PacketNumberSpaceState(PacketNumberSpace.ApplicationData, config.MaxCryptoBufferSize),
        };
        _connectionIds = new ConnectionIdManager(config.ConnectionIdLength, StatelessResetTokenGenerator, config.ActiveConnectionIdLimit);
        _connectionIds.LocalIdChanged += (entry, added) => _events.Enqueue(new ConnectionEvent(ConnectionEventKind.ConnectionIdChanged, entry.SequenceNumber, Data: entry.ConnectionId, Flag: added));
        _rtt = new RttEstimator(config.InitialRtt.Ticks);
        _congestion = CongestionControllerFactory.Create(config.CongestionControl, config.MaxDatagramSize);
        _loss = new LossDetection(_rtt, _congestion);
        _pacer = new Pacer(config.MaxDatagramSize);
        _lossHost = new LossHost(this);
        _idleTimeoutTicks = config.IdleTimeout.Ticks;
        _localParameters = CreateLocalTransportParameters();
        _tls = new TlsHandshake(TlsOptionsFactory.Create(config, isServer, this), new TlsHost(this));
        InitializeStreams();
        _idleDeadline = _idleTimeoutTicks > 0 ? now + _idleTimeoutTicks : long.MaxValue;
    }

    /// <summary>The wall clock TLS sees: the <c>now</c> this connection was last driven with, read as UTC ticks.</summary>
    internal TimeProvider WallClock => _wallClock ??= new ConnectionWallClock(this);

    private TimeProvider? _wallClock;

    private sealed class ConnectionWallClock(QuicConnectionCore connection) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => new(Math.Clamp(connection._now, 0, DateTime.MaxValue.Ticks), TimeSpan.Zero);
    }

    /// <summary>Server-side reset token generator (HMAC of a static key, set by the endpoint); null gives random tokens.</summary>
    internal static Func<ReadOnlySpan<byte>, byte[]>? StatelessResetTokenGeneratorOverride { get; set; }

    private Func<ReadOnlySpan<byte>, byte[]>? StatelessResetTokenGenerator => ResetTokenGenerator ?? StatelessResetTokenGeneratorOverride;

    /// <summary>Server: the server-wide register that makes tickets single-use for 0-RTT; null rejects all early data.</summary>
    internal EarlyDataAntiReplay? AntiReplay { get; }

    /// <summary>Reset token derivation for this connection's local IDs (set by the endpoint before the connection is created).</summary>
    internal Func<ReadOnlySpan<byte>, byte[]>? ResetTokenGenerator { get; }

    public bool IsServer { get; }

    public bool IsClient => !IsServer;

    public ConnectionState State
    {
        get => _state;
        private set
        {
            ConnectionState old = _state;
            _state = value;
            if (_qlog is { } qlog && old != value)
            {
                qlog.StateUpdated(old, value);
                // connection_closed: CONNECTION_CLOSE sent (closing) or received (draining), or a silent end (idle timeout).
                if ((value is ConnectionState.Closing or ConnectionState.Draining || old is ConnectionState.Handshake or ConnectionState.Established) && CloseReason is { } reason)
                {
                    qlog.ConnectionClosed(reason);
                }
            }
        }
    }

    /// <summary>Receives TLS secrets (SSLKEYLOGFILE lines) when the layer above asked for them; null otherwise.</summary>
    internal IKeyLogSink? KeyLog { get; private set; }

    /// <summary>The QUIC version in use.</summary>
    public uint Version => _version;

    /// <summary>Address of the peer on the current path (opaque to the core; compared with Equals).</summary>
    public EndPoint? RemoteAddress { get; private set; }

    public QuicCloseReason? CloseReason { get; private set; }

    public bool IsHandshakeComplete => _handshakeComplete;

    public bool IsHandshakeConfirmed => _handshakeConfirmed;

    public TlsHandshake Tls => _tls;

    public TransportParameters LocalTransportParameters => _localParameters;

    public TransportParameters? PeerTransportParameters => _peerParameters;

    public RttEstimator Rtt => _rtt;

    public LossDetection Loss => _loss;

    public ICongestionController Congestion => _congestion;

    public ConnectionIdManager ConnectionIds => _connectionIds;

    /// <summary>The key phase bit of the 1-RTT keys in use (RFC 9001 §6); false before 1-RTT keys exist.</summary>
    internal bool KeyPhase => _oneRttKeys?.KeyPhase ?? false;

    /// <summary>Key updates so far, started by either side (the key phase bit flips with each).</summary>
    internal int KeyPhaseGeneration => _oneRttKeys?.Generation ?? 0;

    /// <summary>True once the peer acknowledged a packet sealed with the current 1-RTT keys.</summary>
    internal bool CurrentKeysAcknowledged => _oneRttKeys?.CurrentPhaseAcknowledged ?? false;

    /// <summary>True once a packet opened with the current 1-RTT read keys arrived.</summary>
    internal bool CurrentKeysReceived => _oneRttKeys is { FirstReceivedInPhase: < long.MaxValue };

    public byte[] OriginalDestinationConnectionId => _originalDestinationConnectionId;

    /// <summary>Packets and bytes counters for diagnostics and tests.</summary>
    public ConnectionStatistics Statistics { get; } = new();

    /// <summary>Whether the keys of <paramref name="space"/> were discarded (RFC 9001 §4.9; never for the application space).</summary>
    public bool IsSpaceDiscarded(PacketNumberSpace space) => _spaces[(int)space].Discarded;

    /// <summary>Whether 0-RTT data was accepted by the server (client) or accepted from the client (server).</summary>
    public bool EarlyDataAccepted => _tls.EarlyData == EarlyDataStatus.Accepted;

    /// <summary>Client: 0-RTT keys are installed and the handshake has not produced 1-RTT keys yet, so stream data goes out in 0-RTT.</summary>
    public bool CanSendEarlyData => IsClient && _zeroRttWriteKeys is not null && _oneRttKeys is null;

    /// <summary>Creates a client connection and queues its first flight. <paramref name="remoteAddress"/> is opaque to the core.</summary>
    public static QuicConnectionCore CreateClient(QuicConfiguration config, EndPoint? remoteAddress, long now, byte[]? token = null, IConnectionTracerFactory? tracers = null)
    {
        config.ThrowIfInvalid();
        uint version = config.SupportedVersions[0];
        // RFC 9369 §5: a ticket may only start a connection of the version it came from; resume in that version.
        if (config.SessionTicket is not null && TlsSessionTicket.TryDeserialize(config.SessionTicket, out TlsSessionTicket? ticket)
            && TicketVersion(ticket!) is uint ticketVersion && config.SupportedVersions.Contains(ticketVersion))
        {
            version = ticketVersion;
        }

        byte[] odcid = System.Security.Cryptography.RandomNumberGenerator.GetBytes(Math.Max(8, config.ConnectionIdLength));
        var connection = new QuicConnectionCore(config, isServer: false, version, odcid, remoteAddress, now, tracers: tracers);
        connection._token = token;
        connection.TraceStart(now);
        connection.StartClient(now);
        return connection;
    }

    /// <summary>
    /// Creates a server connection for a client Initial. <paramref name="clientDestinationConnectionId"/> is the DCID of
    /// that Initial (the original one, or the one from our Retry with <paramref name="originalDestinationConnectionId"/>
    /// and <paramref name="retrySourceConnectionId"/> set), <paramref name="clientSourceConnectionId"/> its SCID.
    /// </summary>
    public static QuicConnectionCore CreateServer(
        QuicConfiguration config,
        uint version,
        ReadOnlySpan<byte> clientDestinationConnectionId,
        ReadOnlySpan<byte> clientSourceConnectionId,
        EndPoint? remoteAddress,
        long now,
        byte[]? originalDestinationConnectionId = null,
        byte[]? retrySourceConnectionId = null,
        bool addressValidated = false,
        Func<ReadOnlySpan<byte>, byte[]>? resetTokenGenerator = null,
        byte[]? localConnectionId = null,
        bool deferConfiguration = false,
        IConnectionTracerFactory? tracers = null,
        EarlyDataAntiReplay? antiReplay = null)
    {
        byte[] odcid = originalDestinationConnectionId ?? clientDestinationConnectionId.ToArray();
        var connection = new QuicConnectionCore(config, isServer: true, version, odcid, remoteAddress, now, resetTokenGenerator, tracers, antiReplay);
        connection._retrySourceConnectionId = retrySourceConnectionId;
        connection._peerAddressValidated = addressValidated;
        connection._awaitingConfiguration = deferConfiguration;
        connection.StartServer(clientDestinationConnectionId, clientSourceConnectionId.ToArray(), localConnectionId, now);
        connection.TraceStart(now);
        return connection;
    }

    public bool TryDequeueEvent(out ConnectionEvent connectionEvent) => _events.TryDequeue(out connectionEvent);

    public int PendingEventCount => _events.Count;

    /// <summary>
    /// True while the congestion window has no room for another full datagram: nothing but an ACK-only packet could
    /// leave before an acknowledgment (or a probe timeout) arrives, and either one drives the next send.
    /// </summary>
    public bool IsCongestionLimited => State == ConnectionState.Established && _congestion.BytesInFlight + MaxDatagramSizeForPath() > _congestion.CongestionWindow;

    /// <summary>The earliest time <see cref="HandleTimeout"/> must be called; <see cref="long.MaxValue"/> when no timer is armed.</summary>
    public long NextTimeout
    {
        get
        {
            if (State == ConnectionState.Closed) return long.MaxValue;
            if (State is ConnectionState.Closing or ConnectionState.Draining) return _closeDeadline;
            long t = _idleDeadline;
            if (_loss.LossDetectionTimer is long lossTimer && lossTimer < t) t = lossTimer;
            // A server at its anti-amplification limit (RFC 9000 §8.1) can send nothing, not even a due ACK, until
            // the peer sends more: waking up for those would spin (the deadline stays in the past).
            bool canSend = AmplificationBudget() >= MinimumDatagramBudget;
            for (int i = 0; i < _spaces.Length && canSend; i++)
            {
                PacketNumberSpaceState s = _spaces[i];
                if (!s.Discarded && s.Ack.AckPending && s.Ack.AckDeadline < t && HasWriteKeys(s.Space)) t = s.Ack.AckDeadline;
            }

            if (_oneRttKeys?.PreviousRead is not null && _oneRttKeys.PreviousReadDiscardTime < t) t = _oneRttKeys.PreviousReadDiscardTime;
            if (canSend && _pacingWakeup is long wake && wake < t) t = wake;
            if (_pathValidationDeadline < t) t = _pathValidationDeadline;
            if (_quietTrimDeadline < t) t = _quietTrimDeadline;
            return t;
        }
    }

    /// <summary>Handles every timer that is due at <paramref name="now"/>.</summary>
    public void HandleTimeout(long now)
    {
        _now = now;
        switch (State)
        {
            case ConnectionState.Closed:
                return;
            case ConnectionState.Closing:
            case ConnectionState.Draining:
                if (now >= _closeDeadline) EnterClosed();
                return;
        }

        if (now >= _idleDeadline)
        {
            CloseReason = new QuicCloseReason { IdleTimeout = true, Reason = "idle timeout" };
            EnterClosed();
            return;
        }

        _oneRttKeys?.DiscardPreviousIfDue(now);
        if (now >= _quietTrimDeadline) TrimWhileQuiet();
        if (_pacingWakeup is long wake && now >= wake) _pacingWakeup = null;
        HandlePathValidationTimeout(now);

        if (_loss.LossDetectionTimer is long timer && now >= timer)
        {
            LossTimeoutResult result = _loss.OnLossDetectionTimeout(LossContext, now, _lossHost);
            if (result.ProbeRequired)
            {
                Statistics.ProbeTimeouts++;
                ScheduleProbes(result.ProbeSpace, result.ProbeCount);

                // RFC 9002 §6.2.4: also probe other spaces with data in flight. Before confirmation the Handshake probes
                // of a client may go to a server that already discarded its Handshake keys; a 1-RTT probe gets an answer.
                if (result.ProbeSpace != PacketNumberSpace.ApplicationData && _oneRttKeys is not null && _loss.HasAckElicitingInFlight(PacketNumberSpace.ApplicationData))
                {
                    ScheduleProbes(PacketNumberSpace.ApplicationData, 1);
                }
            }

            _loss.SetLossDetectionTimer(LossContext, now);
        }
    }

    /// <summary>A datagram went out or came in: the quiet period starts again.</summary>
    private void OnDatagramActivity(long now)
    {
        if (_oneRttKeys is not null) _quietTrimDeadline = now + s_quietTrimDelay;
    }

    private void TrimWhileQuiet()
    {
        _quietTrimDeadline = long.MaxValue;
        _oneRttKeys?.ReleaseAeadContexts();
        _loss.TrimPool();
        if (_events.Count == 0) _events.TrimExcess();
    }

    /// <summary>Closes the connection immediately with an application error (CONNECTION_CLOSE 0x1d).</summary>
    public void Close(ulong applicationErrorCode, string reason, long now) => BeginClose(null, applicationErrorCode, reason, now);

    /// <summary>
    /// Gives up a handshake that took too long: closes like <see cref="Close"/>, and the close reason says it was a
    /// timeout (metrics and logs report error.type "timeout", not an application error).
    /// </summary>
    public void CloseOnHandshakeTimeout(long now) => BeginClose(null, 0, "handshake timeout", now, handshakeTimeout: true);

    /// <summary>Queues a PING (ack-eliciting) in the next packet; raises <see cref="ConnectionEventKind.PingAcknowledged"/> when acknowledged.</summary>
    public void Ping() => _pingsRequested++;

    /// <summary>Starts a key update (RFC 9001 §6). False when not yet allowed (handshake not confirmed or the previous update unacknowledged).</summary>
    public bool RequestKeyUpdate(long now)
    {
        if (!_handshakeConfirmed || _oneRttKeys is null || !_oneRttKeys.CurrentPhaseAcknowledged || State != ConnectionState.Established)
        {
            return false;
        }

        _oneRttKeys.Update(now, 3 * _loss.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, LossContext));
        Statistics.KeyUpdates++;
        TraceKeyUpdate(localUpdate: true);
        _events.Enqueue(new ConnectionEvent(ConnectionEventKind.KeyUpdated));
        return true;
    }

    /// <summary>Switches to a fresh peer connection ID (retiring the current one). False when the peer supplied no spare ID.</summary>
    public bool ChangeConnectionId() => _connectionIds.RotatePeerId();

    public void Dispose()
    {
        _qlog?.Complete();
        foreach (PacketNumberSpaceState s in _spaces) s.Dispose();
        _oneRttKeys?.Dispose();
        _originalInitialReadKeys?.Dispose();
        _zeroRttReadKeys?.Dispose();
        _zeroRttWriteKeys?.Dispose();
        DisposeStreams();
    }

    private LossDetectionContext LossContext => new()
    {
        HandshakeConfirmed = _handshakeConfirmed,
        PeerCompletedAddressValidation = IsServer || _peerCompletedAddressValidation || _handshakeConfirmed,
        IsAmplificationLimited = IsAmplificationLimited(),
        HasHandshakeKeys = _spaces[1].WriteKeys is not null,
        HandshakeDataPending = !_handshakeConfirmed && !_spaces[1].Discarded && _spaces[1].CryptoSend.HasPendingData(long.MaxValue),
        HasOneRttKeys = _oneRttKeys is not null,
        MaxAckDelay = (long)(_peerParameters?.MaxAckDelay ?? 25) * TicksPerMillisecond,
        IsServer = IsServer,
    };

    private bool IsAmplificationLimited() => IsServer && !_peerAddressValidated && _bytesSentOnPath >= 3 * _bytesReceivedOnPath;

    /// <summary>Below this many bytes of amplification budget no datagram is built.</summary>
    private const int MinimumDatagramBudget = 64;

    private long AmplificationBudget() => IsServer && !_peerAddressValidated ? Math.Max(0, 3 * _bytesReceivedOnPath - _bytesSentOnPath) : long.MaxValue;

    private bool HasWriteKeys(PacketNumberSpace space) => space switch
    {
        PacketNumberSpace.ApplicationData => _oneRttKeys is not null || _zeroRttWriteKeys is not null,
        _ => _spaces[(int)space].WriteKeys is not null,
    };

    private void ScheduleProbes(PacketNumberSpace space, int count)
    {
        PacketNumberSpaceState s = _spaces[(int)space];
        s.ProbesPending = Math.Max(s.ProbesPending, count);

        // RFC 9002 §6.2.4: a probe should carry new or previously sent data; retransmit unacknowledged CRYPTO data.
        if (space != PacketNumberSpace.ApplicationData || !_handshakeConfirmed)
        {
            s.CryptoSend.OnLost(0, (int)Math.Min(int.MaxValue, s.CryptoSend.SentOffset), false);
        }
    }

    private TransportParameters CreateLocalTransportParameters()
    {
        var p = new TransportParameters
        {
            MaxIdleTimeout = (ulong)_config.IdleTimeout.TotalMilliseconds,
            MaxUdpPayloadSize = (ulong)_config.MaxUdpPayloadSize,
            InitialMaxData = (ulong)_config.MaxData,
            InitialMaxStreamDataBidiLocal = (ulong)_config.MaxStreamData,
            InitialMaxStreamDataBidiRemote = (ulong)_config.MaxStreamData,
            InitialMaxStreamDataUni = (ulong)_config.MaxStreamData,
            InitialMaxStreamsBidi = (ulong)_config.MaxBidirectionalStreams,
            InitialMaxStreamsUni = (ulong)_config.MaxUnidirectionalStreams,
            AckDelayExponent = (ulong)_config.AckDelayExponent,
            MaxAckDelay = (ulong)_config.MaxAckDelay.TotalMilliseconds,
            DisableActiveMigration = _config.DisableActiveMigration,
            ActiveConnectionIdLimit = (ulong)_config.ActiveConnectionIdLimit,
            MaxDatagramFrameSize = _config.MaxDatagramFrameSize is long m ? (ulong)m : null,
            GreaseQuicBit = _config.GreaseQuicBit,
        };
        return p;
    }

    /// <summary>qlog: connection_started and the local transport parameters (once the connection IDs are chosen).</summary>
    private void TraceStart(long now)
    {
        if (_qlog is not { } qlog) return;
        qlog.ConnectionStarted(now, RemoteAddress, _version);
        if (!_awaitingConfiguration) qlog.ParametersSet(now, local: true, _localParameters, null);
    }

    /// <summary>qlog: a 1-RTT key update replaces both directions' secrets.</summary>
    private void TraceKeyUpdate(bool localUpdate)
    {
        if (_qlog is not { } qlog) return;
        qlog.KeyUpdated(EncryptionLevel.OneRtt, clientSecret: true, localUpdate, Statistics.KeyUpdates);
        qlog.KeyUpdated(EncryptionLevel.OneRtt, clientSecret: false, localUpdate, Statistics.KeyUpdates);
    }

    private void StartClient(long now)
    {
        byte[] scid = _connectionIds.NewLocalId();
        _connectionIds.AddInitialLocalId(scid);
        _connectionIds.SetInitialPeerId(_originalDestinationConnectionId);
        _localParameters.InitialSourceConnectionId = scid;
        // RFC 9368 §3: the first flight is compatible with every version we support (1 and 2), in our preference order.
        _localParameters.VersionInformation = new VersionInformation { ChosenVersion = _version, AvailableVersions = _config.SupportedVersions.ToArray() };
        InstallInitialKeys(_originalDestinationConnectionId);
        _peerAddressValidated = true; // the client never limits itself
        ApplyRememberedParametersForEarlyData();
        _tls.Start(EncodeLocalParameters());
        _loss.SetLossDetectionTimer(LossContext, now);
    }

    private void StartServer(ReadOnlySpan<byte> clientDcid, byte[] clientScid, byte[]? localConnectionId, long now)
    {
        byte[] scid = localConnectionId ?? _connectionIds.NewLocalId();
        ConnectionIdEntry entry = _connectionIds.AddInitialLocalId(scid);
        _connectionIds.SetInitialPeerId(clientScid);
        SetServerConnectionIdParameters(entry);
        InstallInitialKeys(clientDcid);
        if (!_awaitingConfiguration) _tls.Start(EncodeLocalParameters());
    }

    private void SetServerConnectionIdParameters(ConnectionIdEntry initialLocalId)
    {
        _localParameters.InitialSourceConnectionId = initialLocalId.ConnectionId;
        _localParameters.OriginalDestinationConnectionId = _originalDestinationConnectionId;
        _localParameters.RetrySourceConnectionId = _retrySourceConnectionId;
        _localParameters.StatelessResetToken = initialLocalId.StatelessResetToken;
        _localParameters.VersionInformation = new VersionInformation { ChosenVersion = _version, AvailableVersions = _config.SupportedVersions.ToArray() };
    }

    private void InstallInitialKeys(ReadOnlySpan<byte> clientDcid)
    {
        if (!clientDcid.SequenceEqual(_initialKeysConnectionId)) _initialKeysConnectionId = clientDcid.ToArray();
        InitialSecrets.Derive(_version, clientDcid, out byte[] clientSecret, out byte[] serverSecret);
        PacketNumberSpaceState initial = _spaces[0];
        initial.ReadKeys?.Dispose();
        initial.WriteKeys?.Dispose();
        initial.ReadKeys = PacketProtectionKeys.FromSecret(CipherSuite.Aes128GcmSha256, IsServer ? clientSecret : serverSecret, _version);
        initial.WriteKeys = PacketProtectionKeys.FromSecret(CipherSuite.Aes128GcmSha256, IsServer ? serverSecret : clientSecret, _version);
        _qlog?.KeyUpdated(EncryptionLevel.Initial, clientSecret: true, localUpdate: false, keyPhase: -1);
        _qlog?.KeyUpdated(EncryptionLevel.Initial, clientSecret: false, localUpdate: false, keyPhase: -1);
    }

    /// <summary>The local transport parameters as handed to TLS (tests may edit them through the configuration's hook).</summary>
    private byte[] EncodeLocalParameters()
    {
        if (_config.LocalTransportParametersTestHook is { } hook)
        {
            TransportParameters copy = TransportParameters.TryDecode(_localParameters.Encode(), sentByServer: IsServer, out TransportParameters? decoded, out _) ? decoded! : _localParameters;
            hook(copy, IsServer);
            return copy.Encode();
        }

        return _localParameters.Encode();
    }

    private void Emit(ConnectionEventKind kind, ulong streamId = 0, ulong errorCode = 0, byte[]? data = null, bool flag = false)
        => _events.Enqueue(new ConnectionEvent(kind, streamId, errorCode, data, flag));

    private void ResetIdleTimer(long now)
    {
        if (_idleTimeoutTicks > 0)
        {
            // RFC 9000 §10.1: at least three PTOs so that a few lost probes don't end the connection.
            long timeout = Math.Max(_idleTimeoutTicks, 3 * _loss.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, LossContext));
            _idleDeadline = now + timeout;
        }
    }

    private void EnterClosed()
    {
        if (State == ConnectionState.Closed) return;
        // A peer's CONNECTION_CLOSE announced the end already, when draining began: one Terminated per connection.
        bool announced = State == ConnectionState.Draining && CloseReason is { ClosedByPeer: true, StatelessReset: false };
        CloseReason ??= new QuicCloseReason { Reason = "closed" };
        State = ConnectionState.Closed;
        if (!announced) Emit(ConnectionEventKind.Terminated);
        AbortAllStreams();
        _qlog?.Complete();
    }

    /// <summary>Starts an immediate close (RFC 9000 §10.2): transport error when <paramref name="error"/> is set, else application.</summary>
    private void BeginClose(TransportError? error, ulong applicationCode, string reason, long now, bool handshakeTimeout = false)
    {
        if (State is ConnectionState.Closing or ConnectionState.Draining or ConnectionState.Closed) return;
        _pendingLocalError = error;
        _pendingCloseIsApplication = error is null;
        _pendingApplicationCloseCode = applicationCode;
        _pendingCloseReason = error?.Reason ?? reason;
        CloseReason = error is TransportError e
            ? new QuicCloseReason { ErrorCode = (ulong)e.Code, FrameType = e.FrameType, Reason = e.Reason }
            : new QuicCloseReason { ErrorCode = applicationCode, IsApplicationError = true, Reason = reason, HandshakeTimeout = handshakeTimeout };
        State = ConnectionState.Closing;
        _closeFramePending = true;
        _closeDeadline = now + 3 * _loss.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, LossContext);
        if (!HasAnyWriteKeys()) EnterClosed();
    }

    private bool HasAnyWriteKeys() => _spaces[0].WriteKeys is not null || _spaces[1].WriteKeys is not null || _oneRttKeys is not null;

    private void CloseWithError(in TransportError error, long now)
    {
        Statistics.ProtocolErrors++;
        BeginClose(error, 0, error.Reason, now);
    }
}

/// <summary>Counters kept by a connection.</summary>
internal sealed class ConnectionStatistics
{
    public long DatagramsReceived;
    public long DatagramsSent;
    public long PacketsReceived;
    public long PacketsSent;
    public long PacketsLost;
    public long PacketsDropped;
    public long BytesReceived;
    public long BytesSent;
    public long ProbeTimeouts;
    public long KeyUpdates;
    public long ProtocolErrors;
    public long DecryptionFailures;
    public long PathMtuUpdates;
    public long MtuProbesLost;
    public long PacketNumbersSkipped;
    public long StreamsOpened;

    /// <summary>CRYPTO and STREAM frames whose data was queued again after their packet was declared lost.</summary>
    public long FramesRetransmitted;
    public long ZeroRttPacketsSent;
    public long ZeroRttPacketsReceived;
}
