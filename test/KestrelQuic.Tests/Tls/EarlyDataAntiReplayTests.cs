using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Tls;

public sealed class EarlyDataAntiReplayTests
{
    private static byte[] Ticket(int i) => BitConverter.GetBytes(i).Concat(new byte[40]).ToArray();

    [Fact]
    public void SecondUseOfATicket_IsAReplay()
    {
        var register = new EarlyDataAntiReplay();
        Assert.Equal(AntiReplayResult.Fresh, register.TryRecord(Ticket(1), expiresUnixMilliseconds: 10_000, nowUnixMilliseconds: 0));
        Assert.Equal(AntiReplayResult.Replay, register.TryRecord(Ticket(1), 10_000, 5_000));
        Assert.Equal(AntiReplayResult.Fresh, register.TryRecord(Ticket(2), 10_000, 5_000));
        Assert.Equal(2, register.Accepted);
        Assert.Equal(1, register.ReplaysRejected);
    }

    [Fact]
    public void Full_RejectsUntilTicketsExpire()
    {
        var register = new EarlyDataAntiReplay(capacity: 3);
        for (int i = 0; i < 3; i++) Assert.Equal(AntiReplayResult.Fresh, register.TryRecord(Ticket(i), 1_000 + i, 0));

        // Full of unexpired tickets: reject, and never forget one (its replay is still refused).
        Assert.Equal(AntiReplayResult.Full, register.TryRecord(Ticket(10), 5_000, 500));
        Assert.Equal(AntiReplayResult.Replay, register.TryRecord(Ticket(0), 1_000, 999));
        Assert.Equal(3, register.Count);

        // The first ticket expired (the server no longer accepts it at all): its slot is reused.
        Assert.Equal(AntiReplayResult.Fresh, register.TryRecord(Ticket(10), 5_000, 1_000));
        Assert.Equal(3, register.Count);
        Assert.Equal(AntiReplayResult.Replay, register.TryRecord(Ticket(10), 5_000, 1_000));
        Assert.Equal(1, register.RejectedFull);
    }

    [Fact]
    public void ExpiredEntries_ArePruned()
    {
        var register = new EarlyDataAntiReplay(capacity: 100);
        for (int i = 0; i < 100; i++) register.TryRecord(Ticket(i), 100 + i, 0);
        Assert.Equal(100, register.Count);
        register.TryRecord(Ticket(1000), 10_000, 150);
        Assert.Equal(50, register.Count); // 0..50 expired at 100..150, plus the new one
    }
}
