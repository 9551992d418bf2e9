using System.Net;
using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Streams;
using KestrelQuic.Wire;

namespace KestrelQuic.Connection;

internal sealed partial class QuicConnectionCore
{
    private const int MinimumInitialDatagramSize = 1200;
    private const int TagLength = 16;

    private readonly PendingPacket[] _pendingPackets = new PendingPacket[4];
    private long? _pacingWakeup;

    /// <summary>A packet assembled in the datagram buffer but not yet sealed (so the last one can still be padded).</summary>
    private struct PendingPacket
    {
        public int Start;
        public int PacketNumberOffset;
        public int PacketNumberLength;
        public int PayloadLength;
        public int LengthFieldOffset; // -1 for short headers
        public PacketProtectionKeys Keys;
        public SentPacket Sent;
        public PacketType Type;

        public readonly int PayloadStart => PacketNumberOffset + PacketNumberLength;

        public readonly int End => Start + PayloadStart + PayloadLength + TagLength;
    }

    private readonly Queue<byte[]> _newTokensToSend = new();
    private readonly Dictionary<ulong, byte[]> _newTokensInFlight = new();
    private ulong _nextNewTokenId;

    /// <summary>Server: sends a NEW_TOKEN frame (RFC 9000 §8.1.3) carrying a token minted by the endpoint, retransmitted until acknowledged.</summary>
    public void SendNewToken(byte[] token)
    {
        if (!IsServer) throw new InvalidOperationException("Only servers send NEW_TOKEN.");
        if (token.Length == 0) throw new ArgumentException("A NEW_TOKEN token must not be empty.", nameof(token));
        _newTokensToSend.Enqueue(token);
    }

    /// <summary>The largest UDP payload usable on the current path.</summary>
    private int MaxDatagramSizeForPath()
    {
        int max = PathMaxDatagramSize;
        if (_peerParameters is not null && _peerParameters.MaxUdpPayloadSize < (ulong)max) max = (int)_peerParameters.MaxUdpPayloadSize;
        return max;
    }

    /// <summary>
    /// Writes the next datagram to send into <paramref name="buffer"/> and returns its length, or 0 when there is
    /// nothing to send now (check <see cref="NextTimeout"/>). Call repeatedly until it returns 0.
    /// </summary>
    public int PollDatagram(Span<byte> buffer, long now, out EndPoint? destination)
    {
        destination = _pathChallengeDestination ?? RemoteAddress;
        if (State is ConnectionState.Closed or ConnectionState.Draining) return 0;
        _now = now;
        if (State == ConnectionState.Closing)
        {
            if (!_closeFramePending) return 0;
            _closeFramePending = false;
            _lastCloseSentTime = now;
            int closeLength = BuildDatagram(buffer, now, closing: true);
            return closeLength;
        }

        if (_oneRttKeys is { } oneRtt)
        {
            oneRtt.DiscardPreviousIfDue(now);

            // RFC 9001 §6.6: renew the keys before the confidentiality limit (or the configured interval). Not yet
            // allowed (previous update unacknowledged) means the next datagram tries again.
            if (oneRtt.KeyUpdateDue) RequestKeyUpdate(now);
        }

        int probe = TryBuildMtuProbe(buffer, now);
        if (probe > 0) return probe;
        int length = BuildDatagram(buffer, now, closing: false);
        if (length == 0) _pathChallengeDestination = null;
        else OnDatagramActivity(now);
        return length;
    }

