using KestrelQuic.FlowControl;

namespace KestrelQuic.Tests.FlowControl;

public sealed class FlowControllerTests
{
    private const long Millisecond = TimeSpan.TicksPerMillisecond;

    [Fact]
    public void Send_UpdateMax_IgnoresDecreases_AndTracksAvailable()
    {
        var flow = new SendFlowController(100);
        Assert.False(flow.UpdateMax(100));
        Assert.False(flow.UpdateMax(50));
        Assert.Equal(100, flow.MaxData);
        flow.Consume(60);
        Assert.Equal(40, flow.Available);
        Assert.True(flow.UpdateMax(150));
        Assert.Equal(90, flow.Available);
        Assert.Throws<InvalidOperationException>(() => flow.Consume(91));
    }

    [Fact]
    public void Send_Blocked_OncePerLimit()
    {
        var flow = new SendFlowController(100);
        Assert.False(flow.ShouldSendBlocked(out _));
        flow.Consume(100);
        Assert.True(flow.ShouldSendBlocked(out long limit));
        Assert.Equal(100, limit);
        flow.OnBlockedSent(100);
        Assert.False(flow.ShouldSendBlocked(out _));
        flow.OnBlockedLost(100);
        Assert.True(flow.ShouldSendBlocked(out _));
        flow.OnBlockedSent(100);
        flow.UpdateMax(200);
        Assert.False(flow.ShouldSendBlocked(out _));
        flow.Consume(100);
        Assert.True(flow.ShouldSendBlocked(out limit));
        Assert.Equal(200, limit);
        flow.OnBlockedLost(100); // stale loss: no effect on the current limit's state
        flow.OnBlockedSent(200);
        Assert.False(flow.ShouldSendBlocked(out _));
    }

    [Fact]
    public void Receive_BeyondLimit_IsRejected_WithoutSideEffects()
    {
        var flow = new ReceiveFlowController(1000, 4000);
        Assert.True(flow.TryReceive(600));
        Assert.True(flow.TryReceive(300)); // lower offset: no change
        Assert.Equal(600, flow.HighestReceived);
        Assert.False(flow.TryReceive(1001));
        Assert.Equal(600, flow.HighestReceived);
        Assert.True(flow.TryReceiveDelta(400));
        Assert.False(flow.TryReceiveDelta(1));
        Assert.Equal(1000, flow.HighestReceived);
    }

    [Fact]
    public void Receive_UpdateWhenLessThanHalfTheWindowRemains()
    {
        var flow = new ReceiveFlowController(1000, 1000);
        flow.TryReceive(1000);
        flow.OnConsumed(500);
        Assert.False(flow.ShouldSendUpdate(0, Millisecond, out _)); // exactly half remains
        flow.OnConsumed(1);
        Assert.True(flow.ShouldSendUpdate(0, Millisecond, out long max));
        Assert.Equal(1501, max);
        flow.OnUpdateSent(max, 0);
        Assert.Equal(1501, flow.MaxData);
        Assert.False(flow.ShouldSendUpdate(0, Millisecond, out _));
        flow.OnUpdateLost();
        Assert.True(flow.ShouldSendUpdate(0, Millisecond, out max));
        Assert.Equal(1501, max);
        flow.OnUpdateSent(max, 0);
        Assert.False(flow.ShouldSendUpdate(0, Millisecond, out _));
    }

    [Fact]
    public void AutoTuning_FastReader_GrowsWindow_UpToMaxOnly()
    {
        const long rtt = 50 * Millisecond;
        var flow = new ReceiveFlowController(16_384, 1_048_576);
        long now = 0;
        long received = 0;
        var windows = new List<long>();
        for (int i = 0; i < 200; i++)
        {
            // The sender fills the whole window every RTT/2 and the application reads it at once.
            now += rtt / 2;
            received = flow.MaxData;
            Assert.True(flow.TryReceive(received));
            flow.OnConsumed(received - flow.Consumed);
            Assert.True(flow.ShouldSendUpdate(now, rtt, out long max));
            Assert.True(max > flow.MaxData);
            flow.OnUpdateSent(max, now);
            windows.Add(flow.Window);
            Assert.True(flow.Window <= flow.MaxWindow);
            Assert.True(flow.MaxData - flow.Consumed <= flow.MaxWindow);
        }

        Assert.Equal(16_384, windows[0]); // first update: no history, no growth
        Assert.Equal(32_768, windows[1]);
        Assert.Equal(1_048_576, windows[^1]);
        Assert.Equal(1_048_576, windows.Max());
    }

    [Fact]
    public void AutoTuning_SlowReader_KeepsWindow()
    {
        const long rtt = 50 * Millisecond;
        var flow = new ReceiveFlowController(16_384, 1_048_576);
        long now = 0;
        for (int i = 0; i < 100; i++)
        {
            // The application consumes a window's worth only every second: updates are RTT-independent.
            now += 1000 * Millisecond;
            flow.TryReceive(flow.MaxData);
            flow.OnConsumed(flow.MaxData - flow.Consumed);
            Assert.True(flow.ShouldSendUpdate(now, rtt, out long max));
            flow.OnUpdateSent(max, now);
            Assert.Equal(16_384, flow.Window);
        }
    }

    [Fact]
    public void AutoTuning_GrowsAtMostOncePerUpdate_EvenIfPolledRepeatedly()
    {
        const long rtt = 100 * Millisecond;
        var flow = new ReceiveFlowController(1000, 100_000);
        flow.TryReceive(1000);
        flow.OnConsumed(1000);
        Assert.True(flow.ShouldSendUpdate(0, rtt, out long max));
        flow.OnUpdateSent(max, 0);
        flow.TryReceive(2000);
        flow.OnConsumed(1000);
        for (int i = 0; i < 10; i++)
        {
            Assert.True(flow.ShouldSendUpdate(10 * Millisecond, rtt, out max));
        }

        Assert.Equal(2000, flow.Window);
        Assert.Equal(4000, max);
    }

    [Fact]
    public void EnsureWindowAtLeast_IsBoundedByMaxWindow()
    {
        var flow = new ReceiveFlowController(1000, 5000);
        flow.EnsureWindowAtLeast(500);
        Assert.Equal(1000, flow.Window);
        flow.EnsureWindowAtLeast(3000);
        Assert.Equal(3000, flow.Window);
        flow.EnsureWindowAtLeast(1_000_000);
        Assert.Equal(5000, flow.Window);
        flow.TryReceive(1000);
        flow.OnConsumed(1000);
        Assert.True(flow.ShouldSendUpdate(0, 0, out long max));
        Assert.Equal(6000, max);
    }
}
