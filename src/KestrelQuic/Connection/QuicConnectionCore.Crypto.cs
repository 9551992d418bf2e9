using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Connection;

internal sealed partial class QuicConnectionCore
{
    private byte[]? _pendingOneRttReadSecret;
    private byte[]? _pendingOneRttWriteSecret;
    private CipherSuite _oneRttSuite;
    private bool _peerParametersApplied;
    private bool _sessionTicketSent;

    /// <summary>Bridges the TLS state machine to this connection (kept separate so the callbacks are not public API of the connection).</summary>
    private sealed class TlsHost : ITlsHandshakeHost
    {
        private readonly QuicConnectionCore _c;

        public TlsHost(QuicConnectionCore c) => _c = c;

        public void OnHandshakeData(EncryptionLevel level, ReadOnlySpan<byte> data)
        {
            PacketNumberSpaceState s = _c._spaces[(int)level.ToSpace()];
            if (!s.Discarded) s.CryptoSend.Write(data);
        }

        public void OnSecret(EncryptionLevel level, TrafficDirection direction, CipherSuite suite, ReadOnlySpan<byte> secret)
            => _c.InstallSecret(level, direction, suite, secret);

        public void OnSessionTicket(TlsSessionTicket ticket) => _c.OnSessionTicket(ticket);

        public byte[]? OnClientTransportParameters(byte[] parameters) => _c.NegotiateCompatibleVersion(parameters);
    }

    /// <summary>
    /// Server, on the client's transport parameters and before any handshake secret exists: compatible version
    /// negotiation (RFC 9368 §2.3, RFC 9369 §4.1). When the client's first flight (in the original version) lists a
    /// version we support and prefer (our <see cref="Configuration.QuicConfiguration.SupportedVersions"/> order), the connection
    /// switches to it: Initial keys of that version from the client's DCID, Handshake and 1-RTT keys with its labels,
    /// and our Chosen Version says so. Returns the new local transport parameters, or null when nothing changes.
    /// </summary>
    private byte[]? NegotiateCompatibleVersion(byte[] clientParameters)
    {
        if (_versionNegotiated || !IsServer) return null;
        _versionNegotiated = true;
        // Malformed parameters, or a Chosen Version other than the packets' version, close the connection once TLS
        // is done with the ClientHello (ValidatePeerParameters); no switch on such input.
        if (!TransportParameters.TryDecode(clientParameters, sentByServer: false, out TransportParameters? client, out _)
            || client!.VersionInformation is not { } offer || offer.ChosenVersion != _originalVersion)
        {
            return null;
        }

        uint negotiated = _version;
        foreach (uint mine in _config.SupportedVersions)
        {
            // Versions 1 and 2 are compatible with each other in both directions (RFC 9369 §4): any of ours qualifies.
            if (mine == _originalVersion || Array.IndexOf(offer.AvailableVersions, mine) >= 0)
            {
                negotiated = mine;
                break;
            }
        }

        if (negotiated == _version) return null;

        // The original version's Initial keys keep reading the client's Initials until a Handshake packet arrives
        // (RFC 9369 §4.1); everything we send from now on, CRYPTO first of all, is in the negotiated version.
        PacketNumberSpaceState initial = _spaces[0];
        _originalInitialReadKeys = initial.ReadKeys;
        initial.ReadKeys = null;
        _version = negotiated;
        InstallInitialKeys(_initialKeysConnectionId);
        _localParameters.VersionInformation!.ChosenVersion = negotiated;
        return EncodeLocalParameters();
    }

