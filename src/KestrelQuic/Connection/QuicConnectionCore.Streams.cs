using KestrelQuic.FlowControl;
using KestrelQuic.Frames;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;

namespace KestrelQuic.Connection;

internal sealed partial class QuicConnectionCore
{
    private readonly Dictionary<ulong, StreamState> _streams = new();
    private readonly Queue<StreamState> _sendQueue = new();
    private readonly HashSet<ulong> _queuedForSend = new();
    private readonly Queue<byte[]> _datagramsToSend = new();

    // Streams whose last write was refused (stream or connection send buffer full): told StreamWritable once acks
    // or discarded streams make room, whether or not a MAX_STREAM_DATA ever comes.
    private readonly List<ulong> _writersWaiting = new();
    private SendBufferAccount _sendAccount = null!;
    private StreamLimits _streamLimits = null!;
    private ReceiveFlowController _connectionReceiveFlow = null!;
    private SendFlowController _connectionSendFlow = null!;
    private long _peerInitialMaxStreamDataBidiLocal;
    private long _peerInitialMaxStreamDataBidiRemote;
    private long _peerInitialMaxStreamDataUni;
    private bool _maxDataPending;
    private bool _dataBlockedPending;

    public int StreamCount => _streams.Count;

    public SendFlowController ConnectionSendFlow => _connectionSendFlow;

    public ReceiveFlowController ConnectionReceiveFlow => _connectionReceiveFlow;

    private void InitializeStreams()
    {
        _streamLimits = new StreamLimits(IsServer, (ulong)_config.MaxBidirectionalStreams, (ulong)_config.MaxUnidirectionalStreams);
        _connectionReceiveFlow = new ReceiveFlowController(_config.MaxData, _config.MaxConnectionReceiveWindow);
        _connectionSendFlow = new SendFlowController(0);
        _sendAccount = new SendBufferAccount(ConnectionSendBufferLimit);
    }

    private void ApplyPeerStreamParameters(TransportParameters peer)
    {
        _connectionSendFlow.UpdateMax((long)Math.Min(peer.InitialMaxData, long.MaxValue));
        _peerInitialMaxStreamDataBidiLocal = (long)Math.Min(peer.InitialMaxStreamDataBidiLocal, long.MaxValue);
        _peerInitialMaxStreamDataBidiRemote = (long)Math.Min(peer.InitialMaxStreamDataBidiRemote, long.MaxValue);
        _peerInitialMaxStreamDataUni = (long)Math.Min(peer.InitialMaxStreamDataUni, long.MaxValue);
        _streamLimits.OnMaxStreams(QuicStreamType.Bidirectional, peer.InitialMaxStreamsBidi);
        _streamLimits.OnMaxStreams(QuicStreamType.Unidirectional, peer.InitialMaxStreamsUni);

        // Streams opened before the parameters were known (0-RTT) get their initial credit now.
        foreach (StreamState s in _streams.Values)
        {
            if (s.CanSend) s.OnMaxStreamData(InitialSendCredit(s.Id));
        }

        Emit(ConnectionEventKind.StreamsAvailable);
    }

    private long InitialSendCredit(ulong id)
    {
        if (!StreamId.IsBidirectional(id)) return _peerInitialMaxStreamDataUni;
        // The peer's "local" limit applies to streams the peer opened; "remote" to the ones we opened.
        return StreamId.IsLocallyInitiated(id, IsServer) ? _peerInitialMaxStreamDataBidiRemote : _peerInitialMaxStreamDataBidiLocal;
    }

    // We advertise the same initial window for every stream type.
    private long InitialReceiveWindow(ulong id) => _config.MaxStreamData;

    /// <summary>Unacknowledged bytes an application may buffer per stream before writes are refused (backpressure).</summary>
    private long StreamSendBufferLimit => Math.Max(1024 * 1024, Math.Min(_config.MaxStreamReceiveWindow, 8L * 1024 * 1024));

    /// <summary>
    /// Unacknowledged bytes all streams together may buffer (16 MiB by default): without it a peer that opens every
    /// stream it may and never reads would let the application buffer <see cref="StreamSendBufferLimit"/> on each.
    /// Sized like the stream limit, from the window we would grant a peer ourselves.
    /// </summary>
    private long ConnectionSendBufferLimit => Math.Max(StreamSendBufferLimit, Math.Min(_config.MaxConnectionReceiveWindow, 16L * 1024 * 1024));