    private int BuildDatagram(Span<byte> buffer, long now, bool closing)
    {
        long budget = AmplificationBudget();
        int max = (int)Math.Min(Math.Min(buffer.Length, MaxDatagramSizeForPath()), budget);
        if (max < MinimumDatagramBudget) return 0; // amplification-limited (RFC 9000 §8.1) or no room

        bool pacingBlocked = false;
        if (!closing && _pacer.GetNextSendTime(now, _congestion.CongestionWindow, _rtt.SmoothedRtt, max) is long next && next > now)
        {
            pacingBlocked = true;
            _pacingWakeup = next;
        }

        int count = 0;
        int offset = 0;
        bool needsPadding = false;

        for (int level = 0; level < 4 && count < _pendingPackets.Length; level++)
        {
            PacketType type;
            PacketNumberSpaceState space;
            PacketProtectionKeys? keys;
            switch (level)
            {
                case 0:
                    type = PacketType.Initial;
                    space = _spaces[0];
                    keys = space.WriteKeys;
                    break;
                case 1:
                    type = PacketType.Handshake;
                    space = _spaces[1];
                    keys = space.WriteKeys;
                    break;
                case 2:
                    // 0-RTT only while 1-RTT keys are not available (client).
                    type = PacketType.ZeroRtt;
                    space = _spaces[2];
                    keys = IsClient && _oneRttKeys is null && !closing ? _zeroRttWriteKeys : null;
                    break;
                default:
                    type = PacketType.OneRtt;
                    space = _spaces[2];
                    keys = OneRttWriteKeysForSending();
                    // The server must not send 1-RTT before the handshake completes, except 0.5-RTT data; keep it simple: only after the client's Finished, or a close.
                    if (IsServer && !_handshakeComplete && !closing) keys = null;
                    break;
            }

            if (keys is null || space.Discarded) continue;
            int room = max - offset;
            if (room < 48) break;

            ref PendingPacket p = ref _pendingPackets[count];
            if (!TryAssemblePacket(buffer.Slice(offset, room), offset, type, space, keys, now, closing, pacingBlocked, ref p))
            {
                continue;
            }

            if (type == PacketType.Initial && (IsClient || p.Sent.AckEliciting)) needsPadding = true;
            if (type == PacketType.ZeroRtt) Statistics.ZeroRttPacketsSent++;
            offset = p.End;
            count++;
        }

        if (count == 0) return 0;

        // RFC 9000 §14.1: datagrams carrying (client) or ack-eliciting (server) Initial packets are at least 1200 bytes.
        // Pad inside the last packet with PADDING frames (zero bytes), which is allowed in every packet type.
        if (needsPadding && offset < MinimumInitialDatagramSize)
        {
            ref PendingPacket last = ref _pendingPackets[count - 1];
            int extra = Math.Min(MinimumInitialDatagramSize, max) - offset;
            if (extra > 0)
            {
                buffer.Slice(last.Start + last.PayloadStart + last.PayloadLength, extra).Clear();
                last.PayloadLength += extra;
                offset += extra;
            }
        }

        for (int i = 0; i < count; i++)
        {
            ref PendingPacket p = ref _pendingPackets[i];
            Span<byte> packet = buffer.Slice(p.Start, p.End - p.Start);
            if (p.LengthFieldOffset >= 0)
            {
                PacketHeaderWriter.SetLength(packet, p.LengthFieldOffset, p.PacketNumberLength + p.PayloadLength + TagLength);
            }

            if (_qlog is { } qlog) TracePacketSent(qlog, ref p, packet, now);
            int protectedLength = PacketProtector.Protect(p.Keys, packet, p.PacketNumberOffset, p.PacketNumberLength, p.PayloadLength, p.Sent.PacketNumber);
            p.Sent.SentBytes = protectedLength;
            p.Sent.TimeSent = now;
            OnPacketSent(ref p, now);
            p.Keys = null!;
            p.Sent = null!;
        }

        Statistics.DatagramsSent++;
        Statistics.BytesSent += offset;
        _bytesSentOnPath += offset;
        _loss.SetLossDetectionTimer(LossContext, now);
        _qlog?.MetricsUpdated(now, _rtt, _congestion, _loss.PtoCount);
        return offset;
    }

    private void TracePacketSent(Diagnostics.IQlogSink qlog, ref PendingPacket p, ReadOnlySpan<byte> packet, long now)
    {
        int payloadOffset = p.PacketNumberOffset + p.PacketNumberLength;
        ReadOnlySpan<byte> dcid = _connectionIds.ActivePeer?.ConnectionId ?? [];
        ReadOnlySpan<byte> scid = p.Type == PacketType.OneRtt ? default : _localParameters.InitialSourceConnectionId;
        qlog.PacketSent(now, p.Type, p.Sent.PacketNumber, payloadOffset + p.PayloadLength + TagLength, dcid, scid, packet.Slice(payloadOffset, p.PayloadLength));
    }