    private void InstallSecret(EncryptionLevel level, TrafficDirection direction, CipherSuite suite, ReadOnlySpan<byte> secret)
    {
        bool read = direction == TrafficDirection.Read;
        _qlog?.KeyUpdated(level, clientSecret: read == IsServer, localUpdate: false, keyPhase: -1);
        switch (level)
        {
            case EncryptionLevel.Handshake:
                PacketNumberSpaceState hs = _spaces[1];
                if (read) hs.ReadKeys = PacketProtectionKeys.FromSecret(suite, secret, _version);
                else hs.WriteKeys = PacketProtectionKeys.FromSecret(suite, secret, _version);
                break;
            case EncryptionLevel.ZeroRtt:
                // 0-RTT stays in the client's original version even when the server switches (RFC 9369 §4.1).
                if (read) _zeroRttReadKeys = PacketProtectionKeys.FromSecret(suite, secret, _originalVersion);
                else _zeroRttWriteKeys = PacketProtectionKeys.FromSecret(suite, secret, _originalVersion);
                break;
            case EncryptionLevel.OneRtt:
                // Read and write secrets arrive separately; the key set needs both (key updates move them together).
                _oneRttSuite = suite;
                if (read) _pendingOneRttReadSecret = secret.ToArray();
                else _pendingOneRttWriteSecret = secret.ToArray();
                if (_pendingOneRttReadSecret is not null && _pendingOneRttWriteSecret is not null && _oneRttKeys is null)
                {
                    _oneRttKeys = new OneRttKeys(
                        PacketProtectionKeys.FromSecret(suite, _pendingOneRttReadSecret, _version),
                        PacketProtectionKeys.FromSecret(suite, _pendingOneRttWriteSecret, _version),
                        _config.KeyUpdateInterval);
                    System.Security.Cryptography.CryptographicOperations.ZeroMemory(_pendingOneRttReadSecret);
                    System.Security.Cryptography.CryptographicOperations.ZeroMemory(_pendingOneRttWriteSecret);
                    _pendingOneRttReadSecret = null;
                    _pendingOneRttWriteSecret = null;
                }

                break;
        }
    }

    /// <summary>1-RTT write keys are usable: either the full key set exists, or (server, RFC 9001 §4.1.4) only the write half so far.</summary>
    private PacketProtectionKeys? OneRttWriteKeysForSending()
    {
        if (_oneRttKeys is not null) return _oneRttKeys.CurrentWrite;
        if (_pendingOneRttWriteSecret is not null && IsServer)
        {
            // Server: may send 1-RTT (e.g. 0.5-RTT data) before it can read 1-RTT. Build the key set lazily once the read secret arrives.
            _halfRttWriteKeys ??= PacketProtectionKeys.FromSecret(_oneRttSuite, _pendingOneRttWriteSecret, _version);
            return _halfRttWriteKeys;
        }

        return null;
    }

    private PacketProtectionKeys? _halfRttWriteKeys;

    /// <summary>Acts on what the TLS state machine learned: peer transport parameters, completion, 0-RTT.</summary>
    /// <summary>CRYPTO_ERROR for a TLS alert we raise, with the handshake's reason (e.g. why a certificate was refused).</summary>
    private TransportError TlsFailure(TlsAlert alert)
    {
        string name = Diagnostics.QuicMetrics.SnakeCase(alert.ToString());
        return TransportError.Crypto((byte)alert, _tls.FailureReason is { Length: > 0 } reason ? $"TLS alert {name}: {reason}" : $"TLS alert {name}");
    }

    private void AfterTlsProgress(long now)
    {
        if (!_peerParametersApplied && _tls.PeerTransportParameters is byte[] raw)
        {
            _peerParametersApplied = true;
            if (!TransportParameters.TryDecode(raw, sentByServer: IsClient, out TransportParameters? peer, out TransportError error) || !ValidatePeerParameters(peer!, out error))
            {
                CloseWithError(error, now);
                return;
            }

            _peerParameters = peer;
            ApplyPeerParameters(peer!);
            _qlog?.ParametersSet(now, local: false, peer!, _tls.NegotiatedCipherSuite?.ToString());
        }

        if (_halfRttWriteKeys is not null && _oneRttKeys is not null)
        {
            _halfRttWriteKeys.Dispose();
            _halfRttWriteKeys = null;
        }

        if (!_handshakeComplete && _tls.IsHandshakeComplete)
        {
            _handshakeComplete = true;
            State = ConnectionState.Established;
            Emit(ConnectionEventKind.HandshakeCompleted);
            if (_tls.EarlyData == EarlyDataStatus.Rejected && IsClient)
            {
                // RFC 9001 §4.6.2: everything sent in 0-RTT is lost; resend it in 1-RTT.
                RequeueZeroRttData();
                _zeroRttWriteKeys?.Dispose();
                _zeroRttWriteKeys = null;
            }

            if (IsServer)
            {
                // RFC 9001 §4.1.2: the server's handshake is confirmed when it completes.
                _handshakeDonePending = true;
                OnHandshakeConfirmed(now);
                if (!_sessionTicketSent)
                {
                    _sessionTicketSent = true;
                    _tls.SendSessionTicket(CreateTicketApplicationData());
                }
            }

            _tls.ReleaseHandshakeState();
        }

        // Client: RFC 9001 §4.9.1 — Initial keys are dropped when the first Handshake packet is sent (done in the send path).
        ReprocessUndecryptable(now);
    }

