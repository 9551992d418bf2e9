using KestrelQuic.Protocol;

namespace KestrelQuic.Streams;

/// <summary>
/// Stream concurrency (RFC 9000 §4.6): enforces the limits we advertise (MAX_STREAMS) on peer-initiated streams,
/// opens lower-numbered streams implicitly (§3.2), returns credit as peer streams close, and allocates IDs for
/// locally initiated streams within the peer's limits (STREAMS_BLOCKED when they are reached).
/// </summary>
internal sealed class StreamLimits
{
    /// <summary>Largest MAX_STREAMS value: higher would allow IDs beyond 2^62 (RFC 9000 §4.6).</summary>
    public const ulong MaxStreamsLimit = 1UL << 60;

    private readonly bool _isServer;

    // Indexed by (int)QuicStreamType.
    private readonly ulong[] _remoteInitial = new ulong[2];   // concurrency we keep available to the peer
    private readonly ulong[] _remoteMax = new ulong[2];       // limit advertised (and enforced)
    private readonly ulong[] _remoteOpened = new ulong[2];    // peer streams opened (next index)
    private readonly ulong[] _remoteClosed = new ulong[2];
    private readonly bool[] _maxStreamsResend = new bool[2];

    private readonly ulong[] _localMax = new ulong[2];        // peer's limit on our streams
    private readonly ulong[] _localOpened = new ulong[2];
    private readonly ulong?[] _blockedAt = new ulong?[2];     // limit at which opening failed
    private readonly ulong?[] _blockedSent = new ulong?[2];   // limit of the last STREAMS_BLOCKED sent

