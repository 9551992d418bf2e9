using System.Net;
using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;
using KestrelQuic.Tls;
using KestrelQuic.Wire;

namespace KestrelQuic.Connection;

internal sealed partial class QuicConnectionCore
{
    // One per thread, not per connection: a connection is driven by one thread at a time and the ranges are consumed
    // within the call, so idle connections do not each hold 4 KiB.
    [ThreadStatic]
    private static ValueRange[]? t_ackRangeScratch;

    /// <summary>
    /// Processes one UDP datagram (possibly several coalesced packets). The buffer is decrypted in place.
    /// Malformed or undecryptable packets are dropped; protocol violations close the connection. Never throws on peer input.
    /// </summary>
    public void ReceiveDatagram(Span<byte> datagram, EndPoint? remoteAddress, long now)
    {
        if (State is ConnectionState.Closed or ConnectionState.Draining) return;
        _now = now;
        Statistics.DatagramsReceived++;
        Statistics.BytesReceived += datagram.Length;
        OnDatagramActivity(now);
        bool samePath = remoteAddress is null || RemoteAddress is null || remoteAddress.Equals(RemoteAddress);
        if (samePath) _bytesReceivedOnPath += datagram.Length;

        if (State == ConnectionState.Closing)
        {
            // RFC 9000 §10.2.1: answer with CONNECTION_CLOSE, rate-limited (at most once per PTO-ish interval).
            if (now - _lastCloseSentTime > _rtt.SmoothedRtt) _closeFramePending = true;
            return;
        }

        int offset = 0;
        bool first = true;
        while (offset < datagram.Length)
        {
            Span<byte> rest = datagram.Slice(offset);
            if (!PacketHeaderParser.TryParse(rest, _config.ConnectionIdLength, out PacketHeader header))
            {
                Statistics.PacketsDropped++;
                break;
            }

            int length = header.PacketLength;
            ProcessPacket(rest.Slice(0, length), in header, remoteAddress, first, datagram.Length, now);
            _qlog?.MetricsUpdated(now, _rtt, _congestion, _loss.PtoCount);
            if (State is ConnectionState.Closed or ConnectionState.Draining) return;
            offset += length;
            first = false;
            if (!header.IsLongHeader) break;
        }
    }

    private void ProcessPacket(Span<byte> packet, in PacketHeader header, EndPoint? remoteAddress, bool firstInDatagram, int datagramLength, long now)
    {
        PacketProtectionKeys? switchKeys = null;
        try
        {
            ProcessPacket(packet, in header, remoteAddress, datagramLength, now, ref switchKeys);
        }
        finally
        {
            switchKeys?.Dispose();
        }
    }