    private bool ValidatePeerParameters(TransportParameters peer, out TransportError error)
    {
        error = default;
        const ulong tpError = 0;
        // RFC 9000 §7.3: authenticate the connection IDs used during the handshake.
        byte[]? peerScid = _connectionIds.ActivePeer?.ConnectionId;
        if (peer.InitialSourceConnectionId is null || (peerScid is not null && !peer.InitialSourceConnectionId.AsSpan().SequenceEqual(peerScid)))
        {
            error = new TransportError(TransportErrorCode.TransportParameterError, tpError, "initial_source_connection_id mismatch");
            return false;
        }

        if (IsServer)
        {
            // RFC 9368 §4: the client's Chosen Version must be the version of the packets that carried it.
            if (peer.VersionInformation is { } clientInfo && clientInfo.ChosenVersion != _originalVersion)
            {
                error = new TransportError(TransportErrorCode.VersionNegotiationError, tpError, "version_information chosen version differs from the packets' version");
                return false;
            }

            return true;
        }

        if (IsClient)
        {
            if (peer.OriginalDestinationConnectionId is null || !peer.OriginalDestinationConnectionId.AsSpan().SequenceEqual(_originalDestinationConnectionId))
            {
                error = new TransportError(TransportErrorCode.TransportParameterError, tpError, "original_destination_connection_id mismatch");
                return false;
            }

            bool retryMatches = _receivedRetry
                ? peer.RetrySourceConnectionId is not null && peer.RetrySourceConnectionId.AsSpan().SequenceEqual(_retrySourceConnectionId)
                : peer.RetrySourceConnectionId is null;
            if (!retryMatches)
            {
                error = new TransportError(TransportErrorCode.TransportParameterError, tpError, "retry_source_connection_id mismatch");
                return false;
            }

            if (!ValidateServerVersionInformation(peer.VersionInformation, out string? reason))
            {
                error = new TransportError(TransportErrorCode.VersionNegotiationError, tpError, reason);
                return false;
            }
        }

        return true;
    }

    /// <summary>Client: downgrade protection on the server's version_information (RFC 9368 §4, §8).</summary>
    private bool ValidateServerVersionInformation(VersionInformation? info, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? reason)
    {
        reason = null;
        if (info is null)
        {
            if (!_actedOnVersionNegotiation) return true;
            // §8: a version 1 server that does not send version_information is taken to support version 1 only.
            if (_version != QuicVersion.Version1)
            {
                reason = "version_information missing after Version Negotiation";
                return false;
            }

            info = new VersionInformation { ChosenVersion = QuicVersion.Version1, AvailableVersions = [QuicVersion.Version1] };
        }

        // The version in use is the server's Chosen Version; it must be the one its long headers told us.
        if (info.ChosenVersion != _version || !_config.SupportedVersions.Contains(info.ChosenVersion))
        {
            reason = $"version_information chosen version 0x{info.ChosenVersion:x8} differs from the negotiated 0x{_version:x8}";
            return false;
        }

        if (_actedOnVersionNegotiation)
        {
            // Had the Version Negotiation packet listed what the server really supports (its Available Versions and
            // the negotiated one), we must have picked the version we restarted with: otherwise it was forged.
            uint? wouldPick = null;
            foreach (uint mine in _config.SupportedVersions)
            {
                if (mine == _version || Array.IndexOf(info.AvailableVersions, mine) >= 0)
                {
                    wouldPick = mine;
                    break;
                }
            }

            if (info.AvailableVersions.Length == 0 || wouldPick != _originalVersion)
            {
                reason = $"version downgrade: the server supports 0x{wouldPick ?? 0:x8}, not only the 0x{_originalVersion:x8} Version Negotiation offered";
                return false;
            }
        }

        return true;
    }

