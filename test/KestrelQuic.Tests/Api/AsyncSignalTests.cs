namespace KestrelQuic.Tests.Api;

/// <summary>The one-waiter wake-up behind QuicStream reads and writes, under cancellation racing a wake-up.</summary>
public sealed class AsyncSignalTests
{
    [Fact]
    public void CancelRacingSet_NeverDeadlocks_EachWaitEndsOneWayOrTheOther()
    {
        // Set (called under the endpoint lock) used to dispose the cancellation registration while holding the
        // signal's lock; a cancellation callback running at that moment waited for the same lock, and disposing a
        // registration waits for its running callback: both threads (and the endpoint) hung for good.
        const int Iterations = 100_000;
        var signal = new AsyncSignal();
        using var barrier = new Barrier(3);
        CancellationTokenSource? cts = null;
        bool stop = false;
        int spin = 0;
        var threads = new[]
        {
            new Thread(() => Race(() => cts!.Cancel())) { IsBackground = true },
            // The wake-up starts a little later each iteration, sweeping across the moment the callback runs.
            new Thread(() => Race(() =>
            {
                Thread.SpinWait(spin);
                signal.Set();
            })) { IsBackground = true },
        };
        foreach (Thread t in threads) t.Start();

        int cancelled = 0, woken = 0;
        try
        {
            for (int i = 0; i < Iterations; i++)
            {
                cts = new CancellationTokenSource();
                spin = i % 400;
                ValueTask wait = signal.WaitAsync(cts.Token);
                barrier.SignalAndWait(); // go
                Assert.True(barrier.SignalAndWait(TimeSpan.FromSeconds(10)), $"deadlock at iteration {i}");
                Assert.True(wait.IsCompleted);
                if (wait.AsTask().IsCanceled)
                {
                    cancelled++;

                    // The Set that lost the race is kept for the next wait.
                    Assert.True(signal.WaitAsync(CancellationToken.None).IsCompleted);
                }
                else
                {
                    woken++;
                }

                cts.Dispose();
            }
        }
        finally
        {
            stop = true;
            barrier.SignalAndWait(TimeSpan.FromSeconds(1));
        }

        Assert.Equal(Iterations, cancelled + woken);
        Assert.True(cancelled > 0 && woken > 0, $"the race was never close: {cancelled} cancelled, {woken} woken");

        void Race(Action action)
        {
            while (true)
            {
                barrier.SignalAndWait();
                if (Volatile.Read(ref stop)) return;
                action();
                barrier.SignalAndWait();
            }
        }
    }
}
