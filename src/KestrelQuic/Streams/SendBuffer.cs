using KestrelQuic.Wire;

namespace KestrelQuic.Streams;

/// <summary>
/// Outgoing bytes of a stream or CRYPTO stream (RFC 9000 §2.2, §13.3): application data is copied into pooled
/// chunks, sent, retransmitted when lost (lost ranges go before new data) and freed once the acknowledged prefix
/// passes a chunk. Tracks the FIN separately so that a FIN-only STREAM frame can be sent and retransmitted.
/// </summary>
internal sealed class SendBuffer
{
    private readonly long _maxBufferedBytes;
    private readonly SendBufferAccount? _account;
    private readonly ChunkRing _chunks = new();
    private readonly RangeSet _acked = new();
    private readonly RangeSet _lost = new();
    private long _ackedPrefix;  // every byte below is acknowledged
    private bool _finSent;
    private bool _finAcked;
    private bool _finLost;
    private bool _discarded;

    /// <param name="maxBufferedBytes">Unacknowledged bytes this stream may hold.</param>
    /// <param name="account">Shared by the streams of one connection: their unacknowledged bytes together stay within its limit.</param>
    public SendBuffer(long maxBufferedBytes = long.MaxValue, SendBufferAccount? account = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxBufferedBytes);
        _maxBufferedBytes = maxBufferedBytes;
        _account = account;
    }

    /// <summary>Total bytes written by the application (the final size once <see cref="IsFinished"/>).</summary>
    public long WrittenOffset { get; private set; }

    /// <summary>Bytes written but not yet acknowledged as a contiguous prefix (they count against the buffer limit).</summary>
    public long BufferedBytes => WrittenOffset - _ackedPrefix;

    public bool IsFinished { get; private set; }

    /// <summary>One past the highest offset ever sent; new data continues from here.</summary>
    public long SentOffset { get; private set; }

    /// <summary>Every byte below this offset is acknowledged.</summary>
    public long AckedOffset => _ackedPrefix;

    public bool IsFinSent => _finSent;

    public bool IsFinAcked => _finAcked;

    /// <summary>True when all data and the FIN have been acknowledged.</summary>
    public bool IsAllAcked => IsFinished && _finAcked && _ackedPrefix >= WrittenOffset;

    public bool IsDiscarded => _discarded;

    /// <summary>Chunks currently held from the pool (for tests and diagnostics).</summary>
    internal int HeldChunks => _chunks.HeldChunks;

    /// <summary>Copies as much of <paramref name="data"/> as the buffer limit allows; returns the bytes accepted.</summary>
    public int Write(ReadOnlySpan<byte> data)
    {
        if (IsFinished) throw new InvalidOperationException("The stream was already finished.");
        if (_discarded) return 0;

        long room = _maxBufferedBytes - BufferedBytes;
        if (_account is not null) room = Math.Min(room, _account.Room);
        int accepted = (int)Math.Min(room, data.Length);
        if (accepted <= 0) return 0;
        data = data[..accepted];
        long offset = WrittenOffset;
        while (!data.IsEmpty)
        {
            byte[] chunk = _chunks.GetOrRent(ChunkRing.ChunkOf(offset));
            int inChunk = ChunkRing.OffsetInChunk(offset);
            int n = Math.Min(ChunkRing.ChunkSize - inChunk, data.Length);
            data[..n].CopyTo(chunk.AsSpan(inChunk));
            data = data[n..];
            offset += n;
        }

        WrittenOffset = offset;
        if (_account is not null) _account.BufferedBytes += accepted;
        return accepted;
    }

    /// <summary>Marks the end of the stream: a FIN follows the last written byte.</summary>
    public void Finish() => IsFinished = true;

    /// <summary>
    /// Chooses the next range to send: lost ranges first (lowest offset first), then new data from
    /// <see cref="SentOffset"/> up to <paramref name="flowControlLimit"/> (retransmissions are not limited by flow
    /// control: they were within the limit when first sent). Returns false when nothing can be sent. A FIN-only
    /// frame has <paramref name="length"/> 0 and <paramref name="fin"/> true.
    /// </summary>
    public bool TryGetNext(int maxLength, long flowControlLimit, out long offset, out int length, out bool fin, out bool isRetransmission)
    {
        offset = 0;
        length = 0;
        fin = false;
        isRetransmission = false;
        if (_discarded) return false;
        maxLength = Math.Max(0, maxLength);

        if (_lost.Count > 0)
        {
            ValueRange range = _lost[0];
            if (maxLength == 0) return false;
            offset = range.Start;
            length = (int)Math.Min(range.Length, maxLength);
            fin = _finLost && offset + length == WrittenOffset;
            isRetransmission = true;
            return true;
        }

        if (_finLost)
        {
            offset = WrittenOffset;
            fin = true;
            isRetransmission = true;
            return true;
        }

        long limit = Math.Min(WrittenOffset, flowControlLimit);
        long available = Math.Max(0, limit - SentOffset);
        offset = SentOffset;
        length = (int)Math.Min(available, maxLength);
        fin = IsFinished && !_finSent && offset + length == WrittenOffset;
        if (length == 0 && !fin) return false;
        return true;
    }

    /// <summary>True if <see cref="TryGetNext"/> would return something given enough room.</summary>
    public bool HasPendingData(long flowControlLimit)
    {
        if (_discarded) return false;
        if (_lost.Count > 0 || _finLost) return true;
        if (Math.Min(WrittenOffset, flowControlLimit) > SentOffset) return true;
        return IsFinished && !_finSent && SentOffset == WrittenOffset;
    }

    /// <summary>True if new data is waiting but <paramref name="flowControlLimit"/> prevents sending it.</summary>
    public bool IsBlockedBy(long flowControlLimit) =>
        !_discarded && WrittenOffset > SentOffset && SentOffset >= flowControlLimit;

    /// <summary>Copies the still-buffered bytes [offset, offset + destination.Length) for framing.</summary>
    public int CopyTo(long offset, Span<byte> destination)
    {
        long firstBuffered = _chunks.BaseChunk << ChunkRing.ChunkShift;
        if (_discarded || offset < firstBuffered || offset + destination.Length > WrittenOffset)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), "The range is not buffered.");
        }

        int total = 0;
        while (total < destination.Length)
        {
            byte[] chunk = _chunks.Get(ChunkRing.ChunkOf(offset))
                ?? throw new ArgumentOutOfRangeException(nameof(offset), "The range is not buffered.");
            int inChunk = ChunkRing.OffsetInChunk(offset);
            int n = Math.Min(ChunkRing.ChunkSize - inChunk, destination.Length - total);
            chunk.AsSpan(inChunk, n).CopyTo(destination[total..]);
            total += n;
            offset += n;
        }

        return total;
    }

    /// <summary>Records that [offset, offset + length) (and the FIN) went out in a packet.</summary>
    public void MarkSent(long offset, int length, bool fin)
    {
        long end = offset + length;
        if (end > WrittenOffset || (fin && (!IsFinished || end != WrittenOffset)))
        {
            throw new ArgumentOutOfRangeException(nameof(offset), "Sent range beyond the written data.");
        }

        if (_discarded) return;
        if (end > SentOffset) SentOffset = end;
        _lost.Remove(offset, end);
        if (fin)
        {
            _finSent = true;
            _finLost = false;
        }
    }

    public void OnAcked(long offset, int length, bool fin)
    {
        if (_discarded) return;
        long end = offset + length;
        if (length > 0)
        {
            _acked.Add(offset, end);
            _lost.Remove(offset, end);
            long prefix = _acked.ContiguousEnd(0);
            if (prefix > _ackedPrefix)
            {
                if (_account is not null) _account.BufferedBytes -= prefix - _ackedPrefix;
                _ackedPrefix = prefix;
                _chunks.ReleaseBelow(ChunkRing.ChunkOf(prefix));
                if (prefix == WrittenOffset) _chunks.Release(ChunkRing.ChunkOf(prefix)); // idle: nothing left to keep
            }
        }

        if (fin)
        {
            _finAcked = true;
            _finLost = false;
        }

        if (IsAllAcked) _chunks.ReleaseAll();
    }

    /// <summary>Schedules for retransmission whatever part of the range (and the FIN) is not yet acknowledged.</summary>
    public void OnLost(long offset, int length, bool fin)
    {
        if (_discarded) return;
        long pos = Math.Max(offset, _ackedPrefix);
        long end = offset + length;
        if (pos < end)
        {
            foreach (ValueRange acked in _acked.AsSpan())
            {
                if (acked.End <= pos) continue;
                if (acked.Start >= end) break;
                if (acked.Start > pos) _lost.Add(pos, acked.Start);
                pos = acked.End;
                if (pos >= end) break;
            }

            if (pos < end) _lost.Add(pos, end);
        }

        if (fin && !_finAcked) _finLost = true;
    }

    /// <summary>Drops all buffered data (the stream was reset); no further data is offered.</summary>
    public void Discard()
    {
        if (!_discarded && _account is not null) _account.BufferedBytes -= BufferedBytes;
        _discarded = true;
        _chunks.ReleaseAll();
        _lost.Clear();
        _finLost = false;
    }
}

/// <summary>
/// Unacknowledged bytes held by the send buffers of one connection's streams, and the most they may hold together:
/// a peer that opens many streams and never reads cannot make the application buffer a stream limit per stream.
/// </summary>
internal sealed class SendBufferAccount(long limit)
{
    public long Limit { get; } = limit;

    public long BufferedBytes { get; set; }

    public long Room => Limit - BufferedBytes;
}
