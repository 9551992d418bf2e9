using System.Diagnostics;

namespace KestrelQuic.Wire;

/// <summary>A half-open interval [<see cref="Start"/>, <see cref="End"/>).</summary>
internal readonly record struct ValueRange(long Start, long End)
{
    public long Length => End - Start;

    public bool Contains(long value) => value >= Start && value < End;
}

/// <summary>
/// A sorted set of disjoint, non-adjacent half-open intervals. Used for received packet numbers (ACK ranges),
/// received stream/CRYPTO offsets and acknowledged send offsets. Backed by one growable array so that steady-state
/// use does not allocate; an optional cap bounds memory against peers that create many gaps.
/// </summary>
internal sealed class RangeSet
{
    // Allocated on the first add: many sets of an idle connection (lost ranges, spaces never used) stay empty.
    private ValueRange[] _ranges = [];
    private readonly int _initialCapacity;
    private int _count;

    public RangeSet(int initialCapacity = 4)
    {
        _initialCapacity = Math.Max(1, initialCapacity);
    }

    public int Count => _count;

    public bool IsEmpty => _count == 0;

    public ValueRange this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_count) throw new ArgumentOutOfRangeException(nameof(index));
            return _ranges[index];
        }
    }

    /// <summary>Smallest value in the set. Only valid when not empty.</summary>
    public long Min => _ranges[0].Start;

    /// <summary>One past the largest value in the set. Only valid when not empty.</summary>
    public long Max => _ranges[_count - 1].End;

    public ReadOnlySpan<ValueRange> AsSpan() => _ranges.AsSpan(0, _count);

    public void Clear() => _count = 0;

    /// <summary>Empties the set and gives its array back (a set no longer used keeps no memory).</summary>
    public void Release()
    {
        _count = 0;
        _ranges = [];
    }

    /// <summary>Adds a single value. Returns false if it was already present.</summary>
    public bool Add(long value) => Add(value, value + 1);

    /// <summary>Adds [start, end). Returns true if any value was not already present.</summary>
    public bool Add(long start, long end)
    {
        if (end <= start) return false;

        // Fast path: append at the end (the common case for in-order packets and stream data).
        if (_count == 0 || start > _ranges[_count - 1].End)
        {
            Insert(_count, new ValueRange(start, end));
            return true;
        }

        ValueRange last = _ranges[_count - 1];
        if (start >= last.Start)
        {
            if (end <= last.End) return false;
            _ranges[_count - 1] = new ValueRange(last.Start, end);
            return true;
        }

        // First range whose End >= start (it may merge with the new one).
        int lo = LowerBoundByEnd(start);
        if (lo == _count)
        {
            Insert(_count, new ValueRange(start, end));
            return true;
        }

        if (_ranges[lo].Start > end)
        {
            Insert(lo, new ValueRange(start, end));
            return true;
        }

        // Merge ranges lo..hi that overlap or touch [start, end).
        int hi = lo;
        while (hi + 1 < _count && _ranges[hi + 1].Start <= end) hi++;
        long newStart = Math.Min(start, _ranges[lo].Start);
        long newEnd = Math.Max(end, _ranges[hi].End);
        bool added = hi > lo || newStart < _ranges[lo].Start || newEnd > _ranges[lo].End;
        _ranges[lo] = new ValueRange(newStart, newEnd);
        RemoveAt(lo + 1, hi - lo);
        return added;
    }

    /// <summary>Removes [start, end) from the set.</summary>
    public void Remove(long start, long end)
    {
        if (end <= start || _count == 0) return;
        int i = LowerBoundByEnd(start + 1);
        while (i < _count && _ranges[i].Start < end)
        {
            ValueRange r = _ranges[i];
            if (r.Start < start && r.End > end)
            {
                _ranges[i] = new ValueRange(r.Start, start);
                Insert(i + 1, new ValueRange(end, r.End));
                return;
            }

            if (r.Start < start)
            {
                _ranges[i] = new ValueRange(r.Start, start);
                i++;
            }
            else if (r.End > end)
            {
                _ranges[i] = new ValueRange(end, r.End);
                return;
            }
            else
            {
                RemoveAt(i, 1);
            }
        }
    }

    /// <summary>Removes every value below <paramref name="value"/>.</summary>
    public void RemoveBelow(long value) => Remove(long.MinValue, value);

    /// <summary>Drops the lowest ranges so that at most <paramref name="maxCount"/> remain.</summary>
    public void TrimToCount(int maxCount)
    {
        if (_count > maxCount) RemoveAt(0, _count - maxCount);
    }

    public bool Contains(long value)
    {
        int i = LowerBoundByEnd(value + 1);
        return i < _count && _ranges[i].Start <= value;
    }

    /// <summary>True if every value of [start, end) is present.</summary>
    public bool ContainsAll(long start, long end)
    {
        if (end <= start) return true;
        int i = LowerBoundByEnd(start + 1);
        return i < _count && _ranges[i].Start <= start && _ranges[i].End >= end;
    }

    /// <summary>True if [start, end) neither overlaps nor touches any range: adding it would make a new range.</summary>
    public bool IsDisjoint(long start, long end)
    {
        int i = LowerBoundByEnd(start);
        return i == _count || _ranges[i].Start > end;
    }

    /// <summary>The end of the contiguous run starting at <paramref name="start"/>, or <paramref name="start"/> if absent.</summary>
    public long ContiguousEnd(long start)
    {
        int i = LowerBoundByEnd(start + 1);
        return i < _count && _ranges[i].Start <= start ? _ranges[i].End : start;
    }

    // Index of the first range with End >= value.
    private int LowerBoundByEnd(long value)
    {
        int lo = 0, hi = _count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_ranges[mid].End < value) lo = mid + 1;
            else hi = mid;
        }

        return lo;
    }

    private void Insert(int index, ValueRange range)
    {
        if (_count == _ranges.Length)
        {
            Array.Resize(ref _ranges, Math.Max(_initialCapacity, _ranges.Length * 2));
        }

        if (index < _count)
        {
            Array.Copy(_ranges, index, _ranges, index + 1, _count - index);
        }

        _ranges[index] = range;
        _count++;
    }

    private void RemoveAt(int index, int n)
    {
        Debug.Assert(index + n <= _count);
        if (n == 0) return;
        Array.Copy(_ranges, index + n, _ranges, index, _count - index - n);
        _count -= n;
    }
}
