using KestrelQuic.Recovery;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Recovery;

/// <summary>CUBIC (RFC 9438): β = 0.7, C = 0.4, W_cubic(t) = C·(t − K)³ + W_max, Reno-friendly region.</summary>
public sealed class CubicTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long T0 = 1000 * Ms;
    private const int Mss = 1200;
    private const double AlphaCubic = 3 * (1 - 0.7) / (1 + 0.7); // RFC 9438 §4.3

    private readonly ITestOutputHelper _output;

    public CubicTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void Constants_MatchRfc9438()
    {
        Assert.Equal(0.4, CubicCongestionController.C);
        Assert.Equal(0.7, CubicCongestionController.Beta);
    }

    [Fact]
    public void CongestionEvent_ReducesByBeta_AndComputesK()
    {
        var cc = new CubicCongestionController(Mss);
        Assert.Equal(12_000, cc.CongestionWindow);
        cc.OnCongestionEvent(T0, T0 + 100 * Ms);

        Assert.Equal(8400, cc.CongestionWindow);     // 0.7 × 12000
        Assert.Equal(8400, cc.SlowStartThreshold);
        Assert.Equal(12_000, cc.WMax);
        // K = ∛((W_max − cwnd_epoch) / C) in segments = ∛(3 / 0.4) = ∛7.5
        Assert.Equal(Math.Cbrt(7.5), cc.K, 9);
        Assert.False(cc.InSlowStart);
    }

    [Fact]
    public void WCubic_StartsAtReducedWindowAndReachesWMaxAtK()
    {
        var cc = new CubicCongestionController(Mss);
        cc.OnCongestionEvent(T0, T0 + 100 * Ms);
        Assert.Equal(8400, cc.WCubic(0), 6);
        Assert.Equal(12_000, cc.WCubic(cc.K), 6);
        // Concave below K, convex above, symmetric: W(K ± 1 s) = W_max ± C segments.
        Assert.Equal(12_000 - 0.4 * Mss, cc.WCubic(cc.K - 1), 6);
        Assert.Equal(12_000 + 0.4 * Mss, cc.WCubic(cc.K + 1), 6);
    }

    [Fact]
    public void FastConvergence_LowersWMaxWhenLossComesBeforePreviousMaximum()
    {
        var cc = new CubicCongestionController(Mss);
        long recoveryStart = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, recoveryStart);
        cc.OnCongestionEvent(recoveryStart + 1, recoveryStart + 200 * Ms);

        // cwnd 8400 < W_max 12000: W_max = 8400 × (1 + 0.7) / 2 = 7140; cwnd = 0.7 × 8400 = 5880.
        Assert.Equal(7140, cc.WMax, 6);
        Assert.Equal(5880, cc.CongestionWindow);
        Assert.Equal(Math.Cbrt((7140.0 - 5880) / Mss / 0.4), cc.K, 9);
    }

    [Fact]
    public void CongestionEvent_WithinRecoveryPeriod_ReducesOnlyOnce()
    {
        var cc = new CubicCongestionController(Mss);
        cc.OnCongestionEvent(T0, T0 + 100 * Ms);
        cc.OnCongestionEvent(T0 + 99 * Ms, T0 + 150 * Ms);
        Assert.Equal(8400, cc.CongestionWindow);
    }

    [Fact]
    public void CongestionEvent_NeverBelowMinimumWindow()
    {
        var cc = new CubicCongestionController(Mss);
        long now = T0;
        for (int i = 0; i < 10; i++)
        {
            now += 100 * Ms;
            cc.OnCongestionEvent(now - 1, now);
        }

        Assert.Equal(2 * Mss, cc.CongestionWindow);
    }

    [Fact]
    public void OneAck_InConcaveRegion_MovesTowardsWCubicOfTPlusRtt()
    {
        var rtt = new RttEstimator(100 * Ms);
        var cc = new CubicCongestionController(Mss);
        long epoch = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, epoch);
        double k = cc.K;
        long now = epoch + (long)(k * TimeSpan.TicksPerSecond);

        cc.OnPacketSent(now - 100 * Ms, Mss);
        cc.OnPacketAcked(now - 100 * Ms, Mss, now, rtt, appLimited: false);

        // RFC 9438 §4.2: target = W_cubic(t + RTT) (within [cwnd, 1.5 cwnd]); cwnd += (target − cwnd) / cwnd per segment.
        double t = (now - epoch) / (double)TimeSpan.TicksPerSecond;
        double target = 12_000 + 0.4 * Math.Pow(t + 0.1 - k, 3) * Mss;
        double expected = 8400 + (target - 8400) * Mss / 8400;
        Assert.Equal((long)expected, cc.CongestionWindow);
    }

    [Fact]
    public void LargeWindow_GrowthFollowsWCubic()
    {
        var rtt = new RttEstimator(100 * Ms);
        var cc = new CubicCongestionController(Mss);

        // Slow start to 1000 segments, then a loss.
        while (cc.CongestionWindow < 1000 * Mss)
        {
            cc.OnPacketSent(T0, Mss);
            cc.OnPacketAcked(T0, Mss, T0, rtt, false);
        }

        long wBefore = cc.CongestionWindow;
        long epoch = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, epoch);
        Assert.Equal((long)(wBefore * 0.7), cc.CongestionWindow);
        double k = Math.Cbrt(wBefore * 0.3 / Mss / 0.4);
        Assert.Equal(k, cc.K, 6);

        // One window acknowledged per 100 ms round trip for 2K seconds.
        var samples = RunRounds(cc, rtt, epoch, rounds: (int)(2 * k * 10));
        foreach ((double t, long w) in samples.Where((_, i) => i % 10 == 0)) _output.WriteLine($"t={t:F1} cwnd={w} wcubic={cc.WCubic(t):F0}");

        // The window tracks W_cubic: within 1% of W_cubic(t) (it aims at W_cubic(t + RTT)), far above Reno's ~0.53 segment per RTT.
        foreach ((double t, long w) in samples)
        {
            double wc = cc.WCubic(t);
            Assert.True(Math.Abs(w - wc) / wc < 0.01, $"t={t:F2}: cwnd {w}, W_cubic {wc:F0}");
        }

        // Concave then convex: the growth per round shrinks up to K and increases after it.
        (double _, long atHalfK) = samples.First(s => s.T >= k / 2);
        long renoEstimate = (long)(wBefore * 0.7 + AlphaCubic * Mss * k / 2 * 10);
        Assert.True(atHalfK > renoEstimate + 100 * Mss, $"cwnd {atHalfK} at K/2 should be far above the Reno estimate {renoEstimate}");
        double Growth(double from) => samples.First(s => s.T >= from + 1).Cwnd - samples.First(s => s.T >= from).Cwnd;
        Assert.True(Growth(0.5) > Growth(k - 1.5), "concave region: growth slows towards W_max");
        Assert.True(Growth(2 * k - 1.5) > Growth(k + 0.5), "convex region: growth accelerates after K");
    }

    [Fact]
    public void SmallWindowShortRtt_RenoFriendlyRegionDominates()
    {
        var rtt = new RttEstimator(100 * Ms);
        var cc = new CubicCongestionController(Mss);
        long epoch = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, epoch); // 12000 → 8400, K ≈ 1.96 s

        var samples = RunRounds(cc, rtt, epoch, rounds: 10);
        (double t, long w) = samples[^1];

        // W_est grows by α_cubic ≈ 0.53 segments per RTT (RFC 9438 §4.3): after 10 RTTs at least 0.85 × 10 × α segments,
        // while W_cubic(1 s) is still below W_max.
        double wCubic = cc.WCubic(t);
        Assert.True(wCubic < 12_000, $"W_cubic({t}) = {wCubic}");
        Assert.InRange(w, (long)(8400 + 0.85 * 10 * AlphaCubic * Mss), (long)(8400 + 10 * AlphaCubic * Mss) + 1);
        Assert.True(w > wCubic + Mss);
    }

    [Fact]
    public void RecoveryPeriod_AcksOfPacketsSentBeforeItDoNotGrowTheWindow()
    {
        var rtt = new RttEstimator(100 * Ms);
        var cc = new CubicCongestionController(Mss);
        long epoch = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, epoch);
        for (int i = 0; i < 20; i++)
        {
            cc.OnPacketSent(T0 + 50 * Ms, Mss);
            cc.OnPacketAcked(T0 + 50 * Ms, Mss, epoch + 3000 * Ms, rtt, false);
        }

        Assert.Equal(8400, cc.CongestionWindow);
    }

    [Fact]
    public void PersistentCongestion_CollapsesToMinimumWindowAndForgetsWMax()
    {
        var cc = new CubicCongestionController(Mss);
        cc.OnCongestionEvent(T0, T0 + 100 * Ms);
        cc.OnPersistentCongestion();
        Assert.Equal(2 * Mss, cc.CongestionWindow);
        Assert.Equal(0, cc.WMax);
        Assert.True(cc.InSlowStart); // ssthresh 8400 is kept
    }

    [Fact]
    public void AppLimited_AcksDoNotGrowTheWindow()
    {
        var rtt = new RttEstimator(100 * Ms);
        var cc = new CubicCongestionController(Mss);
        long epoch = T0 + 100 * Ms;
        cc.OnCongestionEvent(T0, epoch);
        for (int i = 0; i < 20; i++)
        {
            cc.OnPacketSent(epoch + 1, Mss);
            cc.OnPacketAcked(epoch + 1, Mss, epoch + 2000 * Ms, rtt, appLimited: true);
        }

        Assert.Equal(8400, cc.CongestionWindow);
    }

    private static List<(double T, long Cwnd)> RunRounds(CubicCongestionController cc, RttEstimator rtt, long epoch, int rounds)
    {
        var samples = new List<(double, long)>();
        long rttTicks = rtt.SmoothedRtt;
        for (int r = 1; r <= rounds; r++)
        {
            long now = epoch + r * rttTicks;
            long sent = now - rttTicks + 1; // after the recovery period started
            long n = cc.CongestionWindow / Mss;
            for (long i = 0; i < n; i++) cc.OnPacketSent(sent, Mss);
            for (long i = 0; i < n; i++) cc.OnPacketAcked(sent, Mss, now, rtt, false);
            samples.Add(((now - epoch) / (double)TimeSpan.TicksPerSecond, cc.CongestionWindow));
        }

        return samples;
    }
}
