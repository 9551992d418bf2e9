using KestrelQuic.FlowControl;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class StreamStateTests
{
    // We are the client: 0 = local bidi, 1 = peer bidi, 2 = local uni (send-only), 3 = peer uni (receive-only).
    private const ulong LocalBidi = 0, PeerBidi = 1, LocalUni = 2, PeerUni = 3;

    private readonly ReceiveFlowController _connRecv = new(10_000, 10_000);
    private readonly SendFlowController _connSend = new(10_000);

    private StreamState Create(ulong id, long sendMax = 1000, long receiveWindow = 1000) =>
        new(id, isServer: false, sendMax, receiveWindow, receiveWindow, _connRecv, _connSend);

    private static byte[] Bytes(int n, byte seed = 1)
    {
        var b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte)(seed + i);
        return b;
    }

    private static void SendAll(StreamState s, List<(long Offset, int Length, bool Fin)>? log = null)
    {
        while (s.TryGetNextFrame(400, out long o, out int l, out bool f, out _))
        {
            s.OnStreamFrameSent(o, l, f);
            log?.Add((o, l, f));
        }
    }

    [Fact]
    public void Directions_FollowStreamType()
    {
        StreamState bidi = Create(LocalBidi), peerUni = Create(PeerUni), localUni = Create(LocalUni);
        Assert.True(bidi.CanSend && bidi.CanReceive && bidi.IsLocal && bidi.IsBidirectional);
        Assert.True(peerUni is { CanSend: false, CanReceive: true, IsLocal: false, Send: null, SendFlow: null });
        Assert.True(localUni is { CanSend: true, CanReceive: false, IsLocal: true, Receive: null, ReceiveFlow: null });
    }

    // ---- sending part, RFC 9000 §3.1

    [Fact]
    public void Send_Ready_Send_DataSent_DataRecvd()
    {
        StreamState s = Create(LocalUni);
        Assert.Equal(SendStreamState.Ready, s.SendState);
        s.Write(Bytes(600));
        Assert.Equal(SendStreamState.Ready, s.SendState); // buffering alone does not leave Ready
        Assert.True(s.TryGetNextFrame(400, out long o, out int l, out bool f, out _));
        s.OnStreamFrameSent(o, l, f);
        Assert.Equal(SendStreamState.Send, s.SendState);
        s.Finish();
        Assert.True(s.TryGetNextFrame(400, out o, out l, out f, out _));
        Assert.Equal((400L, 200, true), (o, l, f));
        s.OnStreamFrameSent(o, l, f);
        Assert.Equal(SendStreamState.DataSent, s.SendState);
        Assert.Equal(0, s.Write(Bytes(1)));

        s.OnStreamFrameAcked(400, 200, true);
        Assert.Equal(SendStreamState.DataSent, s.SendState);
        s.OnStreamFrameAcked(0, 400, false);
        Assert.Equal(SendStreamState.DataRecvd, s.SendState);
        Assert.True(s.IsClosed); // send-only stream: the sending part alone decides
    }

    [Fact]
    public void Send_Ready_ToDataSent_WithFinInFirstFrame()
    {
        StreamState s = Create(LocalUni);
        s.Write(Bytes(10));
        s.Finish();
        SendAll(s);
        Assert.Equal(SendStreamState.DataSent, s.SendState);
    }

    [Fact]
    public void Send_Ready_ToSend_OnStreamDataBlocked()
    {
        StreamState s = Create(LocalUni, sendMax: 100);
        s.Write(Bytes(300));
        SendAll(s);
        Assert.Equal(100, s.Send!.SentOffset);
        Assert.True(s.NeedsStreamDataBlocked(out long limit));
        Assert.Equal(100, limit);
        s.OnStreamDataBlockedSent(limit);
        Assert.False(s.NeedsStreamDataBlocked(out _)); // once per limit
        s.OnStreamDataBlockedLost(100);
        Assert.True(s.NeedsStreamDataBlocked(out _));

        StreamState fresh = Create(LocalUni, sendMax: 0);
        fresh.Write(Bytes(5));
        Assert.False(fresh.HasDataToSend());
        Assert.True(fresh.NeedsStreamDataBlocked(out limit));
        fresh.OnStreamDataBlockedSent(limit);
        Assert.Equal(SendStreamState.Send, fresh.SendState);
    }

    [Theory]
    [InlineData((int)SendStreamState.Ready)]
    [InlineData((int)SendStreamState.Send)]
    [InlineData((int)SendStreamState.DataSent)]
    public void Send_Reset_FromEachState_ResetSent_ThenResetRecvd(int fromState)
    {
        var from = (SendStreamState)fromState;
        StreamState s = Create(LocalBidi);
        s.Write(Bytes(500));
        if (from != SendStreamState.Ready)
        {
            if (from == SendStreamState.DataSent) s.Finish();
            SendAll(s);
        }

        Assert.Equal(from, s.SendState);
        long sent = s.Send!.SentOffset;
        s.Reset(77);
        Assert.Equal(SendStreamState.ResetSent, s.SendState);
        Assert.True(s.NeedsResetStream);
        Assert.Equal(77UL, s.PendingResetErrorCode);
        Assert.Equal(sent, s.ResetFinalSize);
        Assert.False(s.HasDataToSend());
        Assert.Equal(0, s.Send.HeldChunks);
        Assert.False(s.TryGetNextFrame(1000, out _, out _, out _, out _));

        s.OnResetSent();
        Assert.False(s.NeedsResetStream);
        s.OnResetLost();
        Assert.True(s.NeedsResetStream);
        s.OnResetSent();
        s.OnStreamFrameLost(0, 400, false); // late loss of data: not retransmitted after a reset
        Assert.False(s.HasDataToSend());
        s.OnResetAcked();
        Assert.Equal(SendStreamState.ResetRecvd, s.SendState);
        s.OnResetLost();
        Assert.False(s.NeedsResetStream);
        s.Reset(5); // no effect in a terminal state
        Assert.Equal(77UL, s.PendingResetErrorCode);
    }

    [Fact]
    public void Send_StopSending_TriggersResetWithPeerCode()
    {
        StreamState s = Create(LocalBidi);
        s.Write(Bytes(100));
        SendAll(s);
        Assert.True(s.OnStopSending(0x42, out _));
        Assert.Equal(0x42UL, s.PeerStopSendingErrorCode);
        Assert.Equal(SendStreamState.ResetSent, s.SendState);
        Assert.True(s.NeedsResetStream);
        Assert.Equal(0x42UL, s.PendingResetErrorCode);
        Assert.Equal(100, s.ResetFinalSize);

        // After all data is acknowledged, STOP_SENDING changes nothing.
        StreamState done = Create(LocalUni);
        done.Write(Bytes(10));
        done.Finish();
        SendAll(done);
        done.OnStreamFrameAcked(0, 10, true);
        Assert.True(done.OnStopSending(1, out _));
        Assert.Equal(SendStreamState.DataRecvd, done.SendState);
        Assert.False(done.NeedsResetStream);
    }

    [Fact]
    public void Send_RetransmitsLostFrames_AndConsumesConnectionCreditOnce()
    {
        StreamState s = Create(LocalUni);
        var log = new List<(long, int, bool)>();
        s.Write(Bytes(900));
        s.Finish();
        SendAll(s, log);
        Assert.Equal(900, _connSend.Used);
        Assert.Equal(900, s.SendFlow!.Used);
        s.OnStreamFrameLost(400, 400, false);
        Assert.True(s.HasDataToSend(connectionCredit: 0)); // retransmission needs no credit
        Assert.True(s.TryGetNextFrame(1000, out long o, out int l, out bool f, out bool retx));
        Assert.Equal((400L, 400, false, true), (o, l, f, retx));
        s.OnStreamFrameSent(o, l, f);
        Assert.Equal(900, _connSend.Used);
    }

    [Fact]
    public void Write_AcceptsAtMostSendAheadLimitBeyondThePeersCredit_MoreOnceTheWindowOpens()
    {
        var s = new StreamState(LocalUni, false, sendMaxData: 1000, 1000, 1000, _connRecv, new SendFlowController(1L << 40));
        byte[] data = new byte[4 * 1024 * 1024];
        Assert.Equal(1000 + StreamState.SendAheadLimit, s.Write(data));
        Assert.Equal(0, s.Write(data));
        Assert.True(s.IsWriteBlockedOnItsOwn(long.MaxValue));
        Assert.True(s.OnMaxStreamData(5000, out _));
        Assert.False(s.IsWriteBlockedOnItsOwn(long.MaxValue));
        Assert.Equal(4000, s.Write(data));
        Assert.Equal(5000 + StreamState.SendAheadLimit, s.Send!.WrittenOffset);
    }

    [Fact]
    public void Send_LimitedByConnectionAndStreamCredit()
    {
        var connSend = new SendFlowController(250);
        var s = new StreamState(LocalUni, false, sendMaxData: 1000, 1000, 1000, _connRecv, connSend);
        s.Write(Bytes(2000));
        Assert.Equal(250, s.GetSendLimit());
        SendAll(s);
        Assert.Equal(250, s.Send!.SentOffset);
        Assert.False(s.HasDataToSend());
        Assert.False(s.NeedsStreamDataBlocked(out _)); // blocked by the connection, not the stream
        connSend.UpdateMax(5000);
        Assert.True(s.HasDataToSend());
        SendAll(s);
        Assert.Equal(1000, s.Send.SentOffset);
        Assert.True(s.NeedsStreamDataBlocked(out long limit));
        Assert.Equal(1000, limit);
        Assert.True(s.OnMaxStreamData(900, out _)); // decrease ignored
        Assert.Equal(1000, s.SendFlow!.MaxData);
        Assert.True(s.OnMaxStreamData(1500, out _));
        SendAll(s);
        Assert.Equal(1500, s.Send.SentOffset);
        Assert.Equal(1500, connSend.Used);
    }

    // ---- receiving part, RFC 9000 §3.2

    [Fact]
    public void Receive_Recv_SizeKnown_DataRecvd_DataRead()
    {
        StreamState s = Create(PeerUni);
        Assert.Equal(ReceiveStreamState.Recv, s.ReceiveState);
        byte[] data = Bytes(300);
        Assert.True(s.OnStreamFrame(100, data.AsSpan(100), fin: true, _connRecv, out _));
        Assert.Equal(ReceiveStreamState.SizeKnown, s.ReceiveState);
        Assert.False(s.NeedsMaxStreamData(0, 1, out _)); // not needed once the size is known
        Assert.True(s.OnStreamFrame(0, data.AsSpan(0, 100), fin: false, out _));
        Assert.Equal(ReceiveStreamState.DataRecvd, s.ReceiveState);
        Assert.True(s.IsReadable);

        var buf = new byte[250];
        Assert.Equal(250, s.Read(buf));
        Assert.Equal(data.AsSpan(0, 250).ToArray(), buf);
        Assert.Equal(ReceiveStreamState.DataRecvd, s.ReceiveState);
        Assert.False(s.IsClosed);
        Assert.Equal(50, s.Read(buf));
        Assert.Equal(data.AsSpan(250).ToArray(), buf.AsSpan(0, 50).ToArray());
        Assert.Equal(ReceiveStreamState.DataRead, s.ReceiveState);
        Assert.True(s.IsClosed);
        Assert.Equal(300, _connRecv.Consumed);
        Assert.Equal(300, s.ReceiveFlow!.Consumed);

        // Retransmissions after the end are still validated, then ignored.
        Assert.True(s.OnStreamFrame(0, data.AsSpan(0, 10), false, out _));
        Assert.False(s.OnStreamFrame(300, Bytes(1), false, out TransportError e));
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);
    }

    [Fact]
    public void Receive_FinArrivingLast_GoesStraightToDataRecvd_AndEmptyReadEndsIt()
    {
        StreamState s = Create(PeerUni);
        Assert.True(s.OnStreamFrame(0, Bytes(10), false, out _));
        Assert.Equal(10, s.Read(new byte[100]));
        Assert.True(s.OnStreamFrame(10, default, true, out _)); // FIN-only frame
        Assert.Equal(ReceiveStreamState.DataRecvd, s.ReceiveState);
        Assert.True(s.IsReadable);
        Assert.Equal(0, s.Read(new byte[100]));
        Assert.Equal(ReceiveStreamState.DataRead, s.ReceiveState);
    }

    [Fact]
    public void Receive_ZeroCopyPeekAdvance_CreditsFlowControl()
    {
        StreamState s = Create(PeerBidi);
        Assert.True(s.OnStreamFrame(0, Bytes(100), true, out _));
        Assert.True(s.TryPeek(out ReadOnlySpan<byte> seg));
        Assert.Equal(Bytes(100), seg.ToArray());
        s.Advance(60);
        Assert.Equal(60, _connRecv.Consumed);
        Assert.True(s.TryPeek(out seg));
        Assert.Equal(40, seg.Length);
        s.Advance(40);
        Assert.Equal(ReceiveStreamState.DataRead, s.ReceiveState);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Receive_Reset_FromRecvOrSizeKnown_ResetRecvd_ThenResetRead(bool sizeKnown)
    {
        StreamState s = Create(PeerUni);
        Assert.True(s.OnStreamFrame(0, Bytes(100), false, out _));
        if (sizeKnown) Assert.True(s.OnStreamFrame(200, Bytes(50), true, out _));
        Assert.Equal(sizeKnown ? ReceiveStreamState.SizeKnown : ReceiveStreamState.Recv, s.ReceiveState);
        long finalSize = sizeKnown ? 250 : 180;
        Assert.True(s.OnResetStream(9, finalSize, _connRecv, out _));
        Assert.Equal(ReceiveStreamState.ResetRecvd, s.ReceiveState);
        Assert.Equal(9UL, s.PeerResetErrorCode);
        Assert.Equal(0, s.ReadableBytes);
        Assert.Equal(0, s.Receive!.HeldChunks);
        // RFC 9000 §4.5: the final size counts toward connection flow control; discarded bytes are credited back.
        Assert.Equal(finalSize, _connRecv.HighestReceived);
        Assert.Equal(finalSize, _connRecv.Consumed);
        Assert.True(s.IsReadable);
        Assert.False(s.IsClosed);
        Assert.Equal(0, s.Read(new byte[10]));
        Assert.Equal(ReceiveStreamState.ResetRead, s.ReceiveState);
        Assert.True(s.IsClosed);

        // Late data is checked against the final size and otherwise ignored.
        Assert.True(s.OnStreamFrame(100, Bytes(50), false, out _));
        Assert.False(s.OnStreamFrame(finalSize, Bytes(1), false, out TransportError e));
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);
        Assert.True(s.OnResetStream(9, finalSize, out _)); // duplicate RESET_STREAM
        Assert.False(s.OnResetStream(9, finalSize + 1, out e));
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);
        Assert.Equal(StreamFrameTypes.ResetStream, e.FrameType);
        Assert.Equal(finalSize, _connRecv.HighestReceived);
    }

    [Fact]
    public void Receive_ResetInDataRecvd_IsSuppressed_DataStillDelivered()
    {
        StreamState s = Create(PeerUni);
        Assert.True(s.OnStreamFrame(0, Bytes(20), true, out _));
        Assert.True(s.OnResetStream(3, 20, out _));
        Assert.Equal(ReceiveStreamState.DataRecvd, s.ReceiveState);
        Assert.Null(s.PeerResetErrorCode);
        var buf = new byte[20];
        Assert.Equal(20, s.Read(buf));
        Assert.Equal(Bytes(20), buf);
        Assert.Equal(ReceiveStreamState.DataRead, s.ReceiveState);
    }

    [Fact]
    public void Receive_ResetFinalSize_Violations_AreFinalSizeErrors()
    {
        StreamState a = Create(PeerUni);
        Assert.True(a.OnStreamFrame(0, Bytes(100), false, out _));
        Assert.False(a.OnResetStream(1, 99, out TransportError e)); // below received data
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);
        Assert.Equal(ReceiveStreamState.Recv, a.ReceiveState);

        StreamState b = Create(PeerUni);
        Assert.True(b.OnStreamFrame(0, Bytes(10), true, out _));
        Assert.False(b.OnResetStream(1, 11, out e)); // differs from the FIN's final size
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);

        StreamState c = Create(PeerUni);
        Assert.True(c.OnStreamFrame(0, Bytes(10), true, out _));
        Assert.False(c.OnStreamFrame(5, Bytes(10), false, out e)); // beyond the final size
        Assert.Equal((TransportErrorCode.FinalSizeError, StreamFrameTypes.Stream), (e.Code, e.FrameType));
        Assert.False(c.OnStreamFrame(0, Bytes(5), true, out e)); // changed final size
        Assert.Equal(TransportErrorCode.FinalSizeError, e.Code);
    }

    [Fact]
    public void Receive_StopSending_DiscardsAndCredits_UntilPeerResets()
    {
        StreamState s = Create(PeerBidi);
        Assert.True(s.OnStreamFrame(0, Bytes(100), false, out _));
        s.StopSending(0x10);
        Assert.True(s.NeedsStopSending);
        Assert.Equal(0x10UL, s.StopSendingErrorCode);
        Assert.Equal(100, _connRecv.Consumed); // discarded data frees connection credit
        Assert.Equal(0, s.Receive!.HeldChunks);
        s.OnStopSendingSent();
        s.OnStopSendingLost();
        Assert.True(s.NeedsStopSending);
        s.OnStopSendingSent();
        Assert.False(s.NeedsMaxStreamData(0, 1000, out _));

        Assert.True(s.OnStreamFrame(100, Bytes(50), false, out _)); // STREAM frames still count (§3.5)
        Assert.Equal(150, _connRecv.HighestReceived);
        Assert.Equal(150, _connRecv.Consumed);
        Assert.True(s.OnResetStream(0x10, 160, out _));
        Assert.Equal(ReceiveStreamState.ResetRead, s.ReceiveState); // the app already gave up reading
        Assert.Equal(160, _connRecv.Consumed);
        s.OnStopSendingLost();
        Assert.False(s.NeedsStopSending); // not useful after a reset

        // Sending part still open: the stream is not closed until it ends too.
        Assert.False(s.IsClosed);
        s.Finish();
        SendAll(s);
        s.OnStreamFrameAcked(0, 0, true);
        Assert.True(s.IsClosed);
    }

    // ---- invalid frames → STREAM_STATE_ERROR (RFC 9000 §19.4, §19.5, §19.8, §19.10, §19.13)

    [Fact]
    public void StreamFrame_OnSendOnlyStream_IsStreamStateError()
    {
        StreamState s = Create(LocalUni);
        Assert.False(s.OnStreamFrame(0, Bytes(1), false, out TransportError e));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x08UL), (e.Code, e.FrameType));
        Assert.False(s.OnResetStream(0, 0, out e));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x04UL), (e.Code, e.FrameType));
        Assert.False(s.OnStreamDataBlocked(0, out e));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x15UL), (e.Code, e.FrameType));
        Assert.Equal(0, _connRecv.HighestReceived);
    }

    [Fact]
    public void SenderFrames_OnReceiveOnlyStream_AreStreamStateErrors()
    {
        StreamState s = Create(PeerUni);
        Assert.False(s.OnMaxStreamData(100, out TransportError e));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x11UL), (e.Code, e.FrameType));
        Assert.False(s.OnStopSending(1, out e));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x05UL), (e.Code, e.FrameType));
        Assert.True(s.OnStreamDataBlocked(1000, out _));
        Assert.Throws<InvalidOperationException>(() => s.Write(Bytes(1)));
        Assert.Throws<InvalidOperationException>(() => s.Reset(1));
    }

    // ---- flow control, RFC 9000 §4.1

    [Fact]
    public void StreamFlowControl_Violation_IsFlowControlError()
    {
        StreamState s = Create(PeerUni, receiveWindow: 1000);
        Assert.True(s.OnStreamFrame(0, Bytes(1000), false, out _));
        Assert.False(s.OnStreamFrame(1000, Bytes(1), false, out TransportError e));
        Assert.Equal((TransportErrorCode.FlowControlError, 0x08UL), (e.Code, e.FrameType));
        Assert.Equal(1000, _connRecv.HighestReceived); // nothing charged for the rejected frame

        StreamState r = Create(PeerUni, receiveWindow: 1000);
        Assert.False(r.OnResetStream(0, 1001, out e));
        Assert.Equal((TransportErrorCode.FlowControlError, 0x04UL), (e.Code, e.FrameType));
    }

    [Fact]
    public void ConnectionFlowControl_SumOverStreams_IsEnforced()
    {
        var connRecv = new ReceiveFlowController(1500, 1500);
        var a = new StreamState(PeerUni, false, 0, 1000, 1000, connRecv, _connSend);
        var b = new StreamState(PeerUni + 4, false, 0, 1000, 1000, connRecv, _connSend);
        Assert.True(a.OnStreamFrame(0, Bytes(900), false, out _));
        Assert.True(a.OnStreamFrame(0, Bytes(900), false, out _)); // retransmission: no extra charge
        Assert.Equal(900, connRecv.HighestReceived);
        Assert.True(b.OnStreamFrame(500, Bytes(100), false, out _)); // highest offset 600 counts, not 100
        Assert.Equal(1500, connRecv.HighestReceived);
        Assert.False(b.OnStreamFrame(600, Bytes(1), false, out TransportError e));
        Assert.Equal(TransportErrorCode.FlowControlError, e.Code);
        Assert.Equal(600, b.ReceiveFlow!.HighestReceived);
        Assert.False(a.OnResetStream(0, 901, out e));
        Assert.Equal(TransportErrorCode.FlowControlError, e.Code);

        // Reading credits the connection so it can advertise more.
        Assert.Equal(900, a.Read(new byte[2000]));
        Assert.True(connRecv.ShouldSendUpdate(0, 1000, out long newMax));
        Assert.Equal(900 + 1500, newMax);
    }

    [Fact]
    public void MaxStreamData_SentWhileRecv_AsTheAppReads()
    {
        StreamState s = Create(PeerUni, receiveWindow: 1000);
        Assert.True(s.OnStreamFrame(0, Bytes(800), false, out _));
        Assert.False(s.NeedsMaxStreamData(0, 10, out _));
        Assert.Equal(800, s.Read(new byte[800]));
        Assert.True(s.NeedsMaxStreamData(0, 10, out long max));
        Assert.Equal(1800, max);
        s.OnMaxStreamDataSent(max, 0);
        Assert.False(s.NeedsMaxStreamData(0, 10, out _));
        Assert.True(s.OnStreamFrame(800, Bytes(1000), false, out _));
        s.OnMaxStreamDataLost();
        Assert.True(s.NeedsMaxStreamData(0, 10, out max));
        Assert.Equal(1800, max);
    }

    [Fact]
    public void BidirectionalStream_ClosedOnlyWhenBothPartsTerminal()
    {
        StreamState s = Create(LocalBidi);
        s.Write(Bytes(10));
        s.Finish();
        SendAll(s);
        s.OnStreamFrameAcked(0, 10, true);
        Assert.Equal(SendStreamState.DataRecvd, s.SendState);
        Assert.False(s.IsClosed);
        Assert.True(s.OnStreamFrame(0, Bytes(5), true, out _));
        Assert.False(s.IsClosed);
        s.Read(new byte[5]);
        Assert.True(s.IsClosed);
    }
}