    private void OnPacketSent(ref PendingPacket p, long now)
    {
        SentPacket sent = p.Sent;
        Statistics.PacketsSent++;
        PacketNumberSpaceState space = _spaces[(int)sent.Space];
        space.NextPacketNumber = sent.PacketNumber + 1;
        if (sent.Space == PacketNumberSpace.ApplicationData && _handshakeConfirmed && space.NextPacketNumber >= _nextSkippedPacketNumber)
        {
            SkipPacketNumber(space);
        }
        if (p.Type == PacketType.OneRtt && _oneRttKeys is not null)
        {
            if (_oneRttKeys.FirstPacketNumberInPhase < 0) _oneRttKeys.FirstPacketNumberInPhase = sent.PacketNumber;
            _oneRttKeys.PacketsSentInPhase++;
        }

        if (sent.InFlight)
        {
            _pacer.OnPacketSent(now, sent.SentBytes, _congestion.CongestionWindow, _rtt.SmoothedRtt);
        }

        _loss.OnPacketSent(sent, now);
        if (sent.AckEliciting)
        {
            if (!_ackElicitingSentSinceReceive) ResetIdleTimer(now);
            _ackElicitingSentSinceReceive = true;
        }

        // RFC 9001 §4.9.1: a client discards Initial keys when it first sends a Handshake packet.
        if (IsClient && p.Type == PacketType.Handshake) DiscardSpace(PacketNumberSpace.Initial, now);
    }

    /// <summary>
    /// RFC 9000 §21.4: now and then a 1-RTT packet number is left unused, at random intervals the peer cannot
    /// predict; a peer acknowledging it claims packets it never received (an optimistic ACK) and is closed with
    /// PROTOCOL_VIOLATION by loss detection.
    /// </summary>
    private void SkipPacketNumber(PacketNumberSpaceState space)
    {
        if (_nextSkippedPacketNumber > 0)
        {
            _loss.OnPacketNumberSkipped(PacketNumberSpace.ApplicationData, space.NextPacketNumber);
            space.NextPacketNumber++;
            Statistics.PacketNumbersSkipped++;
        }

        _nextSkippedPacketNumber = space.NextPacketNumber + System.Security.Cryptography.RandomNumberGenerator.GetInt32(MinPacketNumberSkipInterval, 4 * MinPacketNumberSkipInterval);
    }

    private bool TryAssemblePacket(Span<byte> dest, int start, PacketType type, PacketNumberSpaceState space, PacketProtectionKeys keys, long now, bool closing, bool pacingBlocked, ref PendingPacket p)
    {
        long pn = space.NextPacketNumber;
        long largestAcked = _loss.LargestAcknowledged(space.Space);
        int pnLength = PacketNumberEncoding.GetLength(pn, largestAcked);
        byte[] dcid = _connectionIds.ActivePeer?.ConnectionId ?? Array.Empty<byte>();
        bool fixedBit = !(_peerParameters?.GreaseQuicBit ?? false) || (pn & 1) == 0;

        int headerLength;
        int pnOffset;
        int lengthFieldOffset = -1;
        if (type == PacketType.OneRtt)
        {
            headerLength = PacketHeaderWriter.WriteShortHeader(dest, dcid, spinBit: false, _oneRttKeys?.KeyPhase ?? false, pn, pnLength, out pnOffset, fixedBit);
        }
        else
        {
            ReadOnlySpan<byte> token = type == PacketType.Initial && IsClient ? _token : default;
            byte[] scid = _localParameters.InitialSourceConnectionId!;
            // 0-RTT stays in the original version after a compatible switch (RFC 9369 §4.1), like its keys.
            uint version = type == PacketType.ZeroRtt ? _originalVersion : _version;
            headerLength = PacketHeaderWriter.WriteLongHeader(dest, type, version, dcid, scid, token, pn, pnLength, out lengthFieldOffset, out pnOffset, fixedBit: true);
        }

        int payloadCapacity = dest.Length - headerLength - TagLength;
        if (payloadCapacity < 24) return false;

        SentPacket sent = _loss.RentPacket();
        sent.PacketNumber = pn;
        sent.Space = space.Space;
        sent.LargestAcknowledgedInPacket = -1;

        var w = new SpanWriter(dest.Slice(headerLength, payloadCapacity));
        bool ackEliciting;
        if (closing)
        {
            WriteCloseFrame(ref w, type);
            ackEliciting = false;
        }
        else
        {
            bool probe = space.ProbesPending > 0;
            bool congestionBlocked = !probe && (pacingBlocked || _congestion.BytesInFlight + dest.Length > _congestion.CongestionWindow);
            ackEliciting = WriteFrames(ref w, type, space, sent, now, congestionBlocked, probe);
            if (probe && ackEliciting) space.ProbesPending--;
        }

        if (w.Position == 0)
        {
            _loss.ReturnPacket(sent);
            return false;
        }

        // Header protection samples 16 bytes starting 4 bytes after the packet number (RFC 9001 §5.4.2).
        int minimumPayload = 4 - pnLength;
        while (w.Position < minimumPayload) w.WriteByte(0);

        sent.AckEliciting = ackEliciting;
        sent.InFlight = ackEliciting || closing == false && w.Position > 0 && ContainsPadding(sent);
        p.Start = start;
        p.PacketNumberOffset = pnOffset;
        p.PacketNumberLength = pnLength;
        p.PayloadLength = w.Position;
        p.LengthFieldOffset = lengthFieldOffset;
        p.Keys = keys;
        p.Sent = sent;
        p.Type = type;
        return true;
    }

