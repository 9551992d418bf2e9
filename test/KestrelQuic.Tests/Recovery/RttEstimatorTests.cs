using KestrelQuic.Recovery;

namespace KestrelQuic.Tests.Recovery;

/// <summary>RTT estimation, RFC 9002 §5 (values in ticks of 100 ns; 1 ms = 10 000 ticks).</summary>
public sealed class RttEstimatorTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long MaxAckDelay = 25 * Ms;

    [Fact]
    public void BeforeAnySample_UsesInitialRtt()
    {
        // RFC 9002 §5.3 / A.4: smoothed_rtt = kInitialRtt, rttvar = kInitialRtt / 2, min_rtt = 0.
        var rtt = new RttEstimator(333 * Ms);
        Assert.False(rtt.HasSample);
        Assert.Equal(333 * Ms, rtt.SmoothedRtt);
        Assert.Equal(1_665_000, rtt.RttVariance); // 166.5 ms
        Assert.Equal(0, rtt.MinRtt);
        Assert.Equal(0, rtt.LatestRtt);
    }

    [Fact]
    public void FirstSample_SetsSmoothedToSampleAndVarianceToHalf_IgnoringAckDelay()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, ackDelay: 10 * Ms, handshakeConfirmed: true, MaxAckDelay);
        Assert.True(rtt.HasSample);
        Assert.Equal(100 * Ms, rtt.LatestRtt);
        Assert.Equal(100 * Ms, rtt.MinRtt);
        Assert.Equal(100 * Ms, rtt.SmoothedRtt);
        Assert.Equal(50 * Ms, rtt.RttVariance);
    }

    [Fact]
    public void SubsequentSample_SubtractsAckDelay_AndAppliesEwma()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        rtt.UpdateRtt(120 * Ms, ackDelay: 10 * Ms, handshakeConfirmed: true, MaxAckDelay);

        // adjusted = 120 - 10 = 110 (110 >= min_rtt 100 + ack delay 10 holds)
        // rttvar = 3/4 * 50 + 1/4 * |100 - 110| = 40; smoothed = 7/8 * 100 + 1/8 * 110 = 101.25
        Assert.Equal(120 * Ms, rtt.LatestRtt);
        Assert.Equal(100 * Ms, rtt.MinRtt);
        Assert.Equal(40 * Ms, rtt.RttVariance);
        Assert.Equal(1_012_500, rtt.SmoothedRtt);
    }

    [Fact]
    public void AckDelay_CappedByMaxAckDelay_OnceHandshakeConfirmed()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        rtt.UpdateRtt(200 * Ms, ackDelay: 50 * Ms, handshakeConfirmed: true, MaxAckDelay);

        // ack_delay = min(50, 25) = 25 → adjusted 175; rttvar = (150 + 75) / 4 = 56.25; smoothed = (700 + 175) / 8 = 109.375
        Assert.Equal(562_500, rtt.RttVariance);
        Assert.Equal(1_093_750, rtt.SmoothedRtt);
    }

    [Fact]
    public void AckDelay_NotCappedBeforeHandshakeConfirmed()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, false, MaxAckDelay);
        rtt.UpdateRtt(200 * Ms, ackDelay: 50 * Ms, handshakeConfirmed: false, MaxAckDelay);

        // RFC 9002 §5.3: max_ack_delay applies only after confirmation → adjusted = 150.
        // rttvar = (150 + 50) / 4 = 50; smoothed = (700 + 150) / 8 = 106.25
        Assert.Equal(50 * Ms, rtt.RttVariance);
        Assert.Equal(1_062_500, rtt.SmoothedRtt);
    }

    [Fact]
    public void AckDelay_NotSubtractedWhenResultWouldFallBelowMinRtt()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        rtt.UpdateRtt(105 * Ms, ackDelay: 10 * Ms, handshakeConfirmed: true, MaxAckDelay);

        // 105 < min_rtt 100 + 10: adjusted_rtt stays 105.
        // rttvar = (150 + 5) / 4 = 38.75; smoothed = (700 + 105) / 8 = 100.625
        Assert.Equal(387_500, rtt.RttVariance);
        Assert.Equal(1_006_250, rtt.SmoothedRtt);
    }

    [Fact]
    public void MinRtt_TracksLatestRttWithoutAckDelayAdjustment()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        rtt.UpdateRtt(90 * Ms, ackDelay: 20 * Ms, handshakeConfirmed: true, MaxAckDelay);

        // min_rtt uses latest_rtt (90), not latest_rtt - ack_delay (70) (RFC 9002 §5.2).
        Assert.Equal(90 * Ms, rtt.MinRtt);
        // 90 < 90 + 20, so the ack delay is not subtracted: smoothed = (700 + 90) / 8 = 98.75
        Assert.Equal(987_500, rtt.SmoothedRtt);

        rtt.UpdateRtt(150 * Ms, 0, true, MaxAckDelay);
        Assert.Equal(90 * Ms, rtt.MinRtt); // never increases
    }

    [Fact]
    public void PtoDuration_IsSmoothedPlusFourVariancePlusMaxAckDelay()
    {
        var rtt = new RttEstimator(333 * Ms);
        // Initial: 333 + 4 * 166.5 = 999 ms.
        Assert.Equal(999 * Ms, rtt.GetPtoDuration(includeMaxAckDelay: false, MaxAckDelay));
        Assert.Equal(1024 * Ms, rtt.GetPtoDuration(includeMaxAckDelay: true, MaxAckDelay));

        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        Assert.Equal(300 * Ms, rtt.GetPtoDuration(false, MaxAckDelay));
        Assert.Equal(325 * Ms, rtt.GetPtoDuration(true, MaxAckDelay));
    }

    [Fact]
    public void PtoDuration_VarianceTermIsAtLeastGranularity()
    {
        var rtt = new RttEstimator(333 * Ms);
        for (int i = 0; i < 30; i++) rtt.UpdateRtt(10 * Ms, 0, true, MaxAckDelay);

        Assert.Equal(10 * Ms, rtt.SmoothedRtt);
        Assert.True(4 * rtt.RttVariance < RttEstimator.Granularity, $"rttvar {rtt.RttVariance}");
        // kGranularity = 1 ms (RFC 9002 §6.1.2): PTO = 10 + max(4·rttvar, 1) = 11 ms.
        Assert.Equal(1 * Ms, RttEstimator.Granularity);
        Assert.Equal(11 * Ms, rtt.GetPtoDuration(false, MaxAckDelay));
    }

    [Fact]
    public void Reset_ForgetsSamples()
    {
        var rtt = new RttEstimator(333 * Ms);
        rtt.UpdateRtt(100 * Ms, 0, true, MaxAckDelay);
        rtt.Reset();
        Assert.False(rtt.HasSample);
        Assert.Equal(333 * Ms, rtt.SmoothedRtt);
        Assert.Equal(1_665_000, rtt.RttVariance);
        Assert.Equal(0, rtt.MinRtt);

        // The next sample is a first sample again.
        rtt.UpdateRtt(40 * Ms, 0, true, MaxAckDelay);
        Assert.Equal(40 * Ms, rtt.SmoothedRtt);
        Assert.Equal(20 * Ms, rtt.RttVariance);
        Assert.Equal(40 * Ms, rtt.MinRtt);
    }
}
