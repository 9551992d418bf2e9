using KestrelQuic.Recovery;

namespace KestrelQuic.Tests.Recovery;

/// <summary>NewReno as specified for QUIC: RFC 9002 §7 and Appendix B.</summary>
public sealed class NewRenoTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long T0 = 1000 * Ms;
    private readonly RttEstimator _rtt = new(100 * Ms);

    private static void SendAndAck(ICongestionController cc, RttEstimator rtt, int packets, long timeSent, long now, bool appLimited = false)
    {
        for (int i = 0; i < packets; i++) cc.OnPacketSent(timeSent, 1200);
        for (int i = 0; i < packets; i++) cc.OnPacketAcked(timeSent, 1200, now, rtt, appLimited);
    }

    [Theory]
    [InlineData(1200, 12_000, 2400)]   // min(10 × 1200, max(14720, 2400)) = 12000
    [InlineData(1500, 14_720, 3000)]   // min(15000, 14720)
    [InlineData(9000, 18_000, 18_000)] // min(90000, max(14720, 18000))
    public void InitialAndMinimumWindow_FollowRfc9002Section7_2(int maxDatagramSize, long initial, long minimum)
    {
        var cc = new NewRenoCongestionController(maxDatagramSize);
        Assert.Equal(initial, cc.CongestionWindow);
        Assert.True(cc.InSlowStart);
        Assert.Equal(long.MaxValue, cc.SlowStartThreshold);

        cc.OnPersistentCongestion();
        Assert.Equal(minimum, cc.CongestionWindow);
    }

    [Fact]
    public void Factory_CreatesTheRequestedAlgorithm()
    {
        Assert.IsType<NewRenoCongestionController>(CongestionControllerFactory.Create(CongestionControlAlgorithm.NewReno, 1200));
        Assert.IsType<CubicCongestionController>(CongestionControllerFactory.Create(CongestionControlAlgorithm.Cubic, 1200));
    }

    [Fact]
    public void BytesInFlight_AndAvailableWindow()
    {
        var cc = new NewRenoCongestionController(1200);
        for (int i = 0; i < 4; i++) cc.OnPacketSent(T0, 1200);
        Assert.Equal(4800, cc.BytesInFlight);
        Assert.Equal(12_000 - 4800, cc.AvailableWindow);

        cc.OnPacketLost(1200);
        cc.OnPacketDiscarded(1200);
        Assert.Equal(2400, cc.BytesInFlight);
        Assert.Equal(12_000, cc.CongestionWindow); // neither is a congestion signal by itself

        for (int i = 0; i < 10; i++) cc.OnPacketSent(T0, 1200);
        Assert.Equal(0, cc.AvailableWindow); // never negative
    }

    [Fact]
    public void SlowStart_GrowsByBytesAcknowledged()
    {
        var cc = new NewRenoCongestionController(1200);
        SendAndAck(cc, _rtt, 10, T0, T0 + 100 * Ms);
        Assert.Equal(24_000, cc.CongestionWindow); // doubled after one window
        Assert.Equal(0, cc.BytesInFlight);
        Assert.True(cc.InSlowStart);
    }

    [Fact]
    public void CongestionEvent_HalvesWindowAndSetsSlowStartThreshold()
    {
        var cc = new NewRenoCongestionController(1200);
        cc.OnCongestionEvent(timeSentOfLargestLost: T0, now: T0 + 100 * Ms);
        Assert.Equal(6000, cc.CongestionWindow); // kLossReductionFactor 0.5
        Assert.Equal(6000, cc.SlowStartThreshold);
        Assert.False(cc.InSlowStart);
    }

    [Fact]
    public void CongestionEvent_NeverBelowMinimumWindow()
    {
        var cc = new NewRenoCongestionController(1200);
        long now = T0;
        for (int i = 0; i < 10; i++)
        {
            now += 100 * Ms;
            cc.OnCongestionEvent(now - 1, now); // each loss is of a packet sent after the previous recovery started
        }

        Assert.Equal(2400, cc.CongestionWindow);
    }

    [Fact]
    public void RecoveryPeriod_OneReductionPerRoundTrip()
    {
        var cc = new NewRenoCongestionController(1200);
        long recoveryStart = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, recoveryStart);
        Assert.Equal(6000, cc.CongestionWindow);

        // More losses of packets sent before the recovery period started: no further reduction (RFC 9002 §7.3.2).
        cc.OnCongestionEvent(T0 + 50 * Ms, recoveryStart + 10 * Ms);
        cc.OnCongestionEvent(recoveryStart, recoveryStart + 20 * Ms);
        Assert.Equal(6000, cc.CongestionWindow);
        Assert.True(cc.InRecovery(recoveryStart));
        Assert.False(cc.InRecovery(recoveryStart + 1));

        // A packet sent after the recovery start is lost: a new congestion event.
        cc.OnCongestionEvent(recoveryStart + 1, recoveryStart + 200 * Ms);
        Assert.Equal(3000, cc.CongestionWindow);
    }

    [Fact]
    public void RecoveryPeriod_AcksOfPacketsSentBeforeItDoNotGrowTheWindow()
    {
        var cc = new NewRenoCongestionController(1200);
        long recoveryStart = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, recoveryStart);
        SendAndAck(cc, _rtt, 10, timeSent: T0 + 50 * Ms, now: recoveryStart + 10 * Ms);
        Assert.Equal(6000, cc.CongestionWindow);
    }

    [Fact]
    public void CongestionAvoidance_AtMostOneDatagramPerWindowAcknowledged()
    {
        var cc = new NewRenoCongestionController(1200);
        long recoveryStart = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, recoveryStart); // cwnd = ssthresh = 6000: congestion avoidance
        long sent = recoveryStart + 1;

        // RFC 9002 §7.3.3: the increase is limited to one maximum datagram size per congestion window acknowledged.
        SendAndAck(cc, _rtt, 4, sent, sent + 100 * Ms);
        Assert.InRange(cc.CongestionWindow, 6000, 7200);
        SendAndAck(cc, _rtt, 1, sent, sent + 100 * Ms);
        Assert.Equal(7200, cc.CongestionWindow); // one full window (5 × 1200) acknowledged

        // The next window is 7200 bytes (6 packets).
        SendAndAck(cc, _rtt, 6, sent, sent + 200 * Ms);
        Assert.Equal(8400, cc.CongestionWindow);
        Assert.False(cc.InSlowStart);
    }

    [Fact]
    public void AppLimited_AcksDoNotGrowTheWindow()
    {
        // RFC 9002 §7.8: the window is not increased when it was not fully used.
        var cc = new NewRenoCongestionController(1200);
        SendAndAck(cc, _rtt, 5, T0, T0 + 100 * Ms, appLimited: true);
        Assert.Equal(12_000, cc.CongestionWindow);
        Assert.Equal(0, cc.BytesInFlight); // but bytes still leave flight
    }

    [Fact]
    public void PersistentCongestion_CollapsesToMinimumWindowAndEndsRecovery()
    {
        var cc = new NewRenoCongestionController(1200);
        SendAndAck(cc, _rtt, 10, T0, T0 + 100 * Ms); // 24000
        cc.OnCongestionEvent(T0 + 100 * Ms, T0 + 200 * Ms); // 12000
        cc.OnPersistentCongestion();
        Assert.Equal(2400, cc.CongestionWindow);
        Assert.False(cc.InRecovery(T0 + 150 * Ms)); // congestion_recovery_start_time reset

        // ssthresh stays at 12000: slow start again up to it.
        Assert.True(cc.InSlowStart);
        SendAndAck(cc, _rtt, 2, T0 + 300 * Ms, T0 + 400 * Ms);
        Assert.Equal(4800, cc.CongestionWindow);
    }

    [Fact]
    public void EcnCe_IsACongestionEventOncePerRecoveryPeriod()
    {
        var cc = new NewRenoCongestionController(1200);
        cc.OnEcnCeIncreased(T0, T0 + 100 * Ms);
        Assert.Equal(6000, cc.CongestionWindow);
        cc.OnEcnCeIncreased(T0 + 50 * Ms, T0 + 150 * Ms);
        Assert.Equal(6000, cc.CongestionWindow);
    }

    [Fact]
    public void Reset_RestoresInitialState()
    {
        var cc = new NewRenoCongestionController(1200);
        cc.OnCongestionEvent(T0, T0 + 100 * Ms);
        cc.OnPacketSent(T0, 1200);
        cc.Reset();
        Assert.Equal(12_000, cc.CongestionWindow);
        Assert.Equal(long.MaxValue, cc.SlowStartThreshold);
        Assert.False(cc.InRecovery(T0));
        Assert.Equal(1200, cc.BytesInFlight); // bytes in flight are kept
    }
}