    private void ProcessPacket(Span<byte> packet, in PacketHeader header, EndPoint? remoteAddress, int datagramLength, long now, ref PacketProtectionKeys? switchKeys)
    {
        if (header.IsLongHeader)
        {
            if (header.Type == PacketType.VersionNegotiation)
            {
                ProcessVersionNegotiation(packet, in header, now);
                return;
            }

            if (!header.IsSupportedVersion)
            {
                Statistics.PacketsDropped++;
                return;
            }

            if (header.Version != _version)
            {
                if (!AcceptOtherVersion(in header))
                {
                    Statistics.PacketsDropped++;
                    return;
                }

                // Client: the server chose another version we offered. Its Initial keys are tried on this packet and
                // kept only if it authenticates (a forged header must not switch us).
                if (IsClient)
                {
                    InitialSecrets.Derive(header.Version, _initialKeysConnectionId, out _, out byte[] serverSecret);
                    switchKeys = PacketProtectionKeys.FromSecret(Crypto.CipherSuite.Aes128GcmSha256, serverSecret, header.Version);
                }
            }

            if (header.Type == PacketType.Retry)
            {
                ProcessRetry(packet, in header, now);
                return;
            }
        }

        // The destination connection ID must be one of ours (except the client's very first packets, which use the server-chosen one: any is fine).
        ReadOnlySpan<byte> dcid = packet.Slice(header.DestinationConnectionIdOffset, header.DestinationConnectionIdLength);
        if (_connectionIds.FindLocal(dcid) is null && !(IsServer && header.Type is PacketType.Initial or PacketType.ZeroRtt))
        {
            if (!header.IsLongHeader && TryHandleStatelessReset(packet, now)) return;
            Statistics.PacketsDropped++;
            return;
        }

        PacketNumberSpace space = header.Type switch
        {
            PacketType.Initial => PacketNumberSpace.Initial,
            PacketType.Handshake => PacketNumberSpace.Handshake,
            _ => PacketNumberSpace.ApplicationData,
        };
        PacketNumberSpaceState state = _spaces[(int)space];
        if (state.Discarded || (header.Type == PacketType.ZeroRtt && IsClient))
        {
            Statistics.PacketsDropped++;
            return;
        }

        // Pick the keys.
        HeaderProtection? hp;
        PacketProtectionKeys? keys = null;
        switch (header.Type)
        {
            case PacketType.Initial:
            case PacketType.Handshake:
                // Server after compatible negotiation: the client's Initials may still come in the original version.
                keys = header.Type == PacketType.Initial && header.Version != _version ? switchKeys ?? _originalInitialReadKeys : state.ReadKeys;
                hp = keys?.HeaderProtection;
                break;
            case PacketType.ZeroRtt:
                keys = _zeroRttReadKeys;
                hp = keys?.HeaderProtection;
                break;
            default:
                hp = _oneRttKeys?.CurrentRead.HeaderProtection;
                break;
        }

        if (hp is null)
        {
            BufferUndecryptable(packet, header.Type, now);
            return;
        }

        if (!PacketProtector.TryRemoveHeaderProtection(hp, packet, header.PacketNumberOffset, state.Ack.LargestReceived, out long packetNumber, out int pnLength))
        {
            Statistics.PacketsDropped++;
            return;
        }

        int headerLength = header.PacketNumberOffset + pnLength;
        bool keyPhaseChanged = false;
        if (header.Type == PacketType.OneRtt)
        {
            OneRttKeys oneRtt = _oneRttKeys!;
            bool phase = (packet[0] & 0x04) != 0;
            if (phase == oneRtt.KeyPhase)
            {
                keys = oneRtt.CurrentRead;
            }
            else if (oneRtt.PreviousRead is not null && packetNumber < oneRtt.FirstReceivedInPhase)
            {
                keys = oneRtt.PreviousRead;
            }
            else
            {
                keys = oneRtt.NextRead;
                keyPhaseChanged = true;
            }
        }

        if (!PacketProtector.TryDecryptPayload(keys!.Aead, packet, headerLength, packetNumber, out int payloadLength))
        {
            // RFC 9000 §10.3.1: an undecryptable short-header packet may be a stateless reset (the token is in its last 16 bytes, untouched by decryption).
            if (!header.IsLongHeader && TryHandleStatelessReset(packet, now)) return;
            Statistics.DecryptionFailures++;
            Statistics.PacketsDropped++;
            // RFC 9001 §6.6: the integrity limit counts failures over the connection's lifetime.
            if (header.Type == PacketType.OneRtt && Statistics.DecryptionFailures > PacketProtectionKeys.IntegrityLimit(keys.Suite))
            {
                CloseWithError(new TransportError(TransportErrorCode.AeadLimitReached, 0, "AEAD integrity limit reached"), now);
            }

            return;
        }

        if (switchKeys is not null)
        {
            // RFC 9368 §2.3, RFC 9369 §4.1: the negotiated version, learnt from the first long header that differs.
            _version = header.Version;
            _versionSettled = true;
            InstallInitialKeys(_initialKeysConnectionId);
        }

        // Reserved bits must be zero after removing header protection (RFC 9000 §17.2/§17.3.1).
        if ((header.IsLongHeader ? packet[0] & 0x0c : packet[0] & 0x18) != 0)
        {
            CloseWithError(new TransportError(TransportErrorCode.ProtocolViolation, 0, "reserved bits set"), now);
            return;
        }

        if (state.Ack.IsDuplicate(packetNumber))
        {
            Statistics.PacketsDropped++;
            return;
        }

        if (keyPhaseChanged)
        {
            OneRttKeys oneRtt = _oneRttKeys!;
            // RFC 9001 §6.2: a peer-initiated update. If we initiated the last one and it is unacknowledged, the peer cannot update again yet.
            if (!_handshakeConfirmed && IsServer)
            {
                CloseWithError(new TransportError(TransportErrorCode.KeyUpdateError, 0, "key update before handshake confirmation"), now);
                return;
            }

            oneRtt.Update(now, 3 * _loss.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, LossContext));
            Statistics.KeyUpdates++;
            TraceKeyUpdate(localUpdate: false);
            Emit(ConnectionEventKind.KeyUpdated);
        }