    private static bool ContainsPadding(SentPacket sent) => false;

    private void WriteCloseFrame(ref SpanWriter w, PacketType type)
    {
        // RFC 9000 §10.2.3: an application close must not reveal application state before 1-RTT: send APPLICATION_ERROR instead.
        string reason = _pendingCloseReason.Length > 64 ? _pendingCloseReason[..64] : _pendingCloseReason;
        byte[] reasonBytes = System.Text.Encoding.UTF8.GetBytes(reason);
        if (_pendingCloseIsApplication && type is PacketType.OneRtt)
        {
            FrameWriter.WriteApplicationClose(ref w, _pendingApplicationCloseCode, reasonBytes);
        }
        else if (_pendingCloseIsApplication)
        {
            FrameWriter.WriteConnectionClose(ref w, (ulong)TransportErrorCode.ApplicationError, 0, ReadOnlySpan<byte>.Empty);
        }
        else
        {
            TransportError e = _pendingLocalError!.Value;
            FrameWriter.WriteConnectionClose(ref w, (ulong)e.Code, e.FrameType, type is PacketType.OneRtt ? reasonBytes : ReadOnlySpan<byte>.Empty);
        }
    }

    /// <summary>
    /// Test hook: the next packet of <paramref name="packetType"/> (1-RTT by default; Handshake or 0-RTT to break the
    /// RFC 9000 §12.4 packet-type rules) carries exactly these bytes as its payload (to exercise a peer's frame validation).
    /// </summary>
    internal void InjectRawFrames(byte[] payload, PacketType packetType = PacketType.OneRtt)
    {
        _injectedFrames = payload;
        _injectedPacketType = packetType;
    }

    private byte[]? _injectedFrames;
    private PacketType _injectedPacketType;

    private const int MinPacketNumberSkipInterval = 256;
    private long _nextSkippedPacketNumber;

    /// <summary>Fills the payload of one packet; returns whether it is ack-eliciting.</summary>
    private bool WriteFrames(ref SpanWriter w, PacketType type, PacketNumberSpaceState space, SentPacket sent, long now, bool congestionBlocked, bool probe)
    {
        bool ackEliciting = false;
        bool isOneRtt = type == PacketType.OneRtt;
        bool isZeroRtt = type == PacketType.ZeroRtt;
        if (_injectedFrames is byte[] injected && type == _injectedPacketType && w.Remaining >= injected.Length)
        {
            _injectedFrames = null;
            w.WriteBytes(injected);
            return true;
        }

        // 1. ACK, when due (0-RTT packets cannot carry ACK).
        bool ackWritten = false;
        if (!isZeroRtt && space.Ack.HasUnacknowledged && space.Ack.ShouldSendAck(now))
        {
            ackWritten = WriteAck(ref w, space, sent, now);
        }

        if (congestionBlocked)
        {
            return false;
        }

        // 2. CRYPTO.
        if (!isZeroRtt)
        {
            ackEliciting |= WriteCryptoFrames(ref w, space, sent);
        }

        if (space.Space == PacketNumberSpace.ApplicationData)
        {
            if (isOneRtt && _handshakeDonePending && IsServer && w.Remaining >= 1)
            {
                FrameWriter.WriteHandshakeDone(ref w);
                sent.AddFrame(new SentFrame { Kind = FrameKind.HandshakeDone });
                _handshakeDonePending = false;
                ackEliciting = true;
            }

            ackEliciting |= WriteControlFrames(ref w, isOneRtt, sent, now);
            ackEliciting |= WriteDatagramFrames(ref w, sent);
            ackEliciting |= WriteStreamFrames(ref w, sent, now);
        }

        // Application pings ride in 1-RTT packets only: Initial/Handshake spaces get discarded, and with them any hope of an acknowledgement.
        if (_pingsRequested > 0 && isOneRtt && w.Remaining >= 1)
        {
            FrameWriter.WritePing(ref w);
            sent.AddFrame(new SentFrame { Kind = FrameKind.Ping, Value = 1 });
            _pingsRequested--;
            ackEliciting = true;
        }

        if (probe && !ackEliciting && w.Remaining >= 1)
        {
            FrameWriter.WritePing(ref w);
            sent.AddFrame(new SentFrame { Kind = FrameKind.Ping });
            ackEliciting = true;
        }

        // Piggyback an ACK on anything we send anyway.
        if (!ackWritten && !isZeroRtt && ackEliciting && space.Ack.HasUnacknowledged)
        {
            WriteAck(ref w, space, sent, now);
        }

        return ackEliciting;
    }

