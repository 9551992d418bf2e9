using System.Security.Cryptography;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Connection;

/// <summary>A connection ID with its sequence number and stateless reset token (RFC 9000 §5.1).</summary>
internal sealed class ConnectionIdEntry
{
    public ConnectionIdEntry(ulong sequenceNumber, byte[] connectionId, byte[]? statelessResetToken)
    {
        SequenceNumber = sequenceNumber;
        ConnectionId = connectionId;
        StatelessResetToken = statelessResetToken;
    }

    public ulong SequenceNumber { get; }

    public byte[] ConnectionId { get; }

    public byte[]? StatelessResetToken { get; }

    /// <summary>Local IDs: NEW_CONNECTION_ID still needs to be (re)sent. Peer IDs: unused.</summary>
    public bool NeedsSend { get; set; }

    public bool Retired { get; set; }
}

/// <summary>
/// Connection IDs of both sides (RFC 9000 §5.1): the ones we issue (the peer addresses us with them) and the
/// ones the peer issues (we address it with them), with the active_connection_id_limit, retire_prior_to and
/// RETIRE_CONNECTION_ID rules.
/// </summary>
internal sealed class ConnectionIdManager
{
    private readonly List<ConnectionIdEntry> _local = new();
    private readonly List<ConnectionIdEntry> _peer = new();
    private const int MinPendingRetirementLimit = 64;

    private readonly Queue<ulong> _pendingRetirements = new();
    private readonly RangeSet _retiredPeerSequences = new(4); // retired by rotation (retire_prior_to covers the rest)
    private readonly int _localLength;
    private readonly Func<ReadOnlySpan<byte>, byte[]> _resetTokenGenerator;
    private ulong _nextLocalSequence;
    private ulong _peerRetirePriorTo;
    private int _peerActiveLimit = 2;

    public ConnectionIdManager(int localLength, Func<ReadOnlySpan<byte>, byte[]>? resetTokenGenerator, int localActiveLimit)
    {
        _localLength = localLength;
        _resetTokenGenerator = resetTokenGenerator ?? (_ => RandomNumberGenerator.GetBytes(16));
        LocalActiveLimit = localActiveLimit;
    }

    /// <summary>Our active_connection_id_limit: how many peer IDs we store.</summary>
    public int LocalActiveLimit { get; set; }

    /// <summary>The ID currently used as destination for packets we send.</summary>
    public ConnectionIdEntry? ActivePeer { get; private set; }

    public IReadOnlyList<ConnectionIdEntry> LocalIds => _local;

    public IReadOnlyList<ConnectionIdEntry> PeerIds => _peer;

    /// <summary>Raised when a local ID is added or retired, so the endpoint can route (or stop routing) it.</summary>
    public event Action<ConnectionIdEntry, bool>? LocalIdChanged;

    /// <summary>Creates a random local connection ID of the configured length.</summary>
    public byte[] NewLocalId() => RandomNumberGenerator.GetBytes(_localLength);

    /// <summary>Registers the ID chosen for the handshake (sequence 0; its reset token travels in transport parameters on the server).</summary>
    public ConnectionIdEntry AddInitialLocalId(byte[] connectionId)
    {
        var entry = new ConnectionIdEntry(_nextLocalSequence++, connectionId, _resetTokenGenerator(connectionId));
        _local.Add(entry);
        LocalIdChanged?.Invoke(entry, true);
        return entry;
    }

    /// <summary>Issues local IDs up to the peer's active_connection_id_limit (bounded by a sanity cap), queued as NEW_CONNECTION_ID.</summary>
    public void IssueLocalIds(int peerActiveLimit)
    {
        _peerActiveLimit = Math.Clamp(peerActiveLimit, 2, 8);
        while (CountActiveLocal() < _peerActiveLimit)
        {
            IssueOne();
        }
    }