    /// <summary>Unacknowledged bytes buffered by all streams now (for tests and diagnostics).</summary>
    internal long SendBufferedBytes => _sendAccount.BufferedBytes;

    /// <summary>The most <see cref="SendBufferedBytes"/> may reach.</summary>
    internal long SendBufferLimit => _sendAccount.Limit;

    private StreamState CreateStream(ulong id)
    {
        var stream = new StreamState(id, IsServer, InitialSendCredit(id), InitialReceiveWindow(id), _config.MaxStreamReceiveWindow, _connectionReceiveFlow, _connectionSendFlow, StreamSendBufferLimit, _sendAccount);
        _streams.Add(id, stream);
        return stream;
    }

    /// <summary>Opens a locally initiated stream. False when the peer's stream limit is reached (STREAMS_BLOCKED is then sent).</summary>
    public bool TryOpenStream(bool bidirectional, out ulong streamId)
    {
        streamId = 0;
        if (State is not (ConnectionState.Handshake or ConnectionState.Established)) return false;
        if (!_streamLimits.TryOpenLocal(bidirectional ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional, out streamId))
        {
            return false;
        }

        CreateStream(streamId);
        Statistics.StreamsOpened++;
        return true;
    }

    /// <summary>How many more locally initiated streams of <paramref name="type"/> the peer's current MAX_STREAMS allows.</summary>
    public ulong AvailableLocalStreams(QuicStreamType type) => _streamLimits.AvailableLocal(type);

    public StreamState? GetStream(ulong streamId) => _streams.GetValueOrDefault(streamId);

    /// <summary>Buffers application data for sending; returns the bytes accepted (less than asked when the send buffer is full).</summary>
    public int WriteStream(ulong streamId, ReadOnlySpan<byte> data, bool fin = false)
    {
        if (!_streams.TryGetValue(streamId, out StreamState? s) || s.Send is null || s.SendState is not (SendStreamState.Ready or SendStreamState.Send) || s.Send.IsFinished)
        {
            return 0;
        }

        int n = data.IsEmpty ? 0 : s.Write(data);
        if (fin && n == data.Length) s.Finish();
        if (n < data.Length && !_writersWaiting.Contains(streamId)) _writersWaiting.Add(streamId);
        QueueForSend(s);
        return n;
    }

    /// <summary>Tells writers refused for lack of send buffer that there is room again (half of each limit free).</summary>
    private void WakeWaitingWriters()
    {
        if (_writersWaiting.Count == 0 || _sendAccount.BufferedBytes > _sendAccount.Limit / 2) return;
        for (int i = _writersWaiting.Count - 1; i >= 0; i--)
        {
            ulong id = _writersWaiting[i];
            StreamState? s = _streams.GetValueOrDefault(id);
            if (s is not null && s.IsWriteBlockedOnItsOwn(StreamSendBufferLimit / 2)) continue; // MAX_STREAM_DATA or its acks will wake it
            _writersWaiting[i] = _writersWaiting[^1];
            _writersWaiting.RemoveAt(_writersWaiting.Count - 1);
            if (s is not null) Emit(ConnectionEventKind.StreamWritable, id);
        }
    }

    public void FinishStream(ulong streamId)
    {
        if (_streams.TryGetValue(streamId, out StreamState? s) && s.Send is not null && !s.Send.IsFinished && s.SendState is SendStreamState.Ready or SendStreamState.Send)
        {
            s.Finish();
            QueueForSend(s);
        }
    }

    /// <summary>Reads received data in order; <paramref name="finished"/> is true once all data up to the FIN was read.</summary>
    public int ReadStream(ulong streamId, Span<byte> destination, out bool finished)
    {
        finished = false;
        if (!_streams.TryGetValue(streamId, out StreamState? s) || s.Receive is null)
        {
            return 0;
        }

        int n = s.Read(destination);
        finished = s.ReceiveState == ReceiveStreamState.DataRead;
        if (n > 0) QueueForSend(s); // a window update may be due
        _maxDataPending |= n > 0;
        ReleaseIfClosed(s);
        return n;
    }

    /// <summary>Abruptly ends the sending half (RESET_STREAM).</summary>
    public void ResetStream(ulong streamId, ulong errorCode)
    {
        if (_streams.TryGetValue(streamId, out StreamState? s) && s.CanSend)
        {
            s.Reset(errorCode);
            QueueForSend(s);
            WakeWaitingWriters();
        }
    }