    /// <param name="isServer">Our role.</param>
    /// <param name="localMaxBidi">initial_max_streams_bidi we advertise (peer-initiated bidirectional streams allowed).</param>
    /// <param name="localMaxUni">initial_max_streams_uni we advertise.</param>
    public StreamLimits(bool isServer, ulong localMaxBidi, ulong localMaxUni)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(localMaxBidi, MaxStreamsLimit);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(localMaxUni, MaxStreamsLimit);
        _isServer = isServer;
        _remoteInitial[0] = _remoteMax[0] = localMaxBidi;
        _remoteInitial[1] = _remoteMax[1] = localMaxUni;
    }

    public bool IsServer => _isServer;

    /// <summary>The limit we currently enforce on peer-initiated streams of <paramref name="type"/>.</summary>
    public ulong RemoteMaxStreams(QuicStreamType type) => _remoteMax[(int)type];

    /// <summary>Number of peer-initiated streams of <paramref name="type"/> opened so far.</summary>
    public ulong RemoteOpened(QuicStreamType type) => _remoteOpened[(int)type];

    /// <summary>The peer's limit on our streams of <paramref name="type"/>.</summary>
    public ulong PeerMaxStreams(QuicStreamType type) => _localMax[(int)type];

    /// <summary>Number of locally initiated streams of <paramref name="type"/> opened so far.</summary>
    public ulong LocalOpened(QuicStreamType type) => _localOpened[(int)type];

    /// <summary>How many more local streams of <paramref name="type"/> can be opened now.</summary>
    public ulong AvailableLocal(QuicStreamType type) => _localMax[(int)type] - _localOpened[(int)type];

    /// <summary>True if a locally initiated stream ID refers to a stream we already opened.</summary>
    public bool IsLocalStreamOpened(ulong id) =>
        StreamId.IsLocallyInitiated(id, _isServer) && StreamId.Index(id) < _localOpened[(int)StreamId.TypeOf(id)];

    /// <summary>
    /// Validates a stream ID carried by a peer frame. Peer-initiated: beyond our limit → STREAM_LIMIT_ERROR;
    /// otherwise every not-yet-opened stream up to <paramref name="id"/> is opened: <paramref name="count"/> streams
    /// starting at <paramref name="firstNewId"/> (IDs step by 4); count is 0 if it was already open (or closed).
    /// Locally initiated: a stream we have not opened yet → STREAM_STATE_ERROR (RFC 9000 §19.8 etc.), count 0.
    /// </summary>
    public bool TryOpenRemote(ulong id, out ulong firstNewId, out ulong count, out TransportError error, ulong frameType = 0)
    {
        firstNewId = 0;
        count = 0;
        int t = (int)StreamId.TypeOf(id);
        ulong index = StreamId.Index(id);
        if (StreamId.IsLocallyInitiated(id, _isServer))
        {
            if (index >= _localOpened[t])
            {
                error = new TransportError(TransportErrorCode.StreamStateError, frameType, "frame for a locally initiated stream that was not opened");
                return false;
            }

            error = default;
            return true;
        }

        if (index >= _remoteMax[t])
        {
            error = new TransportError(TransportErrorCode.StreamLimitError, frameType, "peer exceeded the stream limit");
            return false;
        }

        if (index >= _remoteOpened[t])
        {
            firstNewId = StreamId.Create(_remoteOpened[t], clientInitiated: _isServer, bidirectional: t == 0);
            count = index - _remoteOpened[t] + 1;
            _remoteOpened[t] = index + 1;
        }

        error = default;
        return true;
    }

    /// <summary>Simplified form of <see cref="TryOpenRemote(ulong, out ulong, out ulong, out TransportError, ulong)"/>.</summary>
    public bool TryOpenRemote(ulong id, out ulong firstNewId, out TransportError error) =>
        TryOpenRemote(id, out firstNewId, out _, out error);

    /// <summary>Allocates the next local stream ID; false when the peer's limit is reached (then STREAMS_BLOCKED is due).</summary>
    public bool TryOpenLocal(QuicStreamType type, out ulong id)
    {
        int t = (int)type;
        if (_localOpened[t] >= _localMax[t])
        {
            _blockedAt[t] = _localMax[t];
            id = 0;
            return false;
        }

        id = StreamId.Create(_localOpened[t], clientInitiated: !_isServer, bidirectional: type == QuicStreamType.Bidirectional);
        _localOpened[t]++;
        return true;
    }

    /// <summary>True if a STREAMS_BLOCKED frame should be sent for <paramref name="type"/> (once per limit).</summary>
    public bool ShouldSendStreamsBlocked(QuicStreamType type, out ulong limit)
    {
        int t = (int)type;
        limit = _localMax[t];
        return _blockedAt[t] == _localMax[t] && _blockedSent[t] != _localMax[t];
    }

    public void OnStreamsBlockedSent(QuicStreamType type, ulong limit) => _blockedSent[(int)type] = limit;

    public void OnStreamsBlockedLost(QuicStreamType type, ulong limit)
    {
        if (_blockedSent[(int)type] == limit) _blockedSent[(int)type] = null;
    }

    /// <summary>MAX_STREAMS (or the initial_max_streams_* transport parameter) from the peer; decreases are ignored. True if raised.</summary>
    public bool OnMaxStreams(QuicStreamType type, ulong max)
    {
        int t = (int)type;
        max = Math.Min(max, MaxStreamsLimit); // > 2^60 is rejected by the decoders; clamp defensively
        if (max <= _localMax[t]) return false;
        _localMax[t] = max;
        _blockedAt[t] = null;
        return true;
    }

    /// <summary>A peer-initiated stream was fully closed and released: one unit of credit can be returned.</summary>
    public void OnRemoteStreamClosed(QuicStreamType type)
    {
        int t = (int)type;
        if (_remoteClosed[t] >= _remoteOpened[t]) throw new InvalidOperationException("More streams closed than opened.");
        _remoteClosed[t]++;
    }

    /// <summary>
    /// True if a MAX_STREAMS frame should be sent: the peer regains as many streams as were closed, announced once
    /// at least half the initial limit accumulated (to avoid a frame per stream), or when a previous one was lost.
    /// </summary>
    public bool ShouldSendMaxStreams(QuicStreamType type, out ulong newMax)
    {
        int t = (int)type;
        ulong target = Math.Min(MaxStreamsLimit, _remoteClosed[t] + _remoteInitial[t]);
        newMax = Math.Max(target, _remoteMax[t]);
        if (_maxStreamsResend[t]) return true;
        ulong threshold = Math.Max(1, _remoteInitial[t] / 2);
        return target > _remoteMax[t] && target - _remoteMax[t] >= threshold;
    }

    /// <summary>MAX_STREAMS sent: the new limit is enforced immediately (the peer may use it once it arrives).</summary>
    public void OnMaxStreamsSent(QuicStreamType type, ulong value)
    {
        int t = (int)type;
        if (value > _remoteMax[t]) _remoteMax[t] = value;
        _maxStreamsResend[t] = false;
    }

    /// <summary>MAX_STREAMS lost: the current limit is sent again (RFC 9000 §13.3).</summary>
    public void OnMaxStreamsLost(QuicStreamType type) => _maxStreamsResend[(int)type] = true;
}
