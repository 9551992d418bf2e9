using KestrelQuic.Recovery;

namespace KestrelQuic.Tests.Recovery;

/// <summary>
/// Pacing (RFC 9002 §7.7): packets are spread at N · cwnd / smoothed_rtt with N = 1.25, i.e. one 1200-byte packet
/// every smoothed_rtt · size / cwnd / N; bursts are bounded by the pacer's allowance (10 datagrams for small windows).
/// </summary>
public sealed class PacerTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long T0 = 1000 * Ms;
    private const int Size = 1200;
    private const long Srtt = 100 * Ms;

    /// <summary>Sends packets at <paramref name="now"/> while allowed; returns how many went out.</summary>
    private static int SendBurst(Pacer pacer, long now, long cwnd, int max = 1000)
    {
        int sent = 0;
        while (sent < max && pacer.GetNextSendTime(now, cwnd, Srtt, Size) is null)
        {
            pacer.OnPacketSent(now, Size, cwnd, Srtt);
            sent++;
        }

        return sent;
    }

    [Fact]
    public void InitialBurst_IsTenDatagrams_ThenNextSendTimeFollowsRfcInterval()
    {
        var pacer = new Pacer(Size);
        Assert.Equal(10, SendBurst(pacer, T0, 12_000));

        // interval = smoothed_rtt × packet_size / cwnd / N = 100 ms × 1200 / 12000 / 1.25 = 8 ms.
        Assert.Equal(T0 + 8 * Ms, pacer.GetNextSendTime(T0, 12_000, Srtt, Size));
    }

    [Fact]
    public void Refill_AllowsOnePacketPerInterval()
    {
        var pacer = new Pacer(Size);
        SendBurst(pacer, T0, 12_000);
        Assert.NotNull(pacer.GetNextSendTime(T0 + 8 * Ms - 1, 12_000, Srtt, Size));

        long now = T0 + 8 * Ms;
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(1, SendBurst(pacer, now, 12_000));
            Assert.Equal(now + 8 * Ms, pacer.GetNextSendTime(now, 12_000, Srtt, Size));
            now += 8 * Ms;
        }
    }

    [Fact]
    public void PartialTokens_WaitOnlyForTheMissingBytes()
    {
        var pacer = new Pacer(Size);
        SendBurst(pacer, T0, 12_000);
        // After 4 ms half a packet's worth of tokens accumulated: 4 ms more to go.
        Assert.Equal(T0 + 8 * Ms, pacer.GetNextSendTime(T0 + 4 * Ms, 12_000, Srtt, Size));
    }

    [Fact]
    public void Rate_ScalesWithCongestionWindow()
    {
        var pacer = new Pacer(Size);
        SendBurst(pacer, T0, 24_000, max: 10);
        // 100 ms × 1200 / 24000 / 1.25 = 4 ms.
        Assert.Equal(T0 + 4 * Ms, pacer.GetNextSendTime(T0, 24_000, Srtt, Size));
    }

    [Theory]
    [InlineData(12_000L, 10)]    // allowance: 10 datagrams
    [InlineData(1_200_000L, 16)] // min(cwnd, 64 datagrams) / 4 = 19200 bytes
    public void AfterIdle_BurstIsCappedByAllowance(long cwnd, int expectedBurst)
    {
        var pacer = new Pacer(Size);
        SendBurst(pacer, T0, cwnd, max: 5);

        // Ten idle seconds would refill far more than a window at this rate; the bucket is capped.
        long later = T0 + 10_000 * Ms;
        Assert.Equal(expectedBurst, SendBurst(pacer, later, cwnd));
        Assert.NotNull(pacer.GetNextSendTime(later, cwnd, Srtt, Size));
    }

    [Fact]
    public void NeverReturnsATimeInThePast()
    {
        var pacer = new Pacer(Size);
        SendBurst(pacer, T0, 12_000);
        long? next = pacer.GetNextSendTime(T0, 12_000, smoothedRtt: 1, Size); // absurdly fast rate
        Assert.True(next is null || next > T0);
    }
}
