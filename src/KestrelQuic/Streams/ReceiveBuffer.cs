using System.Diagnostics;
using KestrelQuic.Wire;

namespace KestrelQuic.Streams;

/// <summary>Outcome of <see cref="ReceiveBuffer.Write"/>.</summary>
internal enum ReceiveBufferResult
{
    /// <summary>New data (or the final size) was accepted.</summary>
    Ok,

    /// <summary>Valid, but nothing new: every byte (and the FIN, if any) was already known.</summary>
    Duplicate,

    /// <summary>The frame contradicts the final size (RFC 9000 §4.5): the caller reports FINAL_SIZE_ERROR.</summary>
    FinalSizeError,

    /// <summary>Data beyond ReadOffset + the buffer limit: FLOW_CONTROL_ERROR for streams, CRYPTO_BUFFER_EXCEEDED for CRYPTO.</summary>
    BufferExceeded,

    /// <summary>
    /// The fragment would leave more than <see cref="ReceiveBuffer.MaxRanges"/> separate received ranges: a peer
    /// fragmenting data into tiny pieces with gaps to exhaust CPU and memory. The caller closes the connection
    /// (PROTOCOL_VIOLATION for streams, CRYPTO_BUFFER_EXCEEDED for CRYPTO).
    /// </summary>
    TooManyGaps,
}

/// <summary>
/// Reassembles the received bytes of a stream or CRYPTO stream (RFC 9000 §2.2): fragments arrive out of order,
/// duplicated or overlapping and are delivered in order. Bytes live in pooled fixed-size chunks that are returned
/// to the pool as soon as the reader moves past them, so memory is bounded by the buffer limit.
/// </summary>
internal sealed class ReceiveBuffer
{
    /// <summary>
    /// Bound on the separate ranges of received data above the read offset. Each new range costs an insertion into a
    /// sorted array, so without a bound 1-byte fragments at every other offset make reassembly quadratic (35 s of CPU
    /// for 5 MB of such packets within a 1 MiB window). Senders of full-sized frames open one gap per lost packet.
    /// </summary>
    public const int MaxRanges = 1024;

    private readonly long _maxBufferedBytes;
    private readonly ChunkRing _chunks = new();

    // Received offsets at or above ReadOffset (once discarded: every received offset, kept to detect "all received").
    private readonly RangeSet _received = new();
    private bool _discarded;