    private bool WriteAck(ref SpanWriter w, PacketNumberSpaceState space, SentPacket sent, long now)
    {
        AckTracker ack = space.Ack;
        if (ack.Received.IsEmpty) return false;
        ulong delay = 0;
        if (space.Space == PacketNumberSpace.ApplicationData)
        {
            long delayTicks = Math.Max(0, now - ack.LargestReceivedTime);
            delay = (ulong)(delayTicks / 10) >> _config.AckDelayExponent;
        }

        int written = FrameWriter.WriteAck(ref w, ack.Received, delay, AckTracker.MaxRanges, null);
        if (written == 0) return false;
        sent.LargestAcknowledgedInPacket = ack.LargestReceived;
        sent.AddFrame(new SentFrame { Kind = FrameKind.Ack, Value2 = ack.LargestReceived });
        ack.OnAckSent();
        return true;
    }

    private static bool WriteCryptoFrames(ref SpanWriter w, PacketNumberSpaceState space, SentPacket sent)
    {
        bool any = false;
        while (w.Remaining > 16)
        {
            int maxData = w.Remaining - 1 - 8 - 4;
            if (!space.CryptoSend.TryGetNext(maxData, long.MaxValue, out long offset, out int length, out _, out _))
            {
                break;
            }

            w.WriteByte((byte)FrameType.Crypto);
            w.WriteVarInt((ulong)offset);
            w.WriteVarInt((ulong)length);
            space.CryptoSend.CopyTo(offset, w.Free.Slice(0, length));
            w.Advance(length);
            space.CryptoSend.MarkSent(offset, length, false);
            sent.AddFrame(new SentFrame { Kind = FrameKind.Crypto, Offset = offset, Length = length });
            any = true;
        }

        return any;
    }

    private bool WriteDatagramFrames(ref SpanWriter w, SentPacket sent)
    {
        bool any = false;
        while (_datagramsToSend.TryPeek(out byte[]? d))
        {
            int needed = 1 + VariableLengthInteger.GetLength((ulong)d.Length) + d.Length;
            if (needed > w.Remaining)
            {
                if (!any && w.Position == 0) _datagramsToSend.Dequeue(); // can never fit: drop (unreliable)
                break;
            }

            _datagramsToSend.Dequeue();
            FrameWriter.WriteDatagram(ref w, d, explicitLength: true);
            sent.AddFrame(new SentFrame { Kind = FrameKind.Datagram, Length = d.Length });
            any = true;
        }

        return any;
    }

    private bool WriteStreamFrames(ref SpanWriter w, SentPacket sent, long now)
    {
        bool any = false;
        int rounds = _sendQueue.Count;
        while (rounds-- > 0 && w.Remaining > 8 && _sendQueue.TryDequeue(out StreamState? s))
        {
            _queuedForSend.Remove(s.Id);
            if (!_streams.ContainsKey(s.Id)) continue;
            any |= WriteStreamControlFrames(ref w, s, sent, now);

            SendBuffer? send = s.Send;
            if (send is not null && s.SendState is SendStreamState.Ready or SendStreamState.Send or SendStreamState.DataSent)
            {
                while (w.Remaining > 8)
                {
                    int headerMax = 1 + VariableLengthInteger.GetLength(s.Id) + 8 + 2;
                    int maxData = w.Remaining - headerMax;
                    if (maxData < 0) break;
                    if (!s.TryGetNextFrame(maxData, out long offset, out int length, out bool fin, out _))
                    {
                        break;
                    }

                    byte typeByte = (byte)(0x08 | 0x02 | (offset > 0 ? 0x04 : 0) | (fin ? 0x01 : 0));
                    w.WriteByte(typeByte);
                    w.WriteVarInt(s.Id);
                    if (offset > 0) w.WriteVarInt((ulong)offset);
                    w.WriteVarInt((ulong)length);
                    send.CopyTo(offset, w.Free.Slice(0, length));
                    w.Advance(length);
                    s.OnStreamFrameSent(offset, length, fin);
                    sent.AddFrame(new SentFrame { Kind = FrameKind.Stream, StreamId = s.Id, Offset = offset, Length = length, Fin = fin });
                    any = true;
                    if (length == 0) break;
                }

                if (s.HasDataToSend())
                {
                    QueueForSend(s);
                }
                else
                {
                    if (send.HasPendingData(s.SendFlow!.MaxData) || (_connectionSendFlow.IsBlocked && send.IsBlockedBy(s.SendFlow.MaxData)))
                    {
                        // Blocked by connection-level flow control: DATA_BLOCKED goes out with the control frames.
                        _dataBlockedPending = true;
                    }

                    // Blocked by the stream's own limit, typically by the frame just written: say so now (RFC 9000
                    // §4.1), or on the stream's next turn when this packet is full. Nothing else would bring the
                    // stream back to the queue until the peer's MAX_STREAM_DATA, which a silent sender may wait for.
                    any |= WriteStreamDataBlocked(ref w, s, sent);
                    if (s.NeedsStreamDataBlocked(out _)) QueueForSend(s);
                }
            }

            if (s.NeedsResetStream || s.NeedsStopSending) QueueForSend(s);
            if (send is not null && !send.IsFinished && !s.IsWriteBlockedOnItsOwn(StreamSendBufferLimit / 2) && _sendAccount.BufferedBytes <= _sendAccount.Limit / 2)
            {
                Emit(ConnectionEventKind.StreamWritable, s.Id);
            }
        }

        return any;
    }

