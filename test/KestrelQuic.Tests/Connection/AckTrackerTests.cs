using KestrelQuic.Connection;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Connection;

/// <summary>When and what to acknowledge: RFC 9000 §13.2.</summary>
public sealed class AckTrackerTests
{
    private const long Ms = TimeSpan.TicksPerMillisecond;
    private const long T0 = 1000 * Ms;
    private const long MaxAckDelay = 25 * Ms;

    [Fact]
    public void Initially_NothingPending()
    {
        var t = new AckTracker();
        Assert.Equal(-1, t.LargestReceived);
        Assert.False(t.AckPending);
        Assert.False(t.HasUnacknowledged);
        Assert.Equal(long.MaxValue, t.AckDeadline);
        Assert.False(t.ShouldSendAck(long.MaxValue - 1));
    }

    [Fact]
    public void SingleAckElicitingPacket_AckDueWithinMaxAckDelay()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, ackEliciting: true, T0, MaxAckDelay, immediate: false);

        Assert.True(t.AckPending);
        Assert.Equal(T0 + MaxAckDelay, t.AckDeadline);
        Assert.False(t.ShouldSendAck(T0));
        Assert.False(t.ShouldSendAck(T0 + MaxAckDelay - 1));
        Assert.True(t.ShouldSendAck(T0 + MaxAckDelay));
        Assert.Equal(0, t.LargestReceived);
        Assert.Equal(T0, t.LargestReceivedTime);
    }

    [Fact]
    public void DeadlineIsNotPushedBackByLaterPackets()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, true, T0, MaxAckDelay, false);
        t.OnPacketReceived(1, false, T0 + 10 * Ms, MaxAckDelay, false); // non-ack-eliciting: no change
        Assert.Equal(T0 + MaxAckDelay, t.AckDeadline);
        Assert.Equal(T0 + 10 * Ms, t.LargestReceivedTime);
    }

    [Fact]
    public void EverySecondAckElicitingPacket_AckImmediately()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, true, T0, MaxAckDelay, false);
        t.OnPacketReceived(1, true, T0 + 1 * Ms, MaxAckDelay, false);

        Assert.Equal(T0 + 1 * Ms, t.AckDeadline);
        Assert.True(t.ShouldSendAck(T0 + 1 * Ms));

        // After the ACK went out the count restarts: the next single packet waits again.
        t.OnAckSent();
        Assert.False(t.AckPending);
        Assert.False(t.HasUnacknowledged);
        t.OnPacketReceived(2, true, T0 + 2 * Ms, MaxAckDelay, false);
        Assert.False(t.ShouldSendAck(T0 + 2 * Ms));
        Assert.Equal(T0 + 2 * Ms + MaxAckDelay, t.AckDeadline);
        t.OnPacketReceived(3, true, T0 + 3 * Ms, MaxAckDelay, false);
        Assert.True(t.ShouldSendAck(T0 + 3 * Ms));
    }

    [Fact]
    public void NonAckElicitingPackets_NeverTriggerAnAckOnTheirOwn()
    {
        var t = new AckTracker();
        for (int pn = 0; pn < 10; pn++) t.OnPacketReceived(pn, ackEliciting: false, T0, MaxAckDelay, false);
        Assert.False(t.AckPending);
        Assert.False(t.ShouldSendAck(T0 + 10_000 * Ms));
        Assert.True(t.HasUnacknowledged); // but they are reported when an ACK is sent anyway
        Assert.Equal(9, t.LargestReceived);
    }

    [Fact]
    public void HandshakeSpaces_ImmediateFlag_AcksRightAway()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, true, T0, MaxAckDelay, immediate: true);
        Assert.True(t.ShouldSendAck(T0));
        Assert.Equal(T0, t.AckDeadline);
    }

    [Fact]
    public void GapAboveLargest_AcksImmediately()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, true, T0, MaxAckDelay, false);
        t.OnAckSent();
        t.OnPacketReceived(2, true, T0 + 5 * Ms, MaxAckDelay, false); // packet 1 missing
        Assert.True(t.ShouldSendAck(T0 + 5 * Ms));
    }

    [Fact]
    public void PacketBelowLargest_AcksImmediately()
    {
        var t = new AckTracker();
        t.OnPacketReceived(5, true, T0, MaxAckDelay, false);
        t.OnAckSent();
        t.OnPacketReceived(3, true, T0 + 5 * Ms, MaxAckDelay, false); // reordered
        Assert.True(t.ShouldSendAck(T0 + 5 * Ms));
        Assert.Equal(5, t.LargestReceived);
        Assert.Equal(T0, t.LargestReceivedTime); // the largest did not change
    }

    [Fact]
    public void InOrderPacket_AfterAck_IsNotImmediate()
    {
        var t = new AckTracker();
        t.OnPacketReceived(0, true, T0, MaxAckDelay, false);
        t.OnAckSent();
        t.OnPacketReceived(1, true, T0 + 5 * Ms, MaxAckDelay, false);
        Assert.False(t.ShouldSendAck(T0 + 5 * Ms));
    }

    [Fact]
    public void Duplicates_AreDetected()
    {
        var t = new AckTracker();
        Assert.False(t.IsDuplicate(0));
        t.OnPacketReceived(0, true, T0, MaxAckDelay, false);
        t.OnPacketReceived(1, true, T0, MaxAckDelay, false);
        t.OnPacketReceived(4, true, T0, MaxAckDelay, false);

        Assert.True(t.IsDuplicate(0));
        Assert.True(t.IsDuplicate(1));
        Assert.True(t.IsDuplicate(4));
        Assert.False(t.IsDuplicate(2));
        Assert.False(t.IsDuplicate(3));
        Assert.False(t.IsDuplicate(5));
        Assert.Equal(new[] { new ValueRange(0, 2), new ValueRange(4, 5) }, t.Received.AsSpan().ToArray());
    }

    [Fact]
    public void AckOfAck_RaisesFloor_OlderPacketsCountAsDuplicates()
    {
        var t = new AckTracker();
        foreach (int pn in new[] { 0, 1, 2, 5, 6, 9 }) t.OnPacketReceived(pn, true, T0, MaxAckDelay, false);

        // The peer acknowledged our packet carrying an ACK whose largest was 6 (RFC 9000 §13.2.4).
        t.OnAckAcknowledged(6);
        Assert.Equal(7, t.Floor);
        Assert.Equal(new[] { new ValueRange(9, 10) }, t.Received.AsSpan().ToArray());
        Assert.True(t.IsDuplicate(3)); // below the floor: never processed again
        Assert.False(t.IsDuplicate(7));
        Assert.True(t.IsDuplicate(9));

        t.OnAckAcknowledged(2); // stale: the floor never goes down
        Assert.Equal(7, t.Floor);
    }

    [Fact]
    public void Ranges_AreCappedAtMaxRanges_KeepingTheNewest()
    {
        var t = new AckTracker();
        int ranges = AckTracker.MaxRanges + 10;
        for (int i = 0; i < ranges; i++) t.OnPacketReceived(2L * i, false, T0, MaxAckDelay, false); // every other packet: one range each

        Assert.Equal(AckTracker.MaxRanges, t.Received.Count);
        Assert.Equal(2L * (ranges - 1), t.LargestReceived);
        Assert.Equal(2L * 10, t.Received.Min); // the 10 oldest ranges were dropped
        Assert.Equal(2L * (ranges - 1) + 1, t.Received.Max);
        Assert.True(t.IsDuplicate(2L * (ranges - 1)));
    }

    [Fact]
    public void Reset_ForgetsEverything()
    {
        var t = new AckTracker();
        t.OnPacketReceived(3, true, T0, MaxAckDelay, false);
        t.OnAckAcknowledged(3);
        t.Reset();
        Assert.Equal(-1, t.LargestReceived);
        Assert.Equal(0, t.Floor);
        Assert.True(t.Received.IsEmpty);
        Assert.False(t.AckPending);
        Assert.False(t.IsDuplicate(3));
    }
}