    public ReceiveBuffer(long maxBufferedBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBufferedBytes);
        _maxBufferedBytes = maxBufferedBytes;
    }

    /// <summary>Offset of the next byte the application will read.</summary>
    public long ReadOffset { get; private set; }

    /// <summary>Number of contiguous bytes available to read from <see cref="ReadOffset"/>.</summary>
    public long ReadableBytes => _discarded ? 0 : _received.ContiguousEnd(ReadOffset) - ReadOffset;

    /// <summary>The final size, once a FIN (or a reset through <see cref="Write"/> with fin) made it known.</summary>
    public long? FinalSize { get; private set; }

    /// <summary>One past the largest offset received (RFC 9000 §4.5 uses it to validate the final size).</summary>
    public long HighestReceivedOffset { get; private set; }

    public bool IsFinReceived => FinalSize.HasValue;

    /// <summary>True when the final size is known and every byte up to it has been received (not necessarily read).</summary>
    public bool IsAllReceived => FinalSize is long size && _received.ContiguousEnd(ReadOffset) >= size;

    /// <summary>True when the application has read all data up to the final size.</summary>
    public bool IsComplete => !_discarded && FinalSize is long size && ReadOffset == size;

    public bool IsDiscarded => _discarded;

    /// <summary>Chunks currently held from the pool (for tests and diagnostics).</summary>
    internal int HeldChunks => _chunks.HeldChunks;

    /// <summary>Adds the bytes [offset, offset + data.Length); <paramref name="fin"/> sets the final size to the end of the range.</summary>
    public ReceiveBufferResult Write(long offset, ReadOnlySpan<byte> data, bool fin)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        long end = offset + data.Length;

        if (!IsFinalSizeConsistent(end, fin)) return ReceiveBufferResult.FinalSizeError;

        if (!_discarded && data.Length > 0 && end - ReadOffset > _maxBufferedBytes)
        {
            return ReceiveBufferResult.BufferExceeded;
        }

        long start = Math.Max(offset, ReadOffset);
        if (start < end && _received.Count >= MaxRanges && _received.IsDisjoint(start, end))
        {
            return ReceiveBufferResult.TooManyGaps;
        }

        bool isNew = false;
        if (fin && FinalSize is null)
        {
            FinalSize = end;
            isNew = true;
        }

        if (end > HighestReceivedOffset) HighestReceivedOffset = end;

        if (start < end)
        {
            isNew |= CopyGaps(start, end, offset, data);
            _received.Add(start, end);
        }

        return isNew ? ReceiveBufferResult.Ok : ReceiveBufferResult.Duplicate;
    }

    /// <summary>
    /// RFC 9000 §4.5: a frame ending at <paramref name="end"/> (with or without FIN) is consistent with what is known:
    /// no data beyond a known final size, the final size never changes, and it is not below data already received.
    /// </summary>
    public bool IsFinalSizeConsistent(long end, bool fin)
    {
        if (FinalSize is long finalSize)
        {
            return end <= finalSize && (!fin || end == finalSize);
        }

        return !fin || end >= HighestReceivedOffset;
    }

    /// <summary>Copies contiguous bytes from <see cref="ReadOffset"/> into <paramref name="destination"/>, consuming them.</summary>
    public int Read(Span<byte> destination)
    {
        int total = 0;
        while (total < destination.Length && TryPeek(out ReadOnlySpan<byte> segment))
        {
            int n = Math.Min(segment.Length, destination.Length - total);
            segment[..n].CopyTo(destination[total..]);
            Advance(n);
            total += n;
        }

        return total;
    }

    /// <summary>The next contiguous readable segment (at most up to the end of one chunk), without copying.</summary>
    public bool TryPeek(out ReadOnlySpan<byte> contiguous)
    {
        long readable = ReadableBytes;
        if (readable == 0)
        {
            contiguous = default;
            return false;
        }

        byte[]? chunk = _chunks.Get(ChunkRing.ChunkOf(ReadOffset));
        Debug.Assert(chunk is not null, "received bytes must be backed by a chunk");
        int inChunk = ChunkRing.OffsetInChunk(ReadOffset);
        contiguous = chunk.AsSpan(inChunk, (int)Math.Min(ChunkRing.ChunkSize - inChunk, readable));
        return true;
    }

    /// <summary>Consumes <paramref name="count"/> readable bytes; chunks wholly below the new read offset go back to the pool.</summary>
    public void Advance(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, ReadableBytes);
        if (count == 0) return;
        ReadOffset += count;
        _received.RemoveBelow(ReadOffset);
        if (ReadOffset == FinalSize)
        {
            _chunks.ReleaseAll(); // nothing more can arrive
        }
        else
        {
            _chunks.ReleaseBelow(ChunkRing.ChunkOf(ReadOffset));
            if (_received.IsEmpty) _chunks.Release(ChunkRing.ChunkOf(ReadOffset)); // drained: an idle stream holds no chunk
        }
    }

    /// <summary>
    /// Releases all buffered bytes (e.g. the stream was reset or the application stopped reading). Later writes are
    /// still validated against the final size and tracked, but their bytes are dropped.
    /// </summary>
    public void Discard()
    {
        _discarded = true;
        _chunks.ReleaseAll();
    }

    // Copies the parts of [start, end) not yet received; true if there were any.
    private bool CopyGaps(long start, long end, long dataOffset, ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<ValueRange> ranges = _received.AsSpan();
        // Binary search for the first range ending after start (a peer may leave many gaps).
        int i = 0, hi = ranges.Length;
        while (i < hi)
        {
            int mid = (i + hi) >>> 1;
            if (ranges[mid].End <= start) i = mid + 1;
            else hi = mid;
        }

        bool copied = false;
        long pos = start;
        while (pos < end)
        {
            if (i < ranges.Length && ranges[i].Start <= pos)
            {
                pos = ranges[i].End;
                i++;
                continue;
            }

            long gapEnd = i < ranges.Length ? Math.Min(end, ranges[i].Start) : end;
            if (!_discarded)
            {
                CopyIn(pos, data.Slice((int)(pos - dataOffset), (int)(gapEnd - pos)));
            }

            copied = true;
            pos = gapEnd;
        }

        return copied;
    }

    private void CopyIn(long offset, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            byte[] chunk = _chunks.GetOrRent(ChunkRing.ChunkOf(offset));
            int inChunk = ChunkRing.OffsetInChunk(offset);
            int n = Math.Min(ChunkRing.ChunkSize - inChunk, data.Length);
            data[..n].CopyTo(chunk.AsSpan(inChunk));
            data = data[n..];
            offset += n;
        }
    }
}