    private bool WriteStreamControlFrames(ref SpanWriter w, StreamState s, SentPacket sent, long now)
    {
        bool any = false;
        if (s.NeedsResetStream && w.Remaining >= 1 + 8 + 8 + 8)
        {
            FrameWriter.WriteResetStream(ref w, s.Id, s.PendingResetErrorCode ?? 0, (ulong)s.ResetFinalSize);
            sent.AddFrame(new SentFrame { Kind = FrameKind.ResetStream, StreamId = s.Id });
            s.OnResetSent();
            any = true;
        }

        if (s.NeedsStopSending && w.Remaining >= 1 + 8 + 8)
        {
            FrameWriter.WriteStopSending(ref w, s.Id, s.StopSendingErrorCode ?? 0);
            sent.AddFrame(new SentFrame { Kind = FrameKind.StopSending, StreamId = s.Id });
            s.OnStopSendingSent();
            any = true;
        }

        if (w.Remaining >= 1 + 8 + 8 && s.NeedsMaxStreamData(now, _rtt.SmoothedRtt, out long newMax))
        {
            FrameWriter.WriteMaxStreamData(ref w, s.Id, (ulong)newMax);
            s.OnMaxStreamDataSent(newMax, now);
            // Keep the connection window above any auto-tuned stream window, or the connection becomes the bottleneck.
            _connectionReceiveFlow.EnsureWindowAtLeast(s.ReceiveFlow!.Window + s.ReceiveFlow.Window / 2);
            sent.AddFrame(new SentFrame { Kind = FrameKind.MaxStreamData, StreamId = s.Id, Value2 = newMax });
            any = true;
        }

        any |= WriteStreamDataBlocked(ref w, s, sent);
        return any;
    }

    private static bool WriteStreamDataBlocked(ref SpanWriter w, StreamState s, SentPacket sent)
    {
        if (w.Remaining < 1 + 8 + 8 || !s.NeedsStreamDataBlocked(out long limit)) return false;
        FrameWriter.WriteStreamDataBlocked(ref w, s.Id, (ulong)limit);
        s.OnStreamDataBlockedSent(limit);
        sent.AddFrame(new SentFrame { Kind = FrameKind.StreamDataBlocked, StreamId = s.Id, Value2 = limit });
        return true;
    }

