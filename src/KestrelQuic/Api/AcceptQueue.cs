namespace KestrelQuic;

/// <summary>
/// The queue behind an accept call (inbound streams): writers never wait, readers wait in arrival order, and
/// completing it fails every waiting and later read with the completion error once the items are taken. It costs a
/// few dozen bytes while empty: every idle connection holds one with a pending accept, where a bounded
/// <c>Channel</c> kept about 450 bytes of reader and writer operations per connection.
/// </summary>
internal sealed class AcceptQueue<T>
    where T : class
{
    private readonly Lock _sync = new();
    private Queue<T>? _items;
    private Queue<Waiter>? _waiters;
    private Exception? _error;
    private bool _completed;

    /// <summary>Adds <paramref name="item"/>, handing it to the oldest waiting reader if any. False once completed.</summary>
    public bool TryWrite(T item)
    {
        while (true)
        {
            Waiter? waiter;
            lock (_sync)
            {
                if (_completed) return false;
                if (_waiters is null || !_waiters.TryDequeue(out waiter))
                {
                    (_items ??= new Queue<T>(4)).Enqueue(item);
                    return true;
                }
            }

            // A waiter cancelled at this very moment refuses the item: offer it to the next one.
            if (waiter.TrySetResult(item)) return true;
        }
    }

    /// <summary>Takes the next item, waiting if there is none; throws the completion error once completed and empty.</summary>
    public ValueTask<T> ReadAsync(CancellationToken cancellationToken)
    {
        Waiter waiter;
        lock (_sync)
        {
            if (_items is { Count: > 0 } items) return ValueTask.FromResult(items.Dequeue());
            if (_completed) return ValueTask.FromException<T>(_error ?? new InvalidOperationException("The queue is complete."));
            if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled<T>(cancellationToken);
            waiter = new Waiter();
            Queue<Waiter> waiters = _waiters ??= new Queue<Waiter>(1);
            // Readers that gave up (cancelled) are dropped here, so a loop of cancelled accepts does not pile up.
            while (waiters.TryPeek(out Waiter? head) && head.Task.IsCompleted) waiters.Dequeue();
            waiters.Enqueue(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (s, ct) => ((Waiter)s!).TrySetCanceled(ct), waiter);
        }

        return new ValueTask<T>(waiter.Task);
    }

    /// <summary>No more items: waiting readers fail with <paramref name="error"/> (and so do reads after the queued items).</summary>
    public void TryComplete(Exception? error)
    {
        Queue<Waiter>? waiters;
        lock (_sync)
        {
            if (_completed) return;
            _completed = true;
            _error = error;
            waiters = _waiters;
            _waiters = null;
        }

        if (waiters is null) return;
        Exception failure = error ?? new InvalidOperationException("The queue is complete.");
        while (waiters.TryDequeue(out Waiter? w)) w.TrySetException(failure);
    }

    private sealed class Waiter() : TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public CancellationTokenRegistration Registration { get; set; }

        public new bool TrySetResult(T item)
        {
            if (!base.TrySetResult(item)) return false;
            Registration.Dispose();
            return true;
        }
    }
}