    /// <summary>Retires all current local IDs in favour of a fresh one (connection ID rotation requested by the application).</summary>
    public ConnectionIdEntry IssueOne()
    {
        byte[] cid = NewLocalId();
        var entry = new ConnectionIdEntry(_nextLocalSequence++, cid, _resetTokenGenerator(cid)) { NeedsSend = true };
        _local.Add(entry);
        LocalIdChanged?.Invoke(entry, true);
        return entry;
    }

    /// <summary>Sets the peer's handshake connection ID (sequence 0).</summary>
    public void SetInitialPeerId(byte[] connectionId, byte[]? resetToken = null)
    {
        _peer.Clear();
        ActivePeer = new ConnectionIdEntry(0, connectionId, resetToken);
        _peer.Add(ActivePeer);
    }

    /// <summary>The stateless_reset_token transport parameter of the server's handshake ID.</summary>
    public void SetInitialPeerResetToken(byte[] token)
    {
        if (ActivePeer is { SequenceNumber: 0 } e)
        {
            int i = _peer.IndexOf(e);
            ActivePeer = new ConnectionIdEntry(0, e.ConnectionId, token);
            _peer[i] = ActivePeer;
        }
    }

    /// <summary>Processes NEW_CONNECTION_ID (RFC 9000 §19.15).</summary>
    public bool OnNewConnectionId(ulong sequence, ulong retirePriorTo, ReadOnlySpan<byte> connectionId, ReadOnlySpan<byte> resetToken, out TransportError error)
    {
        error = default;
        if (ActivePeer is not null && ActivePeer.ConnectionId.Length == 0)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, 0x18, "NEW_CONNECTION_ID while using a zero-length connection ID");
            return false;
        }

        foreach (ConnectionIdEntry e in _peer)
        {
            if (e.SequenceNumber == sequence)
            {
                if (!e.ConnectionId.AsSpan().SequenceEqual(connectionId) || (e.StatelessResetToken is not null && !e.StatelessResetToken.AsSpan().SequenceEqual(resetToken)))
                {
                    error = new TransportError(TransportErrorCode.ProtocolViolation, 0x18, "NEW_CONNECTION_ID reuses a sequence number for a different ID");
                    return false;
                }

                return true; // retransmission
            }
            else if (e.ConnectionId.AsSpan().SequenceEqual(connectionId))
            {
                error = new TransportError(TransportErrorCode.ProtocolViolation, 0x18, "NEW_CONNECTION_ID reuses a connection ID with another sequence number");
                return false;
            }
        }

        if (_retiredPeerSequences.Contains((long)sequence))
        {
            return true; // a retransmission of an ID we already retired: never use it again (RFC 9000 §5.1.2)
        }

        if (sequence < _peerRetirePriorTo)
        {
            // Already retired by an earlier retire_prior_to: retire it straight away (RFC 9000 §19.15).
            _pendingRetirements.Enqueue(sequence);
            return CheckPendingRetirements(out error);
        }

        _peer.Add(new ConnectionIdEntry(sequence, connectionId.ToArray(), resetToken.ToArray()));

        if (retirePriorTo > _peerRetirePriorTo)
        {
            _peerRetirePriorTo = retirePriorTo;
            for (int i = _peer.Count - 1; i >= 0; i--)
            {
                if (_peer[i].SequenceNumber < retirePriorTo)
                {
                    _pendingRetirements.Enqueue(_peer[i].SequenceNumber);
                    _peer.RemoveAt(i);
                }
            }

            if (ActivePeer is not null && ActivePeer.SequenceNumber < retirePriorTo)
            {
                ActivePeer = null;
            }
        }

        if (_peer.Count > LocalActiveLimit)
        {
            error = new TransportError(TransportErrorCode.ConnectionIdLimitError, 0x18, "peer exceeded active_connection_id_limit");
            return false;
        }

        ActivePeer ??= LowestPeer();
        return CheckPendingRetirements(out error);
    }

    /// <summary>
    /// RFC 9000 §5.1.2: the IDs retired but not yet announced in RETIRE_CONNECTION_ID are bounded (a peer flooding
    /// NEW_CONNECTION_ID with a growing retire_prior_to while our packets cannot get out would grow them forever);
    /// exceeding the bound is a CONNECTION_ID_LIMIT_ERROR. The bound allows the RFC's minimum of twice the limit.
    /// </summary>
    private bool CheckPendingRetirements(out TransportError error)
    {
        if (_pendingRetirements.Count > Math.Max(MinPendingRetirementLimit, 4 * LocalActiveLimit))
        {
            error = new TransportError(TransportErrorCode.ConnectionIdLimitError, 0x18, "too many connection IDs awaiting retirement");
            return false;
        }

        error = default;
        return true;
    }

    /// <summary>Switches to an unused peer ID, retiring the current one. False if the peer gave us no spare ID.</summary>
    public bool RotatePeerId()
    {
        ConnectionIdEntry? next = null;
        foreach (ConnectionIdEntry e in _peer)
        {
            if (e != ActivePeer && (next is null || e.SequenceNumber < next.SequenceNumber)) next = e;
        }

        if (next is null || ActivePeer is null) return false;
        _pendingRetirements.Enqueue(ActivePeer.SequenceNumber);
        _retiredPeerSequences.Add((long)ActivePeer.SequenceNumber);
        _retiredPeerSequences.TrimToCount(64);
        _peer.Remove(ActivePeer);
        ActivePeer = next;
        return true;
    }

    /// <summary>Processes RETIRE_CONNECTION_ID (RFC 9000 §19.16).</summary>
    public bool OnRetireConnectionId(ulong sequence, ReadOnlySpan<byte> packetDestinationConnectionId, out TransportError error)
    {
        error = default;
        if (sequence >= _nextLocalSequence)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, 0x19, "RETIRE_CONNECTION_ID for a sequence number never issued");
            return false;
        }

        for (int i = 0; i < _local.Count; i++)
        {
            ConnectionIdEntry e = _local[i];
            if (e.SequenceNumber != sequence) continue;
            if (e.ConnectionId.AsSpan().SequenceEqual(packetDestinationConnectionId))
            {
                error = new TransportError(TransportErrorCode.ProtocolViolation, 0x19, "RETIRE_CONNECTION_ID retires the ID the packet was sent to");
                return false;
            }

            _local.RemoveAt(i);
            LocalIdChanged?.Invoke(e, false);
            // Keep the peer supplied with IDs.
            while (CountActiveLocal() < _peerActiveLimit) IssueOne();
            return true;
        }

        return true; // already retired
    }

    public bool TryDequeueRetirement(out ulong sequence) => _pendingRetirements.TryDequeue(out sequence);

    public bool HasPendingRetirements => _pendingRetirements.Count > 0;

    /// <summary>Sequence numbers retired but not yet sent in RETIRE_CONNECTION_ID.</summary>
    public int PendingRetirementCount => _pendingRetirements.Count;

    public void RequeueRetirement(ulong sequence) => _pendingRetirements.Enqueue(sequence);

    /// <summary>
    /// True if <paramref name="token"/> equals the reset token of the peer ID in use (RFC 9000 §10.3.1: tokens of
    /// IDs not used yet or already retired MUST NOT be checked; IDs used before the current one were retired).
    /// </summary>
    public bool IsPeerStatelessResetToken(ReadOnlySpan<byte> token)
        => ActivePeer?.StatelessResetToken is { } t && CryptographicOperations.FixedTimeEquals(t, token);

    public ConnectionIdEntry? FindLocal(ReadOnlySpan<byte> connectionId)
    {
        foreach (ConnectionIdEntry e in _local)
        {
            if (e.ConnectionId.AsSpan().SequenceEqual(connectionId)) return e;
        }

        return null;
    }

    private int CountActiveLocal() => _local.Count;

    private ConnectionIdEntry? LowestPeer()
    {
        ConnectionIdEntry? best = null;
        foreach (ConnectionIdEntry e in _peer)
        {
            if (best is null || e.SequenceNumber < best.SequenceNumber) best = e;
        }

        return best;
    }
}