    private bool WriteControlFrames(ref SpanWriter w, bool isOneRtt, SentPacket sent, long now)
    {
        bool any = false;
        if (isOneRtt)
        {
            any |= WritePathFrames(ref w, sent);
        }

        if (w.Remaining >= 9 && _connectionReceiveFlow.ShouldSendUpdate(now, _rtt.SmoothedRtt, out long newMaxData))
        {
            FrameWriter.WriteMaxData(ref w, (ulong)newMaxData);
            _connectionReceiveFlow.OnUpdateSent(newMaxData, now);
            sent.AddFrame(new SentFrame { Kind = FrameKind.MaxData, Value2 = newMaxData });
            _maxDataPending = false;
            any = true;
        }

        if (_dataBlockedPending && w.Remaining >= 9)
        {
            _dataBlockedPending = false;
            if (_connectionSendFlow.ShouldSendBlocked(out long limit))
            {
                FrameWriter.WriteDataBlocked(ref w, (ulong)limit);
                _connectionSendFlow.OnBlockedSent(limit);
                sent.AddFrame(new SentFrame { Kind = FrameKind.DataBlocked, Value2 = limit });
                any = true;
            }
        }

        for (int i = 0; i < 2; i++)
        {
            QuicStreamType t = i == 0 ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional;
            if (w.Remaining >= 9 && _streamLimits.ShouldSendMaxStreams(t, out ulong maxStreams))
            {
                FrameWriter.WriteMaxStreams(ref w, t == QuicStreamType.Bidirectional, maxStreams);
                _streamLimits.OnMaxStreamsSent(t, maxStreams);
                sent.AddFrame(new SentFrame { Kind = i == 0 ? FrameKind.MaxStreamsBidi : FrameKind.MaxStreamsUni, Value = maxStreams });
                any = true;
            }

            if (w.Remaining >= 9 && _streamLimits.ShouldSendStreamsBlocked(t, out ulong blockedAt))
            {
                FrameWriter.WriteStreamsBlocked(ref w, t == QuicStreamType.Bidirectional, blockedAt);
                _streamLimits.OnStreamsBlockedSent(t, blockedAt);
                sent.AddFrame(new SentFrame { Kind = i == 0 ? FrameKind.StreamsBlockedBidi : FrameKind.StreamsBlockedUni, Value = blockedAt });
                any = true;
            }
        }

        if (isOneRtt)
        {
            IReadOnlyList<ConnectionIdEntry> localIds = _connectionIds.LocalIds;
            for (int i = 0; i < localIds.Count; i++)
            {
                ConnectionIdEntry e = localIds[i]; // indexed: a foreach over the interface would box its enumerator per packet
                if (!e.NeedsSend || w.Remaining < 1 + 8 + 8 + 1 + e.ConnectionId.Length + 16) continue;
                FrameWriter.WriteNewConnectionId(ref w, e.SequenceNumber, 0, e.ConnectionId, e.StatelessResetToken!);
                e.NeedsSend = false;
                sent.AddFrame(new SentFrame { Kind = FrameKind.NewConnectionId, Value = e.SequenceNumber });
                any = true;
            }

            while (IsServer && _newTokensToSend.TryPeek(out byte[]? token) && w.Remaining >= 1 + 8 + token.Length)
            {
                _newTokensToSend.Dequeue();
                FrameWriter.WriteNewToken(ref w, token);
                ulong tokenId = _nextNewTokenId++;
                _newTokensInFlight[tokenId] = token;
                sent.AddFrame(new SentFrame { Kind = FrameKind.NewToken, Value = tokenId });
                any = true;
            }

            while (w.Remaining >= 9 && _connectionIds.TryDequeueRetirement(out ulong seq))
            {
                FrameWriter.WriteRetireConnectionId(ref w, seq);
                sent.AddFrame(new SentFrame { Kind = FrameKind.RetireConnectionId, Value = seq });
                any = true;
            }
        }

        return any;
    }

    /// <summary>Receives loss detection's verdicts on sent packets.</summary>
    private sealed class LossHost : ILossDetectionHost
    {
        private readonly QuicConnectionCore _c;

        public LossHost(QuicConnectionCore c) => _c = c;

        public void OnPacketAcknowledged(SentPacket packet) => _c.OnPacketAcknowledged(packet);

        public void OnPacketLost(SentPacket packet) => _c.OnPacketLost(packet);
    }