    /// <summary>Asks the peer to stop sending (STOP_SENDING) and discards what arrives.</summary>
    public void StopSending(ulong streamId, ulong errorCode)
    {
        if (_streams.TryGetValue(streamId, out StreamState? s) && s.CanReceive)
        {
            s.StopSending(errorCode);
            QueueForSend(s);
        }
    }

    /// <summary>Queues an unreliable DATAGRAM (RFC 9221). False when the peer does not accept datagrams or it is too large.</summary>
    public bool SendDatagram(ReadOnlySpan<byte> data)
    {
        if (_peerParameters?.MaxDatagramFrameSize is not ulong max || (ulong)(data.Length + 1 + Wire.VariableLengthInteger.GetLength((ulong)data.Length)) > max)
        {
            return false;
        }

        if (data.Length + 64 > MaxPayloadForDatagramFrame()) return false;
        if (_datagramsToSend.Count >= 1024) return false; // unreliable: drop rather than grow without bound
        _datagramsToSend.Enqueue(data.ToArray());
        return true;
    }

    /// <summary>Largest DATAGRAM payload that currently fits into one packet.</summary>
    public int MaxPayloadForDatagramFrame() => MaxDatagramSizeForPath() - 1 - 20 - 4 - 16 - 8;

    private void QueueForSend(StreamState s)
    {
        if (_queuedForSend.Add(s.Id)) _sendQueue.Enqueue(s);
    }

    private void ReleaseIfClosed(StreamState s)
    {
        if (!s.IsClosed || !_streams.Remove(s.Id)) return;
        s.Send?.Discard();
        s.Receive?.Discard();
        if (!StreamId.IsLocallyInitiated(s.Id, IsServer))
        {
            _streamLimits.OnRemoteStreamClosed(StreamId.IsBidirectional(s.Id) ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional);
        }

        Emit(ConnectionEventKind.StreamClosed, s.Id);
        WakeWaitingWriters();
    }

