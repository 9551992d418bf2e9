using System.Buffers;
using System.Diagnostics;

namespace KestrelQuic.Streams;

/// <summary>
/// A window of fixed-size pooled chunks addressed by absolute chunk number (offset / <see cref="ChunkSize"/>).
/// Slots form a ring so that releasing the oldest chunk and appending a new one never shifts or allocates; the
/// slot array only grows when the window (in chunks) grows. Chunks come from <see cref="ArrayPool{T}.Shared"/>
/// and go back as soon as they are released.
/// </summary>
internal sealed class ChunkRing
{
    // A dedicated pool: the shared one trims its caches on GC pressure, which turns steady-state stream traffic back
    // into allocations exactly when the process is busiest. Bounded: at most 4,096 idle chunks (16 MiB) stay cached.
    private static readonly ArrayPool<byte> ChunkPool = ArrayPool<byte>.Create(ChunkSize, 4096);

    public const int ChunkSize = 4096;
    public const int ChunkShift = 12;
    public const int ChunkMask = ChunkSize - 1;

    // Allocated on the first chunk: most rings of an idle connection (CRYPTO streams, unused directions) never hold one.
    private byte[]?[] _slots = [];
    private int _head;          // slot of _baseChunk
    private long _baseChunk;    // lowest chunk number the ring can address

    /// <summary>Number of chunks currently rented from the pool.</summary>
    public int HeldChunks { get; private set; }

    public long BaseChunk => _baseChunk;

    public static long ChunkOf(long offset) => offset >> ChunkShift;

    public static int OffsetInChunk(long offset) => (int)(offset & ChunkMask);

    /// <summary>The chunk, or null if it was never written or has been released.</summary>
    public byte[]? Get(long chunk)
    {
        long rel = chunk - _baseChunk;
        if (rel < 0 || rel >= _slots.Length) return null;
        return _slots[(_head + (int)rel) & (_slots.Length - 1)];
    }

    public byte[] GetOrRent(long chunk)
    {
        long rel = chunk - _baseChunk;
        Debug.Assert(rel >= 0, "chunk below the released prefix");
        if (rel >= _slots.Length) Grow(rel + 1);
        ref byte[]? slot = ref _slots[(_head + (int)rel) & (_slots.Length - 1)];
        if (slot is null)
        {
            slot = ChunkPool.Rent(ChunkSize);
            HeldChunks++;
        }

        return slot;
    }

    /// <summary>
    /// Returns one chunk to the pool without moving the base: its bytes are no longer needed, but later bytes of the
    /// same chunk may still come (they get a fresh chunk). Keeps idle streams from pinning 4 KiB each.
    /// </summary>
    public void Release(long chunk)
    {
        long rel = chunk - _baseChunk;
        if (rel < 0 || rel >= _slots.Length) return;
        ref byte[]? slot = ref _slots[(_head + (int)rel) & (_slots.Length - 1)];
        if (slot is null) return;
        ChunkPool.Return(slot);
        slot = null;
        HeldChunks--;
    }

    /// <summary>Returns every chunk numbered below <paramref name="chunk"/> to the pool.</summary>
    public void ReleaseBelow(long chunk)
    {
        if (chunk <= _baseChunk) return;
        if (chunk - _baseChunk >= _slots.Length)
        {
            ReleaseAll();
            _baseChunk = chunk;
            return;
        }

        while (_baseChunk < chunk)
        {
            ref byte[]? slot = ref _slots[_head];
            if (slot is not null)
            {
                ChunkPool.Return(slot);
                slot = null;
                HeldChunks--;
            }

            _head = (_head + 1) & (_slots.Length - 1);
            _baseChunk++;
        }
    }

    public void ReleaseAll()
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            if (_slots[i] is { } chunk)
            {
                ChunkPool.Return(chunk);
                _slots[i] = null;
            }
        }

        HeldChunks = 0;
    }

    private void Grow(long minSlots)
    {
        int size = Math.Max(4, _slots.Length);
        while (size < minSlots)
        {
            if (size >= 1 << 30) throw new InvalidOperationException("Chunk window too large.");
            size <<= 1;
        }

        var slots = new byte[]?[size];
        for (int i = 0; i < _slots.Length; i++)
        {
            slots[i] = _slots[(_head + i) & (_slots.Length - 1)];
        }

        _slots = slots;
        _head = 0;
    }
}
