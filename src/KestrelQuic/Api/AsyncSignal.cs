using System.Threading.Tasks.Sources;

namespace KestrelQuic;

/// <summary>
/// A reusable, allocation-free wake-up for one waiter at a time (a stream's reader or writer). <see cref="Set"/> before
/// the wait makes the next wait complete at once. Continuations never run inline under the endpoint lock.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly object _sync = new();
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private bool _signaled;
    private bool _waiting;
    private CancellationTokenRegistration _registration;

    /// <summary>Waits until <see cref="Set"/> (or returns at once if it was set since the last wait).</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        lock (_sync)
        {
            if (_signaled)
            {
                _signaled = false;
                return ValueTask.CompletedTask;
            }

            if (_waiting) throw new InvalidOperationException("Another operation of this kind is already pending.");
            cancellationToken.ThrowIfCancellationRequested();
            _waiting = true;
            _core.Reset();
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(static (s, ct) => ((AsyncSignal)s!).Cancel(ct), this);
            }

            return new ValueTask(this, _core.Version);
        }
    }

    public void Set()
    {
        lock (_sync)
        {
            if (!_waiting)
            {
                _signaled = true;
                return;
            }

            _waiting = false;
            // Unregister, not Dispose: Dispose waits for a cancellation callback already running, and that callback
            // waits for _sync, which this thread holds (a deadlock that also froze the endpoint lock held by callers).
            _registration.Unregister();
            _core.SetResult(true);
        }
    }

    private void Cancel(CancellationToken cancellationToken)
    {
        lock (_sync)
        {
            if (!_waiting) return;
            _waiting = false;
            _core.SetException(new OperationCanceledException(cancellationToken));
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _core.OnCompleted(continuation, state, token, flags);
}