    private bool ProcessDatagramFrame(ReadOnlySpan<byte> data, ulong frameType, out TransportError error)
    {
        error = default;
        if (_localParameters.MaxDatagramFrameSize is not ulong max)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, frameType, "DATAGRAM frame not negotiated");
            return false;
        }

        if ((ulong)data.Length > max)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, frameType, "DATAGRAM frame larger than max_datagram_frame_size");
            return false;
        }

        Emit(ConnectionEventKind.DatagramReceived, data: data.ToArray());
        return true;
    }

    /// <summary>STREAM, RESET_STREAM, STOP_SENDING, MAX_* and *_BLOCKED frames; <paramref name="zeroRtt"/> when the packet was 0-RTT.</summary>
    private bool ProcessStreamFrame(ref Frame frame, bool zeroRtt, long now, out TransportError error)
    {
        error = default;
        ulong type = (ulong)frame.Type;
        switch (frame.Type)
        {
            case FrameType.MaxData:
                if (_connectionSendFlow.UpdateMax((long)Math.Min(frame.Maximum, long.MaxValue))) RequeueBlockedStreams();
                return true;
            case FrameType.MaxStreamsBidi:
            case FrameType.MaxStreamsUni:
                _streamLimits.OnMaxStreams(frame.Type == FrameType.MaxStreamsBidi ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional, frame.Maximum);
                Emit(ConnectionEventKind.StreamsAvailable);
                return true;
            case FrameType.DataBlocked:
                _maxDataPending = true; // the peer wants credit: re-evaluate our window now
                return true;
            case FrameType.StreamsBlockedBidi:
            case FrameType.StreamsBlockedUni:
                return true;
        }

        ulong id = frame.StreamId;
        bool local = StreamId.IsLocallyInitiated(id, IsServer);
        bool bidi = StreamId.IsBidirectional(id);

        // RFC 9000 §19.8/§19.4/§19.5/§19.10/§19.13: frames that cannot apply to this stream's direction.
        bool receivingFrame = frame.Type is FrameType.Stream or FrameType.ResetStream or FrameType.StreamDataBlocked;
        bool sendingFrame = frame.Type is FrameType.StopSending or FrameType.MaxStreamData;
        if ((receivingFrame && local && !bidi) || (sendingFrame && !local && !bidi))
        {
            error = new TransportError(TransportErrorCode.StreamStateError, type, "frame not allowed on this stream's direction");
            return false;
        }

        if (!_streams.TryGetValue(id, out StreamState? stream))
        {
            if (local)
            {
                if (!_streamLimits.IsLocalStreamOpened(id))
                {
                    error = new TransportError(TransportErrorCode.StreamStateError, type, "frame for a locally initiated stream not yet created");
                    return false;
                }

                return true; // already closed and released: late frame
            }

            if (!_streamLimits.TryOpenRemote(id, out ulong firstNewId, out ulong newCount, out error, type))
            {
                return false;
            }

            if (newCount == 0)
            {
                return true; // opened before and already released
            }

            for (ulong newId = firstNewId; newId <= id; newId += 4)
            {
                CreateStream(newId);
                Statistics.StreamsOpened++;
                Emit(ConnectionEventKind.StreamOpened, newId);
            }

            stream = _streams[id];
        }

        switch (frame.Type)
        {
            case FrameType.Stream:
            {
                // RFC 9001 §9.2: data from 0-RTT may be a replay; the application decides what it may act on.
                if (zeroRtt) stream.ReceivedEarlyData = true;
                long before = stream.Receive!.ReadableBytes;
                bool wasFin = stream.Receive.IsFinReceived;
                if (!stream.OnStreamFrame((long)frame.Offset, frame.Data, frame.Fin, out error))
                {
                    error = error with { FrameType = type };
                    return false;
                }

                if (stream.Receive.ReadableBytes > before || (stream.Receive.IsFinReceived && !wasFin && stream.Receive.ReadableBytes == 0) || stream.ReceiveState == ReceiveStreamState.DataRecvd)
                {
                    Emit(ConnectionEventKind.StreamReadable, id);
                }

                return true;
            }

            case FrameType.ResetStream:
                if (!stream.OnResetStream(frame.ErrorCode, (long)frame.FinalSize, out error))
                {
                    error = error with { FrameType = type };
                    return false;
                }

                _maxDataPending = true;
                Emit(ConnectionEventKind.StreamReset, id, frame.ErrorCode);
                ReleaseIfClosed(stream);
                return true;

            case FrameType.StopSending:
                if (!stream.OnStopSending(frame.ErrorCode, out error))
                {
                    error = error with { FrameType = type };
                    return false;
                }

                Emit(ConnectionEventKind.StreamStopSending, id, frame.ErrorCode);
                QueueForSend(stream); // RESET_STREAM goes out in response
                WakeWaitingWriters();
                return true;

            case FrameType.MaxStreamData:
                if (!stream.OnMaxStreamData((long)Math.Min(frame.Maximum, long.MaxValue), out error)) return false;
                QueueForSend(stream);
                Emit(ConnectionEventKind.StreamWritable, id);
                return true;

            case FrameType.StreamDataBlocked:
                if (!stream.OnStreamDataBlocked((long)Math.Min(frame.Maximum, long.MaxValue), out error)) return false;
                QueueForSend(stream); // re-evaluate its window
                return true;
        }

        return true;
    }

    private void RequeueBlockedStreams()
    {
        foreach (StreamState s in _streams.Values)
        {
            if (s.HasDataToSend()) QueueForSend(s);
        }
    }

    /// <summary>0-RTT was rejected or the Initial flight restarted: the application data of 0-RTT packets must be sent again in 1-RTT.</summary>
    private void RequeueZeroRttData()
    {
        foreach (StreamState s in _streams.Values)
        {
            if (s.Send is not null && s.Send.SentOffset > 0)
            {
                s.OnStreamFrameLost(0, (int)Math.Min(int.MaxValue, s.Send.SentOffset), s.Send.IsFinSent);
                QueueForSend(s);
            }
        }

        _loss.OnPacketNumberSpaceDiscarded(PacketNumberSpace.ApplicationData);
    }

    private void AbortAllStreams()
    {
        foreach (StreamState s in _streams.Values)
        {
            Emit(ConnectionEventKind.StreamReset, s.Id, CloseReason?.ErrorCode ?? 0);
        }
    }

    private void DisposeStreams()
    {
        foreach (StreamState s in _streams.Values)
        {
            s.Send?.Discard();
            s.Receive?.Discard();
        }

        _streams.Clear();
    }
}