        if (header.Type == PacketType.OneRtt && packetNumber < _oneRttKeys!.FirstReceivedInPhase && keys == _oneRttKeys.CurrentRead)
        {
            _oneRttKeys.FirstReceivedInPhase = packetNumber;
        }

        Statistics.PacketsReceived++;
        if (header.Type == PacketType.ZeroRtt) Statistics.ZeroRttPacketsReceived++;

        // Address and handshake bookkeeping that depends only on successful decryption.
        if (IsClient && header.IsLongHeader && !_receivedFirstServerPacket)
        {
            _receivedFirstServerPacket = true;
            // RFC 9000 §7.2: switch to the server's chosen connection ID.
            _connectionIds.SetInitialPeerId(packet.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength).ToArray());
        }

        if (IsServer && header.Type == PacketType.Initial && !_receivedFirstClientPacket)
        {
            _receivedFirstClientPacket = true;
            // RFC 9000 §7.2: the client's connection ID is the one of its first Initial that authenticates; the datagram
            // this connection was created from may have been damaged (or forged) before authentication failed on it.
            ReadOnlySpan<byte> clientScid = packet.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength);
            if (_connectionIds.ActivePeer is { } initialPeer && !clientScid.SequenceEqual(initialPeer.ConnectionId))
            {
                _connectionIds.SetInitialPeerId(clientScid.ToArray());
            }
        }

        if (IsServer && header.Type == PacketType.Handshake)
        {
            // RFC 9000 §8.1: a Handshake packet proves the client received our Initial; RFC 9001 §4.9.1: drop Initial
            // keys (RFC 9369 §4.1: the original version's too, now that the client uses the negotiated one).
            _peerAddressValidated = true;
            DiscardSpace(PacketNumberSpace.Initial, now);
            _originalInitialReadKeys?.Dispose();
            _originalInitialReadKeys = null;
        }

        ReadOnlySpan<byte> payload = packet.Slice(headerLength, payloadLength);
        _qlog?.PacketReceived(now, header.Type, packetNumber, packet.Length, dcid, header.IsLongHeader ? packet.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength) : default, payload);
        if (!ProcessFrames(payload, header.Type, space, dcid, out bool ackEliciting, out bool probingOnly, now))
        {
            return;
        }

        if (State is ConnectionState.Closed or ConnectionState.Draining) return;

        if (header.Type == PacketType.OneRtt && remoteAddress is not null && RemoteAddress is not null && !remoteAddress.Equals(RemoteAddress))
        {
            OnPeerAddressChange(remoteAddress, probingOnly, packetNumber == state.Ack.LargestReceived + 1 || packetNumber > state.Ack.LargestReceived, datagramLength, now);
        }

        state.Ack.OnPacketReceived(packetNumber, ackEliciting, now, _config.MaxAckDelay.Ticks, immediate: space != PacketNumberSpace.ApplicationData, _reprocessedPacketReceivedTime);
        ResetIdleTimer(now);
        _ackElicitingSentSinceReceive = false;
    }

    /// <summary>
    /// A long-header packet in a version other than the connection's (RFC 9369 §4.1). A client switches to the
    /// server's choice on the first Initial in another version it offered, until the server's CRYPTO data settled the
    /// version; a server still reads Initial and 0-RTT packets of the client's original version. All else is dropped.
    /// </summary>
    private bool AcceptOtherVersion(in PacketHeader header)
    {
        if (IsServer)
        {
            return header.Version == _originalVersion && header.Type is PacketType.Initial or PacketType.ZeroRtt;
        }

        return !_versionSettled && header.Type == PacketType.Initial && _config.SupportedVersions.Contains(header.Version);
    }

    private void BufferUndecryptable(ReadOnlySpan<byte> packet, PacketType type, long now)
    {
        // RFC 9001 §4.1.4: packets may arrive before their keys; keep a few (not Initials: their keys are always there).
        if (type is PacketType.Initial || (_undecryptable?.Count ?? 0) >= MaxBufferedUndecryptablePackets)
        {
            Statistics.PacketsDropped++;
            return;
        }

        (_undecryptable ??= new List<(byte[], long)>()).Add((packet.ToArray(), now));
    }

    private void ReprocessUndecryptable(long now)
    {
        if (_undecryptable is not { Count: > 0 } list) return;
        _undecryptable = null;
        foreach ((byte[] p, long receivedTime) in list)
        {
            if (State is not (ConnectionState.Handshake or ConnectionState.Established)) return;
            if (PacketHeaderParser.TryParse(p, _config.ConnectionIdLength, out PacketHeader h) && h.PacketLength == p.Length)
            {
                // Restored afterwards: this runs inside the processing of the packet that brought the keys.
                long? outer = _reprocessedPacketReceivedTime;
                _reprocessedPacketReceivedTime = receivedTime;
                try
                {
                    ProcessPacket(p, in h, RemoteAddress, firstInDatagram: false, p.Length, now);
                }
                finally
                {
                    _reprocessedPacketReceivedTime = outer;
                }
            }
        }
    }

    private void ProcessVersionNegotiation(ReadOnlySpan<byte> packet, in PacketHeader header, long now)
    {
        // RFC 9000 §6.2: only a client that has not yet received anything else acts on it, and never on one listing its own version.
        if (IsServer || _receivedFirstServerPacket) return;
        Span<uint> versions = stackalloc uint[64];
        if (!VersionNegotiationPacket.TryReadVersions(packet, in header, versions, out int count)) return;
        foreach (uint v in versions.Slice(0, count))
        {
            if (v == _version) return; // ignore: it must have been spoofed or delayed
        }

        foreach (uint mine in _config.SupportedVersions)
        {
            foreach (uint v in versions.Slice(0, count))
            {
                if (v == mine)
                {
                    RestartWithVersion(v, now);
                    return;
                }
            }
        }

        CloseReason = new QuicCloseReason { ErrorCode = (ulong)TransportErrorCode.VersionNegotiationError, Reason = "no common QUIC version", ClosedByPeer = true };
        EnterClosed();
    }

    /// <summary>
    /// After Version Negotiation: start over with <paramref name="version"/>, conceptually a new connection (RFC 9368
    /// §2.4): new Initial keys and a new ClientHello whose version_information names the new version (the server
    /// checks that), 0-RTT keys of that version. Packet numbers continue.
    /// </summary>
    private void RestartWithVersion(uint version, long now)
    {
        _version = version;
        _originalVersion = version;
        _actedOnVersionNegotiation = true;
        InstallInitialKeys(_originalDestinationConnectionId);
        _loss.OnPacketNumberSpaceDiscarded(PacketNumberSpace.Initial);
        _spaces[0].ResetCryptoSend();
        _zeroRttWriteKeys?.Dispose();
        _zeroRttWriteKeys = null;
        RequeueZeroRttData();
        _localParameters.VersionInformation = new VersionInformation { ChosenVersion = version, AvailableVersions = _config.SupportedVersions.ToArray() };
        _tls.Dispose();
        _tls = new TlsHandshake(TlsOptionsFactory.Create(_config, isServer: false, this), new TlsHost(this));
        _tls.Start(EncodeLocalParameters());
        _loss.SetLossDetectionTimer(LossContext, now);
    }

    private void ProcessRetry(ReadOnlySpan<byte> packet, in PacketHeader header, long now)
    {
        // RFC 9000 §17.2.5.2: a client accepts at most one Retry, only before any other server packet, with a valid tag and a non-empty token.
        if (IsServer || _receivedRetry || _receivedFirstServerPacket) return;
        if (header.TokenLength == 0 || !RetryIntegrity.Verify(_version, _originalDestinationConnectionId, packet))
        {
            Statistics.PacketsDropped++;
            return;
        }

        ReadOnlySpan<byte> scid = packet.Slice(header.SourceConnectionIdOffset, header.SourceConnectionIdLength);
        if (scid.SequenceEqual(_originalDestinationConnectionId))
        {
            Statistics.PacketsDropped++;
            return;
        }

        _receivedRetry = true;
        _retrySourceConnectionId = scid.ToArray();
        _token = packet.Slice(header.TokenOffset, header.TokenLength).ToArray();
        _connectionIds.SetInitialPeerId(_retrySourceConnectionId);
        InstallInitialKeys(_retrySourceConnectionId);
        RestartInitialFlight(now);
    }

    private void RestartInitialFlight(long now)
    {
        // Packet numbers continue (RFC 9000 §17.2.5.3); everything sent so far in Initial (and 0-RTT) is resent.
        _loss.OnPacketNumberSpaceDiscarded(PacketNumberSpace.Initial);
        PacketNumberSpaceState initial = _spaces[0];
        initial.CryptoSend.OnLost(0, (int)initial.CryptoSend.SentOffset, false);
        RequeueZeroRttData();
        _loss.SetLossDetectionTimer(LossContext, now);
    }

    private void DiscardSpace(PacketNumberSpace space, long now)
    {
        PacketNumberSpaceState s = _spaces[(int)space];
        if (s.Discarded) return;
        _loss.OnPacketNumberSpaceDiscarded(space);
        s.Discard();
        _loss.SetLossDetectionTimer(LossContext, now);
    }

    private void OnHandshakeConfirmed(long now)
    {
        if (_handshakeConfirmed) return;
        _handshakeConfirmed = true;
        _qlog?.HandshakeConfirmed();
        _peerCompletedAddressValidation = true;
        DiscardSpace(PacketNumberSpace.Handshake, now);
        // 0-RTT keys are no longer needed once 1-RTT is confirmed.
        _zeroRttReadKeys?.Dispose();
        _zeroRttReadKeys = null;
        _zeroRttWriteKeys?.Dispose();
        _zeroRttWriteKeys = null;
        if (_peerParameters is not null) _connectionIds.IssueLocalIds((int)Math.Min(8, _peerParameters.ActiveConnectionIdLimit));
        Emit(ConnectionEventKind.HandshakeConfirmed);
    }

    private bool ProcessFrames(ReadOnlySpan<byte> payload, PacketType packetType, PacketNumberSpace space, ReadOnlySpan<byte> dcid, out bool ackEliciting, out bool probingOnly, long now)
    {
        ackEliciting = false;
        probingOnly = true;
        if (payload.IsEmpty)
        {
            // RFC 9000 §12.4: a packet with no frames is a PROTOCOL_VIOLATION.
            CloseWithError(new TransportError(TransportErrorCode.ProtocolViolation, 0, "packet without frames"), now);
            return false;
        }

        var reader = new FrameReader(payload, packetType);
        while (true)
        {
            FrameReadStatus status = reader.TryReadFrame(out Frame frame, out TransportError error);
            if (status == FrameReadStatus.End) break;
            if (status == FrameReadStatus.Error)
            {
                CloseWithError(error, now);
                return false;
            }

            if (FrameRules.IsAckEliciting(frame.Type)) ackEliciting = true;
            if (!FrameRules.IsProbing(frame.Type)) probingOnly = false;
            if (!ProcessFrame(ref frame, packetType, space, dcid, now, out error))
            {
                CloseWithError(error, now);
                return false;
            }

            if (State is ConnectionState.Draining or ConnectionState.Closed) return true;
        }

        return true;
    }

    private bool ProcessFrame(ref Frame frame, PacketType packetType, PacketNumberSpace space, ReadOnlySpan<byte> dcid, long now, out TransportError error)
    {
        error = default;
        ulong type = (ulong)frame.Type;
        switch (frame.Type)
        {
            case FrameType.Padding:
            case FrameType.Ping:
                return true;

            case FrameType.Ack:
            case FrameType.AckEcn:
                return ProcessAck(ref frame, space, now, out error);

            case FrameType.Crypto:
                return ProcessCrypto(frame.Offset, frame.Data, space, now, out error);

            case FrameType.NewToken:
                if (IsServer)
                {
                    error = new TransportError(TransportErrorCode.ProtocolViolation, type, "NEW_TOKEN sent by a client");
                    return false;
                }

                Emit(ConnectionEventKind.NewTokenReceived, data: frame.Data.ToArray());
                return true;

            case FrameType.HandshakeDone:
                if (IsServer)
                {
                    error = new TransportError(TransportErrorCode.ProtocolViolation, type, "HANDSHAKE_DONE sent by a client");
                    return false;
                }

                OnHandshakeConfirmed(now);
                return true;

            case FrameType.NewConnectionId:
                return _connectionIds.OnNewConnectionId(frame.SequenceNumber, frame.RetirePriorTo, frame.Data, frame.StatelessResetToken, out error);

            case FrameType.RetireConnectionId:
                return _connectionIds.OnRetireConnectionId(frame.SequenceNumber, dcid, out error);

            case FrameType.PathChallenge:
                QueuePathResponse(frame.Data);
                return true;

            case FrameType.PathResponse:
                OnPathResponse(frame.Data, now);
                return true;

            case FrameType.ConnectionClose:
            case FrameType.ConnectionCloseApplication:
                OnPeerClose(frame.Type == FrameType.ConnectionCloseApplication, frame.ErrorCode, frame.FrameTypeInClose, frame.Data, now);
                return true;

            case FrameType.Datagram:
            case FrameType.DatagramWithLength:
                return ProcessDatagramFrame(frame.Data, type, out error);

            default:
                return ProcessStreamFrame(ref frame, packetType == PacketType.ZeroRtt, now, out error);
        }
    }

    private bool ProcessAck(ref Frame frame, PacketNumberSpace space, long now, out TransportError error)
    {
        ValueRange[] scratch = t_ackRangeScratch ??= new ValueRange[256];
        int count = frame.Ack.CopyRanges(scratch);
        if (count < 0)
        {
            // More ranges than our scratch: process the highest ones (loss detection treats the rest as unacknowledged).
            count = scratch.Length;
        }

        long ackDelay = 0;
        if (space == PacketNumberSpace.ApplicationData)
        {
            int exponent = (int)(_peerParameters?.AckDelayExponent ?? 3);
            ulong micros = frame.Ack.AckDelay;
            ackDelay = micros > (ulong.MaxValue >> 24) ? long.MaxValue / 2 : (long)Math.Min((double)micros * (1L << exponent) * 10, long.MaxValue / 2);
        }

        if (!_loss.OnAckReceived(space, scratch.AsSpan(0, count), ackDelay, now, _lossHost, LossContext, out error))
        {
            return false;
        }

        if (IsClient && space == PacketNumberSpace.Handshake) _peerCompletedAddressValidation = true;
        _loss.SetLossDetectionTimer(LossContext, now);
        WakeWaitingWriters();
        return true;
    }

    private bool ProcessCrypto(ulong offset, ReadOnlySpan<byte> data, PacketNumberSpace space, long now, out TransportError error)
    {
        error = default;
        // RFC 9369 §4.1: CRYPTO data from the server in the version in use means that version is the negotiated one.
        if (IsClient) _versionSettled = true;
        PacketNumberSpaceState s = _spaces[(int)space];
        switch (s.CryptoReceive.Write((long)offset, data, false))
        {
            case ReceiveBufferResult.BufferExceeded:
                error = new TransportError(TransportErrorCode.CryptoBufferExceeded, (ulong)FrameType.Crypto, "CRYPTO data beyond the buffer limit");
                return false;
            case ReceiveBufferResult.TooManyGaps:
                error = new TransportError(TransportErrorCode.CryptoBufferExceeded, (ulong)FrameType.Crypto, "too many gaps in CRYPTO data");
                return false;
            case ReceiveBufferResult.FinalSizeError:
                error = new TransportError(TransportErrorCode.FrameEncodingError, (ulong)FrameType.Crypto, "invalid CRYPTO offset");
                return false;
        }

        EncryptionLevel level = space switch
        {
            PacketNumberSpace.Initial => EncryptionLevel.Initial,
            PacketNumberSpace.Handshake => EncryptionLevel.Handshake,
            _ => EncryptionLevel.OneRtt,
        };

        if (_awaitingConfiguration && space == PacketNumberSpace.Initial)
        {
            while (s.CryptoReceive.TryPeek(out ReadOnlySpan<byte> pending) && !pending.IsEmpty)
            {
                int n = pending.Length;
                bool ok = BufferClientHello(pending, out error);
                s.CryptoReceive.Advance(n);
                if (!ok) return false;
            }

            return true;
        }

        while (s.CryptoReceive.TryPeek(out ReadOnlySpan<byte> chunk) && !chunk.IsEmpty)
        {
            int n = chunk.Length;
            TlsAlert? alert = _tls.ProcessCryptoData(level, chunk);
            s.CryptoReceive.Advance(n);
            if (alert is TlsAlert a)
            {
                // A message declared larger than we buffer is the peer's doing, not an internal error (RFC 9000 §7.5).
                error = _tls.HandshakeMessageTooLarge
                    ? new TransportError(TransportErrorCode.CryptoBufferExceeded, (ulong)FrameType.Crypto, _tls.FailureReason ?? "handshake message too large")
                    : TlsFailure(a);
                return false;
            }

            if (s.Discarded) break;
        }

        AfterTlsProgress(now);
        return true;
    }

    private void OnPeerClose(bool application, ulong code, ulong frameType, ReadOnlySpan<byte> reason, long now)
    {
        CloseReason = new QuicCloseReason
        {
            ErrorCode = code,
            IsApplicationError = application,
            FrameType = frameType,
            Reason = System.Text.Encoding.UTF8.GetString(reason),
            ClosedByPeer = true,
        };

        // RFC 9000 §10.2.2: draining, no more packets sent.
        State = ConnectionState.Draining;
        _closeDeadline = now + 3 * _loss.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, LossContext);
        AbortAllStreams();
        Emit(ConnectionEventKind.Terminated);
    }

    /// <summary>A datagram whose trailing 16 bytes may be a stateless reset token for this connection (RFC 9000 §10.3.1). Called by the endpoint for datagrams it cannot route otherwise, or by the connection when nothing decrypts.</summary>
    public bool TryHandleStatelessReset(ReadOnlySpan<byte> datagram, long now)
    {
        if (datagram.Length < 21 || State is ConnectionState.Closed or ConnectionState.Draining) return false;
        if (!_connectionIds.IsPeerStatelessResetToken(datagram.Slice(datagram.Length - 16))) return false;
        CloseReason = new QuicCloseReason { StatelessReset = true, ClosedByPeer = true, Reason = "stateless reset" };
        State = ConnectionState.Draining;
        _closeDeadline = now;
        EnterClosed();
        return true;
    }
}
