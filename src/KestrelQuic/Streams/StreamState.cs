using KestrelQuic.FlowControl;
using KestrelQuic.Protocol;

namespace KestrelQuic.Streams;

/// <summary>
/// Transport state of one stream: the sending part (RFC 9000 §3.1) and/or the receiving part (§3.2), their
/// buffers and stream-level flow control (§4.1). The connection owns the frames: it feeds peer frames in,
/// asks the Needs*/HasDataToSend flags what to send, and reports sent/acked/lost frames back.
/// Connection-level flow controllers are shared by all streams and passed in at construction.
/// </summary>
internal sealed class StreamState
{
    private readonly ReceiveFlowController _connectionReceiveFlow;
    private readonly SendFlowController _connectionSendFlow;

    // Bytes of this stream credited to the connection (and stream) as consumed: read by the app or discarded.
    private long _credited;

    // The application no longer reads (it sent STOP_SENDING): data is discarded and credited on arrival.
    private bool _receiveAbandoned;

    /// <param name="id">The stream ID.</param>
    /// <param name="isServer">Our role, to tell local from peer-initiated streams.</param>
    /// <param name="sendMaxData">The peer's initial limit for this stream (its initial_max_stream_data_* parameter).</param>
    /// <param name="receiveWindow">The initial limit we advertised for this stream.</param>
    /// <param name="receiveMaxWindow">Upper bound for window auto-tuning (also the receive buffer limit).</param>
    /// <param name="connectionReceiveFlow">Connection-level credit we grant (MAX_DATA).</param>
    /// <param name="connectionSendFlow">Connection-level credit granted by the peer.</param>
    /// <param name="sendBufferLimit">Bytes the application may have buffered unacknowledged (backpressure).</param>
    /// <param name="sendAccount">The connection's account of buffered send bytes, shared by its streams (backpressure across streams).</param>
    public StreamState(
        ulong id,
        bool isServer,
        long sendMaxData,
        long receiveWindow,
        long receiveMaxWindow,
        ReceiveFlowController connectionReceiveFlow,
        SendFlowController connectionSendFlow,
        long sendBufferLimit = long.MaxValue,
        SendBufferAccount? sendAccount = null)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(id, StreamId.MaxValue);
        ArgumentNullException.ThrowIfNull(connectionReceiveFlow);
        ArgumentNullException.ThrowIfNull(connectionSendFlow);
        Id = id;
        IsBidirectional = StreamId.IsBidirectional(id);
        IsLocal = StreamId.IsLocallyInitiated(id, isServer);
        CanSend = StreamId.CanSend(id, isServer);
        CanReceive = StreamId.CanReceive(id, isServer);
        _connectionReceiveFlow = connectionReceiveFlow;
        _connectionSendFlow = connectionSendFlow;

        if (CanSend)
        {
            Send = new SendBuffer(sendBufferLimit, sendAccount);
            SendFlow = new SendFlowController(sendMaxData);
        }
        else
        {
            SendState = SendStreamState.DataRecvd; // no sending part: treated as terminal
        }

