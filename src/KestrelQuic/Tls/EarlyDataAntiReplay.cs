using System.Buffers.Binary;
using System.Security.Cryptography;

namespace KestrelQuic.Tls;

/// <summary>Outcome of <see cref="EarlyDataAntiReplay.TryRecord"/>.</summary>
internal enum AntiReplayResult
{
    /// <summary>First use of the ticket for 0-RTT: accept the early data.</summary>
    Fresh,

    /// <summary>The ticket's early data was accepted before: a replay (or a client reusing a ticket).</summary>
    Replay,

    /// <summary>The register is full of unexpired tickets: reject rather than forget one.</summary>
    Full,
}

/// <summary>
/// A server-wide strike register that makes session tickets single-use for 0-RTT (RFC 8446 §8.1, RFC 9001 §9.2):
/// a ticket's early data is accepted at most once. Each ticket is remembered until it expires, after which the
/// ticket itself is refused, so forgetting it then cannot let a replay through. Memory is bounded by
/// <see cref="Capacity"/>; when every slot holds an unexpired ticket, 0-RTT is rejected (the handshake continues
/// in 1-RTT) rather than an entry being dropped. Thread-safe; reads no clock (the caller passes the time).
/// </summary>
internal sealed class EarlyDataAntiReplay
{
    /// <summary>Default number of tickets remembered (about 60 bytes each).</summary>
    public const int DefaultCapacity = 100_000;

    private readonly Lock _lock = new();
    private readonly HashSet<UInt128> _seen = new();
    private readonly PriorityQueue<UInt128, long> _expiry = new();
    private long _accepted;
    private long _replays;
    private long _full;

    public EarlyDataAntiReplay(int capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    /// <summary>Most tickets remembered at once.</summary>
    public int Capacity { get; }

    /// <summary>Tickets remembered now (expired ones are dropped lazily).</summary>
    public int Count
    {
        get
        {
            lock (_lock) return _seen.Count;
        }
    }

    /// <summary>0-RTT attempts recorded as fresh.</summary>
    public long Accepted => Volatile.Read(ref _accepted);

    /// <summary>0-RTT attempts rejected because the ticket was used before.</summary>
    public long ReplaysRejected => Volatile.Read(ref _replays);

    /// <summary>0-RTT attempts rejected because the register was full.</summary>
    public long RejectedFull => Volatile.Read(ref _full);

    /// <summary>
    /// Records the use of <paramref name="ticket"/> (the PSK identity) for 0-RTT. <paramref name="expiresUnixMilliseconds"/> is
    /// when the server stops accepting the ticket at all; <paramref name="nowUnixMilliseconds"/> the current time on the same clock.
    /// </summary>
    public AntiReplayResult TryRecord(ReadOnlySpan<byte> ticket, long expiresUnixMilliseconds, long nowUnixMilliseconds)
    {
        // Tickets are AEAD-sealed with a random nonce, so 128 bits of their hash identify them.
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(ticket, hash);
        UInt128 key = BinaryPrimitives.ReadUInt128LittleEndian(hash);

        lock (_lock)
        {
            while (_expiry.TryPeek(out UInt128 oldest, out long expires) && expires <= nowUnixMilliseconds)
            {
                _expiry.Dequeue();
                _seen.Remove(oldest);
            }

            if (_seen.Contains(key))
            {
                _replays++;
                return AntiReplayResult.Replay;
            }

            if (_seen.Count >= Capacity)
            {
                _full++;
                return AntiReplayResult.Full;
            }

            _seen.Add(key);
            _expiry.Enqueue(key, expiresUnixMilliseconds);
            _accepted++;
            return AntiReplayResult.Fresh;
        }
    }
}
