using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Recovery;

/// <summary>Loss detection and probe timeouts, RFC 9002 §6, §7.6 and Appendix A (ticks of 100 ns).</summary>
public sealed class LossDetectionTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long T0 = 1000 * Ms;
    private const long MaxAckDelay = 25 * Ms;

    private static readonly LossDetectionContext Confirmed = new()
    {
        HandshakeConfirmed = true,
        PeerCompletedAddressValidation = true,
        HasHandshakeKeys = false,
        HasOneRttKeys = true,
        MaxAckDelay = MaxAckDelay,
        IsServer = false,
    };

    private readonly RttEstimator _rtt = new(333 * Ms);
    private readonly NewRenoCongestionController _cc = new(1200);
    private readonly LossDetection _ld;
    private readonly Host _host = new();

    public LossDetectionTests() => _ld = new LossDetection(_rtt, _cc);

    private void Send(long pn, long time, PacketNumberSpace space = PacketNumberSpace.ApplicationData, bool ackEliciting = true)
    {
        SentPacket p = _ld.RentPacket();
        p.PacketNumber = pn;
        p.TimeSent = time;
        p.SentBytes = 1200;
        p.AckEliciting = ackEliciting;
        p.InFlight = true;
        p.Space = space;
        _ld.OnPacketSent(p, time);
    }

    private void Ack(long now, in LossDetectionContext context, params (long First, long Last)[] ranges) => Ack(PacketNumberSpace.ApplicationData, now, 0, context, ranges);

    private void Ack(PacketNumberSpace space, long now, long ackDelay, in LossDetectionContext context, params (long First, long Last)[] ranges)
    {
        ValueRange[] r = ranges.Select(x => new ValueRange(x.First, x.Last + 1)).ToArray();
        Assert.True(_ld.OnAckReceived(space, r, ackDelay, now, _host, context, out TransportError error), error.Reason);
    }

    [Fact]
    public void PacketThreshold_PacketThreeBelowLargestAckedIsLost()
    {
        Assert.Equal(3, LossDetection.PacketThreshold);
        for (int pn = 0; pn <= 3; pn++) Send(pn, T0);

        Ack(T0 + 100 * Ms, Confirmed, (3, 3));

        // 3 >= 0 + kPacketThreshold: packet 0 lost; 1 and 2 are not (yet): they were sent less than 9/8 RTT ago.
        Assert.Equal(new long[] { 3 }, _host.Acked);
        Assert.Equal(new long[] { 0 }, _host.Lost);
        Assert.Equal(2, _ld.OutstandingPackets(PacketNumberSpace.ApplicationData));
        Assert.Equal(2 * 1200, _cc.BytesInFlight);
    }

    [Fact]
    public void PacketThreshold_TwoPacketsBelowLargestAreNotLostByCount()
    {
        for (int pn = 0; pn <= 2; pn++) Send(pn, T0);
        Ack(T0 + 100 * Ms, Confirmed, (1, 2));
        Assert.Empty(_host.Lost);
        Assert.Equal(1, _ld.OutstandingPackets(PacketNumberSpace.ApplicationData));
    }

    [Fact]
    public void TimeThreshold_ArmsLossTimer_AndDeclaresLossWhenItFires()
    {
        for (int pn = 0; pn <= 3; pn++) Send(pn, T0);
        Ack(T0 + 100 * Ms, Confirmed, (3, 3));
        _ld.SetLossDetectionTimer(Confirmed, T0 + 100 * Ms);

        // loss_delay = 9/8 × max(smoothed 100, latest 100) = 112.5 ms after the send time of packets 1 and 2.
        Assert.Equal(T0 + 1_125_000, _ld.LossDetectionTimer);

        LossTimeoutResult result = _ld.OnLossDetectionTimeout(Confirmed, T0 + 1_125_000, _host);
        Assert.False(result.ProbeRequired);
        Assert.Equal(new long[] { 0, 1, 2 }, _host.Lost);
        Assert.Equal(0, _ld.PtoCount);
        Assert.Equal(0, _ld.OutstandingPackets(PacketNumberSpace.ApplicationData));

        // Nothing left in flight on a validated path: no timer.
        _ld.SetLossDetectionTimer(Confirmed, T0 + 1_125_000);
        Assert.Null(_ld.LossDetectionTimer);
    }

    [Fact]
    public void TimeThreshold_OnAck_OlderPacketLostAfterNineEighthsRtt()
    {
        Send(0, T0);
        Send(1, T0 + 200 * Ms);
        Ack(T0 + 300 * Ms, Confirmed, (1, 1));

        // RTT 100 ms → loss_delay 112.5 ms; packet 0 was sent 300 ms ago.
        Assert.Equal(new long[] { 0 }, _host.Lost);
    }

    [Fact]
    public void TimeThreshold_UsesLargerOfLatestAndSmoothedRtt()
    {
        Send(0, T0);
        Ack(T0 + 100 * Ms, Confirmed, (0, 0)); // smoothed = latest = 100 ms

        Send(1, T0 + 100 * Ms);
        Send(2, T0 + 110 * Ms);
        Ack(T0 + 310 * Ms, Confirmed, (2, 2)); // latest 200 ms, smoothed (700 + 200) / 8 = 112.5 ms
        Assert.Equal(1_125_000, _rtt.SmoothedRtt);
        Assert.Equal(200 * Ms, _rtt.LatestRtt);

        // loss_delay = 9/8 × 200 = 225 ms: packet 1 (sent 210 ms ago) is not lost yet; with smoothed_rtt it would be.
        Assert.Empty(_host.Lost);
        _ld.SetLossDetectionTimer(Confirmed, T0 + 310 * Ms);
        Assert.Equal(T0 + 100 * Ms + 225 * Ms, _ld.LossDetectionTimer);
    }

    [Fact]
    public void TimeThreshold_IsAtLeastGranularity()
    {
        Send(0, T0);
        Send(1, T0);
        Ack(T0 + 1000, Confirmed, (1, 1)); // RTT 0.1 ms: 9/8 of it is 0.1125 ms

        Assert.Empty(_host.Lost);
        _ld.SetLossDetectionTimer(Confirmed, T0 + 1000);
        Assert.Equal(T0 + RttEstimator.Granularity, _ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_ApplicationSpace_IncludesMaxAckDelay_AndBacksOffExponentially()
    {
        Send(0, T0);
        _ld.SetLossDetectionTimer(Confirmed, T0);

        // No RTT sample: 333 + max(4 × 166.5, 1) + 25 = 1024 ms.
        Assert.Equal(T0 + 1024 * Ms, _ld.LossDetectionTimer);

        LossTimeoutResult r = _ld.OnLossDetectionTimeout(Confirmed, T0 + 1024 * Ms, _host);
        Assert.True(r.ProbeRequired);
        Assert.Equal(PacketNumberSpace.ApplicationData, r.ProbeSpace);
        Assert.Equal(2, r.ProbeCount);
        Assert.Equal(1, _ld.PtoCount);
        Assert.Empty(_host.Lost); // a PTO declares nothing lost

        _ld.SetLossDetectionTimer(Confirmed, T0 + 1024 * Ms);
        Assert.Equal(T0 + 2048 * Ms, _ld.LossDetectionTimer);

        _ld.OnLossDetectionTimeout(Confirmed, T0 + 2048 * Ms, _host);
        _ld.SetLossDetectionTimer(Confirmed, T0 + 2048 * Ms);
        Assert.Equal(2, _ld.PtoCount);
        Assert.Equal(T0 + 4096 * Ms, _ld.LossDetectionTimer);

        // An acknowledgement resets the backoff (RFC 9002 §6.2.1).
        Ack(T0 + 4000 * Ms, Confirmed, (0, 0));
        Assert.Equal(0, _ld.PtoCount);
    }

    [Fact]
    public void Pto_AfterRttSample_UsesSmoothedAndVariance()
    {
        Send(0, T0);
        Ack(T0 + 100 * Ms, Confirmed, (0, 0)); // srtt 100, rttvar 50
        Send(1, T0 + 200 * Ms);
        _ld.SetLossDetectionTimer(Confirmed, T0 + 200 * Ms);
        Assert.Equal(T0 + 200 * Ms + 325 * Ms, _ld.LossDetectionTimer); // 100 + 4 × 50 + 25
        Assert.Equal(325 * Ms, _ld.GetProbeTimeoutDuration(PacketNumberSpace.ApplicationData, Confirmed));
        Assert.Equal(300 * Ms, _ld.GetProbeTimeoutDuration(PacketNumberSpace.Handshake, Confirmed));
    }

    [Fact]
    public void Pto_HandshakeSpaces_ExcludeMaxAckDelay()
    {
        var context = new LossDetectionContext { MaxAckDelay = MaxAckDelay };
        Send(0, T0, PacketNumberSpace.Initial);
        _ld.SetLossDetectionTimer(context, T0);
        Assert.Equal(T0 + 999 * Ms, _ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_PicksSpaceWithEarliestTimeout_AndMovesOnWhenSpaceDiscarded()
    {
        var context = new LossDetectionContext { HasHandshakeKeys = true, MaxAckDelay = MaxAckDelay };
        Send(0, T0, PacketNumberSpace.Initial);
        Send(0, T0 + 50 * Ms, PacketNumberSpace.Handshake);
        _ld.SetLossDetectionTimer(context, T0 + 50 * Ms);
        Assert.Equal(T0 + 999 * Ms, _ld.LossDetectionTimer);

        LossTimeoutResult r = _ld.OnLossDetectionTimeout(context, T0 + 999 * Ms, _host);
        Assert.Equal(PacketNumberSpace.Initial, r.ProbeSpace);
        Assert.Equal(1, _ld.PtoCount);

        // Initial keys discarded (RFC 9002 §6.4): its packets leave flight without loss, pto_count resets.
        _ld.OnPacketNumberSpaceDiscarded(PacketNumberSpace.Initial);
        Assert.Equal(0, _ld.PtoCount);
        Assert.Empty(_host.Lost);
        Assert.Equal(1200, _cc.BytesInFlight);
        _ld.SetLossDetectionTimer(context, T0 + 999 * Ms);
        Assert.Equal(T0 + 50 * Ms + 999 * Ms, _ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_NoApplicationSpaceProbeBeforeHandshakeConfirmed()
    {
        var unconfirmed = new LossDetectionContext { PeerCompletedAddressValidation = true, HasHandshakeKeys = true, HasOneRttKeys = true, MaxAckDelay = MaxAckDelay };
        Send(0, T0, PacketNumberSpace.ApplicationData);
        _ld.SetLossDetectionTimer(unconfirmed, T0);
        Assert.Null(_ld.LossDetectionTimer);

        // A Handshake packet in flight is probed even though an earlier 1-RTT packet is outstanding.
        Send(0, T0 + 10 * Ms, PacketNumberSpace.Handshake);
        _ld.SetLossDetectionTimer(unconfirmed, T0 + 10 * Ms);
        Assert.Equal(T0 + 10 * Ms + 999 * Ms, _ld.LossDetectionTimer);

        // Once confirmed, the 1-RTT packet is probed (with max_ack_delay): T0 + 1024 ms is earlier.
        _ld.SetLossDetectionTimer(Confirmed, T0 + 10 * Ms);
        Assert.Equal(T0 + 1009 * Ms, _ld.LossDetectionTimer);
        _ld.OnPacketNumberSpaceDiscarded(PacketNumberSpace.Handshake);
        _ld.SetLossDetectionTimer(Confirmed, T0 + 10 * Ms);
        Assert.Equal(T0 + 1024 * Ms, _ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_AmplificationLimitedServer_ArmsNoTimer()
    {
        var limited = new LossDetectionContext { IsServer = true, IsAmplificationLimited = true, PeerCompletedAddressValidation = true, MaxAckDelay = MaxAckDelay };
        Send(0, T0, PacketNumberSpace.Initial);
        _ld.SetLossDetectionTimer(limited, T0);
        Assert.Null(_ld.LossDetectionTimer);

        var unlimited = limited with { IsAmplificationLimited = false };
        _ld.SetLossDetectionTimer(unlimited, T0);
        Assert.Equal(T0 + 999 * Ms, _ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_ServerWithNothingInFlight_ArmsNoTimer()
    {
        var server = new LossDetectionContext { IsServer = true, PeerCompletedAddressValidation = true, MaxAckDelay = MaxAckDelay };
        _ld.SetLossDetectionTimer(server, T0);
        Assert.Null(_ld.LossDetectionTimer);
    }

    [Theory]
    [InlineData(false, (int)PacketNumberSpace.Initial)]
    [InlineData(true, (int)PacketNumberSpace.Handshake)]
    public void Pto_ClientAntiDeadlock_ArmsTimerWithNothingInFlight(bool hasHandshakeKeys, int expectedSpace)
    {
        // RFC 9002 §6.2.2.1: the server may be blocked by its amplification limit; the client must keep probing.
        var client = new LossDetectionContext { PeerCompletedAddressValidation = false, HasHandshakeKeys = hasHandshakeKeys, MaxAckDelay = MaxAckDelay };
        _ld.SetLossDetectionTimer(client, T0);
        Assert.Equal(T0 + 999 * Ms, _ld.LossDetectionTimer);

        LossTimeoutResult r = _ld.OnLossDetectionTimeout(client, T0 + 999 * Ms, _host);
        Assert.True(r.ProbeRequired);
        Assert.Equal((PacketNumberSpace)expectedSpace, r.ProbeSpace);
        Assert.Equal(1, _ld.PtoCount);
        _ld.SetLossDetectionTimer(client, T0 + 999 * Ms);
        Assert.Equal(T0 + 999 * Ms + 1998 * Ms, _ld.LossDetectionTimer); // backed off, from now

        // Once the server validated the address there is nothing to protect against.
        _ld.SetLossDetectionTimer(client with { PeerCompletedAddressValidation = true }, T0 + 999 * Ms);
        Assert.Null(_ld.LossDetectionTimer);
    }

    [Fact]
    public void Pto_ClientBackoffNotResetByAckUntilAddressValidated()
    {
        var client = new LossDetectionContext { PeerCompletedAddressValidation = false, MaxAckDelay = MaxAckDelay };
        Send(0, T0, PacketNumberSpace.Initial);
        Send(1, T0, PacketNumberSpace.Initial);
        _ld.SetLossDetectionTimer(client, T0);
        _ld.OnLossDetectionTimeout(client, T0 + 999 * Ms, _host);
        Assert.Equal(1, _ld.PtoCount);

        Ack(PacketNumberSpace.Initial, T0 + 1100 * Ms, 0, client, (0, 0));
        Assert.Equal(1, _ld.PtoCount);
        Ack(PacketNumberSpace.Initial, T0 + 1100 * Ms, 0, client with { PeerCompletedAddressValidation = true }, (1, 1));
        Assert.Equal(0, _ld.PtoCount);
    }

    [Fact]
    public void Ack_ForPacketNeverSent_IsProtocolViolation()
    {
        Send(0, T0);
        ValueRange[] ranges = { new(0, 2) };
        Assert.False(_ld.OnAckReceived(PacketNumberSpace.ApplicationData, ranges, 0, T0 + 10 * Ms, _host, Confirmed, out TransportError error));
        Assert.Equal(TransportErrorCode.ProtocolViolation, error.Code);
    }

    [Fact]
    public void RttSample_OnlyWhenLargestIsNewlyAckedAndAckEliciting()
    {
        Send(0, T0, ackEliciting: false);
        Ack(T0 + 50 * Ms, Confirmed, (0, 0));
        Assert.False(_rtt.HasSample); // only non-ack-eliciting packets newly acknowledged

        Send(1, T0 + 100 * Ms);
        Ack(T0 + 200 * Ms, Confirmed, (1, 1));
        Assert.Equal(100 * Ms, _rtt.LatestRtt);

        Ack(T0 + 900 * Ms, Confirmed, (1, 1)); // duplicate ACK: the largest is not newly acknowledged
        Assert.Equal(100 * Ms, _rtt.LatestRtt);
        Assert.Equal(new long[] { 0, 1 }, _host.Acked);
    }

    [Fact]
    public void RttSample_AckDelayIgnoredOutsideApplicationSpace()
    {
        Send(0, T0, PacketNumberSpace.Initial);
        Ack(PacketNumberSpace.Initial, T0 + 100 * Ms, 10 * Ms, Confirmed, (0, 0));
        Send(1, T0 + 100 * Ms, PacketNumberSpace.Initial);
        Ack(PacketNumberSpace.Initial, T0 + 220 * Ms, 10 * Ms, Confirmed, (1, 1));

        // latest 120 ms, delay not subtracted: (700 + 120) / 8 = 102.5 ms.
        Assert.Equal(1_025_000, _rtt.SmoothedRtt);
    }

    [Fact]
    public void PersistentCongestion_LossesSpanningMoreThanDuration_CollapseWindowToMinimum()
    {
        Send(0, T0);
        Ack(T0 + 100 * Ms, Confirmed, (0, 0)); // RTT sample: srtt 100, rttvar 50; slow start cwnd 12000 + 1200
        Assert.Equal(13_200, _cc.CongestionWindow);

        long t1 = T0 + 200 * Ms;
        Send(1, t1);
        Send(2, t1 + 400 * Ms);
        Send(3, t1 + 900 * Ms);
        Send(4, t1 + 901 * Ms);
        Send(5, t1 + 902 * Ms);
        Send(6, t1 + 903 * Ms);
        Ack(t1 + 1003 * Ms, Confirmed, (6, 6));

        // After this sample: srtt 100, rttvar 37.5. Duration = (100 + 4 × 37.5 + 25) × 3 = 825 ms < 900 ms.
        Assert.Equal(375_000, _rtt.RttVariance);
        Assert.Equal(new long[] { 1, 2, 3 }, _host.Lost);
        Assert.Equal(2 * 1200, _cc.CongestionWindow); // kMinimumWindow
    }

    [Fact]
    public void PersistentCongestion_DurationIncludesMaxAckDelay()
    {
        Send(0, T0);
        Ack(T0 + 100 * Ms, Confirmed, (0, 0));

        long t1 = T0 + 200 * Ms;
        Send(1, t1);
        Send(2, t1 + 400 * Ms);
        Send(3, t1 + 800 * Ms);
        Send(4, t1 + 801 * Ms);
        Send(5, t1 + 802 * Ms);
        Send(6, t1 + 803 * Ms);
        Ack(t1 + 903 * Ms, Confirmed, (6, 6));

        // RFC 9002 §7.6.1: (smoothed_rtt + max(4·rttvar, kGranularity) + max_ack_delay) × 3 = (100 + 150 + 25) × 3 = 825 ms.
        // The losses span 800 ms: an ordinary congestion event (halving), not persistent congestion.
        Assert.Equal(new long[] { 1, 2, 3 }, _host.Lost);
        Assert.Equal(7200, _cc.CongestionWindow); // (13200 + 1200 for packet 6) halved
    }

    [Fact]
    public void PersistentCongestion_NotDeclaredWhenAPacketInBetweenWasAcknowledged()
    {
        Send(0, T0);
        Ack(T0 + 100 * Ms, Confirmed, (0, 0));

        long t1 = T0 + 200 * Ms;
        Send(1, t1);
        Send(2, t1 + 450 * Ms);
        Send(3, t1 + 900 * Ms);
        Send(4, t1 + 901 * Ms);
        Send(5, t1 + 902 * Ms);
        Send(6, t1 + 903 * Ms);
        Ack(t1 + 1003 * Ms, Confirmed, (6, 6), (2, 2));

        Assert.Equal(new long[] { 1, 3 }, _host.Lost);
        Assert.Equal(7800, _cc.CongestionWindow); // (13200 + 2 × 1200 for packets 2 and 6) halved once
    }

    [Fact]
    public void PersistentCongestion_RequiresAnRttSampleBeforeTheLostPackets()
    {
        Send(0, T0);
        Send(1, T0 + 2000 * Ms);
        Send(2, T0 + 2001 * Ms);
        Send(3, T0 + 2002 * Ms);
        Send(4, T0 + 2003 * Ms);
        Ack(T0 + 2103 * Ms, Confirmed, (4, 4)); // first RTT sample arrives with the losses

        Assert.Equal(new long[] { 0, 1 }, _host.Lost);
        Assert.Equal(6600, _cc.CongestionWindow); // (12000 + 1200 for packet 4) halved, not kMinimumWindow
    }

    [Fact]
    public void SpaceDiscarded_RemovesBytesFromFlightWithoutCongestionSignal()
    {
        Send(0, T0, PacketNumberSpace.Handshake);
        Send(1, T0, PacketNumberSpace.Handshake);
        Assert.Equal(2400, _cc.BytesInFlight);
        _ld.OnPacketNumberSpaceDiscarded(PacketNumberSpace.Handshake);
        Assert.Equal(0, _cc.BytesInFlight);
        Assert.Equal(12_000, _cc.CongestionWindow);
        Assert.Empty(_host.Lost);
        Assert.Equal(0, _ld.OutstandingPackets(PacketNumberSpace.Handshake));
        Assert.False(_ld.HasAckElicitingInFlight(PacketNumberSpace.Handshake));
    }

    private sealed class Host : ILossDetectionHost
    {
        public List<long> Acked { get; } = new();

        public List<long> Lost { get; } = new();

        public void OnPacketAcknowledged(SentPacket packet) => Acked.Add(packet.PacketNumber);

        public void OnPacketLost(SentPacket packet) => Lost.Add(packet.PacketNumber);
    }
}