    private void OnPacketAcknowledged(SentPacket packet)
    {
        PacketNumberSpaceState space = _spaces[(int)packet.Space];
        if (packet.Space == PacketNumberSpace.ApplicationData && _oneRttKeys is not null && _oneRttKeys.FirstPacketNumberInPhase >= 0 && packet.PacketNumber >= _oneRttKeys.FirstPacketNumberInPhase)
        {
            _oneRttKeys.CurrentPhaseAcknowledged = true;
        }

        foreach (ref readonly SentFrame f in packet.Frames)
        {
            switch (f.Kind)
            {
                case FrameKind.Ping when f.Value == 2:
                    OnMtuProbeAcknowledged(f.Value2);
                    break;
                case FrameKind.Ack:
                    if (!space.Discarded) space.Ack.OnAckAcknowledged(f.Value2);
                    break;
                case FrameKind.Crypto:
                    if (!space.Discarded) space.CryptoSend.OnAcked(f.Offset, f.Length, false);
                    break;
                case FrameKind.Stream:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? s))
                    {
                        s.OnStreamFrameAcked(f.Offset, f.Length, f.Fin);
                        ReleaseIfClosed(s);
                    }

                    break;
                case FrameKind.ResetStream:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? r))
                    {
                        r.OnResetAcked();
                        ReleaseIfClosed(r);
                    }

                    break;
                case FrameKind.StopSending:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? st)) st.OnStopSendingAcked();
                    break;
                case FrameKind.NewToken:
                    _newTokensInFlight.Remove(f.Value);
                    break;
                case FrameKind.Ping when f.Value == 1:
                    Emit(ConnectionEventKind.PingAcknowledged);
                    break;
            }
        }
    }

    private void OnPacketLost(SentPacket packet)
    {
        // A lost PMTU probe (never in flight) says the size is too big for the path, not that the network lost data.
        bool mtuProbe = !packet.InFlight && packet.Frames.Length == 1 && packet.Frames[0] is { Kind: FrameKind.Ping, Value: 2 };
        if (mtuProbe) Statistics.MtuProbesLost++;
        else Statistics.PacketsLost++;
        _qlog?.PacketLost(packet.Space, packet.PacketNumber);
        PacketNumberSpaceState space = _spaces[(int)packet.Space];
        foreach (ref readonly SentFrame f in packet.Frames)
        {
            switch (f.Kind)
            {
                case FrameKind.Ping when f.Value == 1:
                    _pingsRequested++; // the application waits for this one: probe again
                    break;
                case FrameKind.Ping when f.Value == 2:
                    OnMtuProbeLost(f.Value2);
                    break;
                case FrameKind.Crypto:
                    if (!space.Discarded)
                    {
                        space.CryptoSend.OnLost(f.Offset, f.Length, false);
                        Statistics.FramesRetransmitted++;
                    }

                    break;
                case FrameKind.Stream:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? s) && s.Send is not null)
                    {
                        s.OnStreamFrameLost(f.Offset, f.Length, f.Fin);
                        Statistics.FramesRetransmitted++;
                        QueueForSend(s);
                    }

                    break;
                case FrameKind.ResetStream:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? r))
                    {
                        r.OnResetLost();
                        QueueForSend(r);
                    }

                    break;
                case FrameKind.StopSending:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? ss))
                    {
                        ss.OnStopSendingLost();
                        QueueForSend(ss);
                    }

                    break;
                case FrameKind.MaxStreamData:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? ms))
                    {
                        ms.OnMaxStreamDataLost();
                        QueueForSend(ms);
                    }

                    break;
                case FrameKind.MaxData:
                    _connectionReceiveFlow.OnUpdateLost();
                    break;
                case FrameKind.MaxStreamsBidi:
                    _streamLimits.OnMaxStreamsLost(QuicStreamType.Bidirectional);
                    break;
                case FrameKind.MaxStreamsUni:
                    _streamLimits.OnMaxStreamsLost(QuicStreamType.Unidirectional);
                    break;
                case FrameKind.DataBlocked:
                    _connectionSendFlow.OnBlockedLost(f.Value2);
                    _dataBlockedPending = true;
                    break;
                case FrameKind.StreamDataBlocked:
                    if (_streams.TryGetValue(f.StreamId, out StreamState? sdb))
                    {
                        sdb.OnStreamDataBlockedLost(f.Value2);
                        QueueForSend(sdb);
                    }

                    break;
                case FrameKind.StreamsBlockedBidi:
                    _streamLimits.OnStreamsBlockedLost(QuicStreamType.Bidirectional, f.Value);
                    break;
                case FrameKind.StreamsBlockedUni:
                    _streamLimits.OnStreamsBlockedLost(QuicStreamType.Unidirectional, f.Value);
                    break;
                case FrameKind.HandshakeDone:
                    _handshakeDonePending = true;
                    break;
                case FrameKind.NewToken:
                    if (_newTokensInFlight.Remove(f.Value, out byte[]? lostToken)) _newTokensToSend.Enqueue(lostToken);
                    break;
                case FrameKind.NewConnectionId:
                    foreach (ConnectionIdEntry e in _connectionIds.LocalIds)
                    {
                        if (e.SequenceNumber == f.Value) e.NeedsSend = true;
                    }

                    break;
                case FrameKind.RetireConnectionId:
                    _connectionIds.RequeueRetirement(f.Value);
                    break;
                case FrameKind.PathChallenge:
                    // Re-challenged by the path validation timer.
                    break;
            }
        }
    }
}
