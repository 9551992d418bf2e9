namespace KestrelQuic.Http3.Qpack;

/// <summary>
/// The decoder's copy of the QPACK dynamic table (RFC 9204 §3.2): a FIFO of entries addressed by absolute index
/// (0 for the first insertion, increasing by one per insertion), evicting the oldest entries to make room.
/// Entries are immutable byte arrays, so an insertion that names an entry about to be evicted can share its arrays.
/// </summary>
internal sealed class QpackDynamicTable
{
    private readonly long _maxCapacity;
    private QpackTableEntry[] _ring = new QpackTableEntry[8];
    private int _head; // ring slot of the oldest entry
    private int _count;
    private long _insertCount;
    private long _size;
    private long _capacity;

    public QpackDynamicTable(long maxCapacity)
    {
        _maxCapacity = maxCapacity;
    }

    /// <summary>The limit the encoder may set capacity to: our SETTINGS_QPACK_MAX_TABLE_CAPACITY.</summary>
    public long MaxCapacity => _maxCapacity;

    /// <summary>Current capacity, set by the encoder's Set Dynamic Table Capacity instruction; initially 0.</summary>
    public long Capacity => _capacity;

    /// <summary>Sum of the entry sizes (name + value + 32 each).</summary>
    public long Size => _size;

    /// <summary>Entries currently in the table.</summary>
    public int Count => _count;

    /// <summary>Insert Count: total insertions (including duplications) so far; the next absolute index.</summary>
    public long InsertCount => _insertCount;

    /// <summary>Absolute index of the oldest entry still present (equals <see cref="InsertCount"/> when empty).</summary>
    public long FirstAbsoluteIndex => _insertCount - _count;

    /// <summary>Set Dynamic Table Capacity: false when above the maximum (QPACK_ENCODER_STREAM_ERROR).</summary>
    public bool TrySetCapacity(long capacity)
    {
        if (capacity < 0 || capacity > _maxCapacity)
        {
            return false;
        }

        _capacity = capacity;
        EvictUntil(capacity);
        return true;
    }

    /// <summary>Adds an entry, evicting as needed; false when the entry is larger than the capacity.</summary>
    public bool TryInsert(byte[] name, byte[] value)
    {
        long entrySize = (long)name.Length + value.Length + QpackStaticTable.EntryOverhead;
        if (entrySize > _capacity)
        {
            return false;
        }

        EvictUntil(_capacity - entrySize);
        if (_count == _ring.Length)
        {
            Grow();
        }

        _ring[(_head + _count) % _ring.Length] = new QpackTableEntry(name, value);
        _count++;
        _insertCount++;
        _size += entrySize;
        return true;
    }

    /// <summary>The entry at <paramref name="absoluteIndex"/>; false if never inserted or already evicted.</summary>
    public bool TryGetAbsolute(long absoluteIndex, out QpackTableEntry entry)
    {
        long first = _insertCount - _count;
        if (absoluteIndex < first || absoluteIndex >= _insertCount)
        {
            entry = default;
            return false;
        }

        entry = _ring[(int)((_head + (absoluteIndex - first)) % _ring.Length)];
        return true;
    }

    /// <summary>Encoder-stream relative index: 0 is the most recent insertion (RFC 9204 §3.2.5).</summary>
    public bool TryGetRelative(ulong relativeIndex, out QpackTableEntry entry)
    {
        if (relativeIndex >= (ulong)_count)
        {
            entry = default;
            return false;
        }

        return TryGetAbsolute(_insertCount - 1 - (long)relativeIndex, out entry);
    }

    private void EvictUntil(long targetSize)
    {
        while (_size > targetSize && _count > 0)
        {
            ref QpackTableEntry oldest = ref _ring[_head];
            _size -= oldest.Size;
            oldest = default;
            _head = (_head + 1) % _ring.Length;
            _count--;
        }
    }

    private void Grow()
    {
        // Never needs more than capacity / 32 slots; doubling keeps amortized cost constant.
        var larger = new QpackTableEntry[_ring.Length * 2];
        for (int i = 0; i < _count; i++)
        {
            larger[i] = _ring[(_head + i) % _ring.Length];
        }

        _ring = larger;
        _head = 0;
    }
}