    private void ApplyPeerParameters(TransportParameters peer)
    {
        if (peer.StatelessResetToken is { } token) _connectionIds.SetInitialPeerResetToken(token);
        ulong peerIdle = peer.MaxIdleTimeout;
        if (peerIdle > 0)
        {
            long peerTicks = (long)Math.Min(peerIdle, (ulong)(long.MaxValue / TicksPerMillisecond)) * TicksPerMillisecond;
            _idleTimeoutTicks = _idleTimeoutTicks == 0 ? peerTicks : Math.Min(_idleTimeoutTicks, peerTicks);
        }

        ApplyPeerStreamParameters(peer);
        if (_handshakeConfirmed) _connectionIds.IssueLocalIds((int)Math.Min(8, peer.ActiveConnectionIdLimit));
    }

    private void OnSessionTicket(TlsSessionTicket ticket)
    {
        // Remember what 0-RTT needs (RFC 9000 §7.4.1): the server's transport parameters.
        if (_peerParameters is not null) ticket.QuicData = _peerParameters.Encode();
        Emit(ConnectionEventKind.SessionTicketReceived, data: ticket.Serialize());
    }

    /// <summary>What the server wants back when a ticket is used: its transport parameters, to judge 0-RTT compatibility.</summary>
    private byte[] CreateTicketApplicationData() => _localParameters.Encode();

    /// <summary>The QUIC version of the connection a client's ticket came from (the server's Chosen Version it remembered), if known.</summary>
    internal static uint? TicketVersion(TlsSessionTicket ticket)
        => ticket.QuicData is { } data && TransportParameters.TryDecode(data, sentByServer: true, out TransportParameters? remembered, out _)
            ? remembered!.VersionInformation?.ChosenVersion
            : null;

    /// <summary>
    /// Server: a ticket is only used by a connection the client started in the version of the connection that issued
    /// it (RFC 9369 §5; the version after a compatible switch is the issuing one). Otherwise: a full handshake.
    /// </summary>
    internal bool IsTicketFromThisVersion(ReadOnlySpan<byte> ticketApplicationData)
        => TransportParameters.TryDecode(ticketApplicationData, sentByServer: true, out TransportParameters? remembered, out _)
            && (remembered!.VersionInformation is not { } issued || issued.ChosenVersion == _originalVersion);

    /// <summary>Server: 0-RTT is only accepted if the limits remembered in the ticket are not above the current ones (RFC 9000 §7.4.1).</summary>
    internal bool IsEarlyDataCompatible(ReadOnlySpan<byte> ticketApplicationData)
    {
        if (!_config.EnableEarlyData) return false;
        if (!TransportParameters.TryDecode(ticketApplicationData, sentByServer: true, out TransportParameters? remembered, out _) || remembered is null) return false;
        TransportParameters now = _localParameters;
        return remembered.InitialMaxData <= now.InitialMaxData
            && remembered.InitialMaxStreamDataBidiLocal <= now.InitialMaxStreamDataBidiLocal
            && remembered.InitialMaxStreamDataBidiRemote <= now.InitialMaxStreamDataBidiRemote
            && remembered.InitialMaxStreamDataUni <= now.InitialMaxStreamDataUni
            && remembered.InitialMaxStreamsBidi <= now.InitialMaxStreamsBidi
            && remembered.InitialMaxStreamsUni <= now.InitialMaxStreamsUni
            && (remembered.MaxDatagramFrameSize ?? 0) <= (now.MaxDatagramFrameSize ?? 0);
    }

    /// <summary>Client resuming with 0-RTT: flow-control limits come from the remembered server parameters (RFC 9000 §7.4.1).</summary>
    private void ApplyRememberedParametersForEarlyData()
    {
        if (!_config.EnableEarlyData || _config.SessionTicket is null) return;
        if (!TlsSessionTicket.TryDeserialize(_config.SessionTicket, out TlsSessionTicket? ticket) || ticket?.QuicData is null) return;
        if (TransportParameters.TryDecode(ticket.QuicData, sentByServer: true, out TransportParameters? remembered, out _) && remembered is not null)
        {
            ApplyPeerStreamParameters(remembered);
        }
    }
}