        if (CanReceive)
        {
            // The unread data never exceeds the window (MaxData - ReadOffset <= MaxWindow), so this limit is not hit.
            long maxWindow = Math.Max(receiveWindow, receiveMaxWindow);
            Receive = new ReceiveBuffer(Math.Max(1, maxWindow));
            ReceiveFlow = new ReceiveFlowController(receiveWindow, maxWindow);
        }
        else
        {
            ReceiveState = ReceiveStreamState.DataRead; // no receiving part: treated as terminal
        }
    }

    public ulong Id { get; }

    /// <summary>True once any STREAM frame of this stream arrived in a 0-RTT packet (its data may be replayed).</summary>
    public bool ReceivedEarlyData { get; set; }

    public bool IsBidirectional { get; }

    public QuicStreamType Type => IsBidirectional ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional;

    /// <summary>True if this endpoint initiated the stream.</summary>
    public bool IsLocal { get; }

    public bool CanSend { get; }

    public bool CanReceive { get; }

    /// <summary>State of the sending part (DataRecvd for receive-only streams).</summary>
    public SendStreamState SendState { get; private set; }

    /// <summary>State of the receiving part (DataRead for send-only streams).</summary>
    public ReceiveStreamState ReceiveState { get; private set; }

    public SendBuffer? Send { get; }

    public ReceiveBuffer? Receive { get; }

    public SendFlowController? SendFlow { get; }

    public ReceiveFlowController? ReceiveFlow { get; }

    /// <summary>Error code of the RESET_STREAM received from the peer.</summary>
    public ulong? PeerResetErrorCode { get; private set; }

    /// <summary>Error code of the STOP_SENDING received from the peer.</summary>
    public ulong? PeerStopSendingErrorCode { get; private set; }

    /// <summary>Error code for the RESET_STREAM we send (set by <see cref="Reset"/> or a peer STOP_SENDING).</summary>
    public ulong? PendingResetErrorCode { get; private set; }

    /// <summary>Final size carried by our RESET_STREAM: the highest offset sent (RFC 9000 §4.5).</summary>
    public long ResetFinalSize { get; private set; }

    /// <summary>Error code for the STOP_SENDING we send.</summary>
    public ulong? StopSendingErrorCode { get; private set; }

    /// <summary>A RESET_STREAM frame (PendingResetErrorCode, ResetFinalSize) must be sent.</summary>
    public bool NeedsResetStream { get; private set; }

    /// <summary>A STOP_SENDING frame (StopSendingErrorCode) must be sent.</summary>
    public bool NeedsStopSending { get; private set; }

    /// <summary>Both parts are in terminal states: the connection can release the stream (and return stream credit).</summary>
    public bool IsClosed =>
        SendState is SendStreamState.DataRecvd or SendStreamState.ResetRecvd
        && ReceiveState is ReceiveStreamState.DataRead or ReceiveStreamState.ResetRead;

    /// <summary>Contiguous bytes the application can read now.</summary>
    public long ReadableBytes => ReceiveState is ReceiveStreamState.Recv or ReceiveStreamState.SizeKnown or ReceiveStreamState.DataRecvd
        ? Receive!.ReadableBytes
        : 0;

    /// <summary>True if <see cref="Read"/> has something to report: data, the end of the stream, or a reset.</summary>
    public bool IsReadable => ReadableBytes > 0
        || (ReceiveState == ReceiveStreamState.DataRecvd && Receive!.IsComplete)
        || ReceiveState == ReceiveStreamState.ResetRecvd;

    // ---------------------------------------------------------------- frames from the peer

    /// <summary>
    /// A STREAM frame (RFC 9000 §19.8). Validates direction, final size and stream + connection flow control;
    /// charges connection flow control with the increase of the highest received offset.
    /// </summary>
    public bool OnStreamFrame(long offset, ReadOnlySpan<byte> data, bool fin, out TransportError error)
    {
        if (!CanReceive)
        {
            error = new TransportError(TransportErrorCode.StreamStateError, StreamFrameTypes.Stream, "STREAM frame on a send-only stream");
            return false;
        }

        ReceiveBuffer receive = Receive!;
        long end = offset + data.Length;
        if (!receive.IsFinalSizeConsistent(end, fin))
        {
            error = new TransportError(TransportErrorCode.FinalSizeError, StreamFrameTypes.Stream, "STREAM frame contradicts the final size");
            return false;
        }

        if (!ChargeFlowControl(end, StreamFrameTypes.Stream, out error)) return false;

        ReceiveBufferResult result = receive.Write(offset, data, fin);
        if (result == ReceiveBufferResult.BufferExceeded)
        {
            // Unreachable while the buffer limit is at least the maximum window; kept as a safety net.
            error = new TransportError(TransportErrorCode.FlowControlError, StreamFrameTypes.Stream, "stream receive buffer exceeded");
            return false;
        }

        if (result == ReceiveBufferResult.TooManyGaps)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, StreamFrameTypes.Stream, "too many gaps in received stream data");
            return false;
        }

        if (receive.IsDiscarded) CreditDiscarded();
        UpdateReceiveState();
        error = default;
        return true;
    }

    /// <summary>Same as <see cref="OnStreamFrame(long, ReadOnlySpan{byte}, bool, out TransportError)"/>; <paramref name="connectionFlow"/> must be the controller given at construction.</summary>
    public bool OnStreamFrame(long offset, ReadOnlySpan<byte> data, bool fin, ReceiveFlowController connectionFlow, out TransportError error)
    {
        CheckConnectionFlow(connectionFlow);
        return OnStreamFrame(offset, data, fin, out error);
    }

    /// <summary>A RESET_STREAM frame (RFC 9000 §19.4).</summary>
    public bool OnResetStream(ulong errorCode, long finalSize, out TransportError error)
    {
        if (!CanReceive)
        {
            error = new TransportError(TransportErrorCode.StreamStateError, StreamFrameTypes.ResetStream, "RESET_STREAM on a send-only stream");
            return false;
        }

        ReceiveBuffer receive = Receive!;
        if (finalSize < 0 || !receive.IsFinalSizeConsistent(finalSize, fin: true))
        {
            error = new TransportError(TransportErrorCode.FinalSizeError, StreamFrameTypes.ResetStream, "RESET_STREAM final size differs from the known final size or received data");
            return false;
        }

        if (!ChargeFlowControl(finalSize, StreamFrameTypes.ResetStream, out error)) return false;
        receive.Write(finalSize, ReadOnlySpan<byte>.Empty, fin: true);

        if (ReceiveState is ReceiveStreamState.Recv or ReceiveStreamState.SizeKnown)
        {
            // RFC 9000 §3.2: interrupt delivery. In Data Recvd the reset is suppressed and all data is delivered.
            PeerResetErrorCode = errorCode;
            ReceiveState = ReceiveStreamState.ResetRecvd;
            NeedsStopSending = false;
            receive.Discard();
            CreditDiscarded();
            if (_receiveAbandoned) ReceiveState = ReceiveStreamState.ResetRead;
        }

        error = default;
        return true;
    }

    /// <summary>Same as <see cref="OnResetStream(ulong, long, out TransportError)"/>; <paramref name="connectionFlow"/> must be the controller given at construction.</summary>
    public bool OnResetStream(ulong errorCode, long finalSize, ReceiveFlowController connectionFlow, out TransportError error)
    {
        CheckConnectionFlow(connectionFlow);
        return OnResetStream(errorCode, finalSize, out error);
    }

    /// <summary>A STOP_SENDING frame (RFC 9000 §19.5): the sending part is reset with the peer's error code (§3.5).</summary>
    public bool OnStopSending(ulong errorCode, out TransportError error)
    {
        if (!CanSend)
        {
            error = new TransportError(TransportErrorCode.StreamStateError, StreamFrameTypes.StopSending, "STOP_SENDING on a receive-only stream");
            return false;
        }

        PeerStopSendingErrorCode ??= errorCode;
        Reset(errorCode);
        error = default;
        return true;
    }

    /// <summary>A MAX_STREAM_DATA frame (RFC 9000 §19.10). Decreases are ignored.</summary>
    public bool OnMaxStreamData(long max, out TransportError error)
    {
        if (!CanSend)
        {
            error = new TransportError(TransportErrorCode.StreamStateError, StreamFrameTypes.MaxStreamData, "MAX_STREAM_DATA on a receive-only stream");
            return false;
        }

        SendFlow!.UpdateMax(max);
        error = default;
        return true;
    }

    /// <summary>MAX_STREAM_DATA without error reporting: ignored on a stream we cannot send on.</summary>
    public void OnMaxStreamData(long max)
    {
        SendFlow?.UpdateMax(max);
    }

    /// <summary>A STREAM_DATA_BLOCKED frame (RFC 9000 §19.13): informational, but invalid on a send-only stream.</summary>
    public bool OnStreamDataBlocked(long limit, out TransportError error)
    {
        if (!CanReceive)
        {
            error = new TransportError(TransportErrorCode.StreamStateError, StreamFrameTypes.StreamDataBlocked, "STREAM_DATA_BLOCKED on a send-only stream");
            return false;
        }

        PeerBlockedLimit = Math.Max(PeerBlockedLimit ?? 0, limit);
        error = default;
        return true;
    }

    /// <summary>The largest limit reported by the peer in STREAM_DATA_BLOCKED (for diagnostics).</summary>
    public long? PeerBlockedLimit { get; private set; }

    // ---------------------------------------------------------------- application actions

    /// <summary>
    /// Bytes the application may write beyond the peer's current MAX_STREAM_DATA: enough to use a window update at
    /// once, while a stream whose reader paused holds little more than its window (not the whole send buffer).
    /// </summary>
    public const long SendAheadLimit = 1024 * 1024;

    /// <summary>Buffers application data; returns the bytes accepted (0 once the sending part is finished or reset).</summary>
    public int Write(ReadOnlySpan<byte> data)
    {
        SendBuffer send = Send ?? throw new InvalidOperationException("Cannot write to a receive-only stream.");
        if (SendState is not (SendStreamState.Ready or SendStreamState.Send) || send.IsFinished) return 0;
        long ahead = SendFlow!.MaxData + SendAheadLimit - send.WrittenOffset;
        if (ahead <= 0) return 0;
        if (data.Length > ahead) data = data[..(int)ahead];
        return send.Write(data);
    }

    /// <summary>
    /// True when a write would be refused by this stream's own limits (its send buffer above
    /// <paramref name="bufferedThreshold"/>, or too far ahead of the peer's credit) rather than the connection's.
    /// </summary>
    public bool IsWriteBlockedOnItsOwn(long bufferedThreshold) =>
        Send is { IsDiscarded: false, IsFinished: false } send
        && (send.BufferedBytes > bufferedThreshold || send.WrittenOffset >= SendFlow!.MaxData + SendAheadLimit);

    /// <summary>The application has written all data: a FIN follows.</summary>
    public void Finish()
    {
        SendBuffer send = Send ?? throw new InvalidOperationException("Cannot finish a receive-only stream.");
        if (SendState is SendStreamState.Ready or SendStreamState.Send) send.Finish();
    }

    /// <summary>Abandons sending (RFC 9000 §3.1): enters Reset Sent, discards the send buffer, and a RESET_STREAM must be sent.</summary>
    public void Reset(ulong errorCode)
    {
        if (!CanSend) throw new InvalidOperationException("Cannot reset a receive-only stream.");
        if (SendState is not (SendStreamState.Ready or SendStreamState.Send or SendStreamState.DataSent)) return;
        SendState = SendStreamState.ResetSent;
        PendingResetErrorCode = errorCode;
        ResetFinalSize = Send!.SentOffset;
        Send.Discard();
        NeedsResetStream = true;
    }

    /// <summary>
    /// The application stops reading (RFC 9000 §3.5): a STOP_SENDING must be sent while in Recv/Size Known;
    /// buffered and further data is discarded but still counted and credited for flow control.
    /// </summary>
    public void StopSending(ulong errorCode)
    {
        if (!CanReceive) throw new InvalidOperationException("Cannot stop receiving on a send-only stream.");
        if (_receiveAbandoned) return;
        _receiveAbandoned = true;
        if (ReceiveState is ReceiveStreamState.Recv or ReceiveStreamState.SizeKnown)
        {
            StopSendingErrorCode = errorCode;
            NeedsStopSending = true;
        }

        if (ReceiveState is ReceiveStreamState.Recv or ReceiveStreamState.SizeKnown or ReceiveStreamState.DataRecvd)
        {
            Receive!.Discard();
            CreditDiscarded();
        }

        UpdateReceiveState();
        if (ReceiveState == ReceiveStreamState.ResetRecvd) ReceiveState = ReceiveStreamState.ResetRead;
    }

    /// <summary>
    /// Reads contiguous data, crediting stream and connection flow control. Returns 0 when nothing is readable;
    /// once all data is read the receiving part enters Data Read, and a pending peer reset is delivered
    /// (Reset Recvd → Reset Read; see <see cref="PeerResetErrorCode"/>).
    /// </summary>
    public int Read(Span<byte> destination)
    {
        if (!CanReceive) throw new InvalidOperationException("Cannot read from a send-only stream.");
        int n = 0;
        switch (ReceiveState)
        {
            case ReceiveStreamState.Recv:
            case ReceiveStreamState.SizeKnown:
            case ReceiveStreamState.DataRecvd:
                n = Receive!.Read(destination);
                Credit(n);
                break;
            case ReceiveStreamState.ResetRecvd:
                ReceiveState = ReceiveStreamState.ResetRead;
                break;
        }

        UpdateReceiveState(appRead: true);
        return n;
    }

    /// <summary>Zero-copy read: the next contiguous segment; follow with <see cref="Advance"/>.</summary>
    public bool TryPeek(out ReadOnlySpan<byte> data)
    {
        if (ReadableBytes == 0)
        {
            data = default;
            return false;
        }

        return Receive!.TryPeek(out data);
    }

    /// <summary>Consumes <paramref name="count"/> bytes after <see cref="TryPeek"/>, crediting flow control.</summary>
    public void Advance(int count)
    {
        if (count == 0) return;
        Receive!.Advance(count);
        Credit(count);
        UpdateReceiveState(appRead: true);
    }

    // ---------------------------------------------------------------- sending STREAM frames

    /// <summary>Highest offset new data may reach: the stream limit and the connection credit left.</summary>
    public long GetSendLimit(long connectionCredit)
    {
        if (SendFlow is null) return 0;
        return Math.Min(SendFlow.MaxData, Send!.SentOffset + Math.Max(0, connectionCredit));
    }

    public long GetSendLimit() => GetSendLimit(_connectionSendFlow.Available);

    /// <summary>True if a STREAM frame (retransmission, new data within flow control, or FIN) can be sent.</summary>
    public bool HasDataToSend(long connectionCredit) =>
        SendState is SendStreamState.Ready or SendStreamState.Send or SendStreamState.DataSent
        && Send!.HasPendingData(GetSendLimit(connectionCredit));

    public bool HasDataToSend() => HasDataToSend(_connectionSendFlow.Available);

    /// <summary>Picks the next STREAM frame's range; copy its bytes with <c>Send.CopyTo</c>, then call <see cref="OnStreamFrameSent"/>.</summary>
    public bool TryGetNextFrame(int maxLength, out long offset, out int length, out bool fin, out bool isRetransmission)
    {
        if (SendState is not (SendStreamState.Ready or SendStreamState.Send or SendStreamState.DataSent))
        {
            offset = 0;
            length = 0;
            fin = false;
            isRetransmission = false;
            return false;
        }

        return Send!.TryGetNext(maxLength, GetSendLimit(), out offset, out length, out fin, out isRetransmission);
    }

    /// <summary>A STREAM frame went out: consumes stream and connection credit for new bytes, Ready → Send → Data Sent.</summary>
    public void OnStreamFrameSent(long offset, int length, bool fin)
    {
        SendBuffer send = Send ?? throw new InvalidOperationException("Receive-only stream.");
        long newBytes = Math.Max(0, offset + length - send.SentOffset);
        SendFlow!.Consume(newBytes);
        _connectionSendFlow.Consume(newBytes);
        send.MarkSent(offset, length, fin);
        if (SendState == SendStreamState.Ready) SendState = SendStreamState.Send;
        if (fin && SendState == SendStreamState.Send) SendState = SendStreamState.DataSent;
    }

    public void OnStreamFrameAcked(long offset, int length, bool fin)
    {
        if (SendState is not (SendStreamState.Send or SendStreamState.DataSent)) return;
        Send!.OnAcked(offset, length, fin);
        if (SendState == SendStreamState.DataSent && Send.IsAllAcked) SendState = SendStreamState.DataRecvd;
    }

    public void OnStreamFrameLost(long offset, int length, bool fin)
    {
        if (SendState is SendStreamState.Send or SendStreamState.DataSent) Send!.OnLost(offset, length, fin);
    }

    // ---------------------------------------------------------------- control frames

    /// <summary>RESET_STREAM was put in a packet.</summary>
    public void OnResetSent() => NeedsResetStream = false;

    /// <summary>RESET_STREAM acknowledged: Reset Sent → Reset Recvd.</summary>
    public void OnResetAcked()
    {
        if (SendState == SendStreamState.ResetSent) SendState = SendStreamState.ResetRecvd;
        NeedsResetStream = false;
    }

    public void OnResetLost()
    {
        if (SendState == SendStreamState.ResetSent) NeedsResetStream = true;
    }

    public void OnStopSendingSent() => NeedsStopSending = false;

    public void OnStopSendingAcked() => NeedsStopSending = false;

    /// <summary>Resend STOP_SENDING only while it is still useful (Recv / Size Known, RFC 9000 §3.5).</summary>
    public void OnStopSendingLost()
    {
        if (ReceiveState is ReceiveStreamState.Recv or ReceiveStreamState.SizeKnown && StopSendingErrorCode.HasValue)
        {
            NeedsStopSending = true;
        }
    }

    /// <summary>True if a MAX_STREAM_DATA frame should be sent: only in Recv (RFC 9000 §3.2) and while the app reads.</summary>
    public bool NeedsMaxStreamData(long now, long smoothedRtt, out long newMax)
    {
        if (ReceiveState != ReceiveStreamState.Recv || _receiveAbandoned || ReceiveFlow is null)
        {
            newMax = 0;
            return false;
        }

        return ReceiveFlow.ShouldSendUpdate(now, smoothedRtt, out newMax);
    }

    public void OnMaxStreamDataSent(long value, long now) => ReceiveFlow?.OnUpdateSent(value, now);

    public void OnMaxStreamDataLost() => ReceiveFlow?.OnUpdateLost();

    /// <summary>True if a STREAM_DATA_BLOCKED frame should be sent: data waits behind the stream limit (once per limit).</summary>
    public bool NeedsStreamDataBlocked(out long limit)
    {
        limit = 0;
        return SendState is SendStreamState.Ready or SendStreamState.Send
            && Send!.IsBlockedBy(SendFlow!.MaxData)
            && SendFlow.ShouldSendBlocked(out limit);
    }

    /// <summary>STREAM_DATA_BLOCKED sent: Ready → Send (RFC 9000 §3.1).</summary>
    public void OnStreamDataBlockedSent(long limit)
    {
        SendFlow?.OnBlockedSent(limit);
        if (SendState == SendStreamState.Ready) SendState = SendStreamState.Send;
    }

    public void OnStreamDataBlockedLost(long limit) => SendFlow?.OnBlockedLost(limit);

    // ---------------------------------------------------------------- helpers

    // Checks then charges stream and connection flow control for data up to `end`.
    private bool ChargeFlowControl(long end, ulong frameType, out TransportError error)
    {
        ReceiveFlowController flow = ReceiveFlow!;
        if (!flow.CanReceive(end))
        {
            error = new TransportError(TransportErrorCode.FlowControlError, frameType, "stream flow control limit exceeded");
            return false;
        }

        long increase = Math.Max(0, end - flow.HighestReceived);
        if (increase > 0 && !_connectionReceiveFlow.TryReceiveDelta(increase))
        {
            error = new TransportError(TransportErrorCode.FlowControlError, frameType, "connection flow control limit exceeded");
            return false;
        }

        flow.TryReceive(end);
        error = default;
        return true;
    }

    private void Credit(long bytes)
    {
        if (bytes <= 0) return;
        _credited += bytes;
        ReceiveFlow!.OnConsumed(bytes);
        _connectionReceiveFlow.OnConsumed(bytes);
    }

    // Discarded data never reaches the app: credit everything received (RFC 9000 §4.5 counts it via the final size).
    private void CreditDiscarded() => Credit(ReceiveFlow!.HighestReceived - _credited);

    // Data Recvd → Data Read is an application event (it has read everything): only on reads, or when it abandoned reading.
    private void UpdateReceiveState(bool appRead = false)
    {
        ReceiveBuffer? receive = Receive;
        if (receive is null) return;
        if (ReceiveState == ReceiveStreamState.Recv && receive.IsFinReceived) ReceiveState = ReceiveStreamState.SizeKnown;
        if (ReceiveState == ReceiveStreamState.SizeKnown && receive.IsAllReceived) ReceiveState = ReceiveStreamState.DataRecvd;
        if (ReceiveState == ReceiveStreamState.DataRecvd && ((appRead && receive.IsComplete) || _receiveAbandoned))
        {
            ReceiveState = ReceiveStreamState.DataRead;
        }
    }

    private void CheckConnectionFlow(ReceiveFlowController connectionFlow)
    {
        if (!ReferenceEquals(connectionFlow, _connectionReceiveFlow))
        {
            throw new ArgumentException("Not the connection flow controller this stream was created with.", nameof(connectionFlow));
        }
    }
}
