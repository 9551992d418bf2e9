using System.Buffers;

namespace KestrelQuic.Http3.Qpack;

/// <summary>The dynamic-table half of the encoder (RFC 9204 §2.1, §3.2, §4.3, §4.5).</summary>
public sealed partial class QpackEncoder
{
    // Field names whose values change from request to request: inserting them would only churn the table.
    private static readonly byte[][] s_neverInsert =
    [
        ":path"u8.ToArray(), "content-length"u8.ToArray(), "if-modified-since"u8.ToArray(), "if-none-match"u8.ToArray(),
        "if-match"u8.ToArray(), "if-range"u8.ToArray(), "range"u8.ToArray(), "date"u8.ToArray(), "etag"u8.ToArray(),
        "last-modified"u8.ToArray(), "authorization"u8.ToArray(), "proxy-authorization"u8.ToArray(), "cookie"u8.ToArray(),
        "set-cookie"u8.ToArray(),
    ];

    private readonly long _localMaxTableCapacity;
    private readonly ArrayBufferWriter<byte> _encoderStream = new(64);
    private readonly ArrayBufferWriter<byte> _lines = new(256);
    private readonly Dictionary<long, Queue<Section>> _unacknowledged = [];
    private readonly Dictionary<long, int> _references = [];
    private readonly List<long> _sectionReferences = [];
    private QpackDynamicTable? _table;
    private long _knownReceivedCount;
    private long _sectionStreamId = -1;
    private long _sectionBase;
    private long _sectionRequiredInsertCount;

    /// <summary>Dynamic table capacity in use (0 while static-only).</summary>
    public long TableCapacity => _table?.Capacity ?? 0;

    /// <summary>Bytes in the dynamic table.</summary>
    public long TableSize => _table?.Size ?? 0;

    /// <summary>Insertions sent so far.</summary>
    public long InsertCount => _table?.InsertCount ?? 0;

    /// <summary>Insertions the peer acknowledged (RFC 9204 §2.1.4).</summary>
    public long KnownReceivedCount => _knownReceivedCount;

    /// <summary>Streams with a section the peer may have to wait for (Required Insert Count above <see cref="KnownReceivedCount"/>).</summary>
    public int BlockedStreamCount
    {
        get
        {
            int count = 0;
            foreach (KeyValuePair<long, Queue<Section>> stream in _unacknowledged)
            {
                if (IsBlocking(stream.Value))
                {
                    count++;
                }
            }

            return count;
        }
    }

    /// <summary>True when encoder-stream instructions wait for <see cref="WriteEncoderInstructions"/>.</summary>
    public bool HasPendingEncoderInstructions => _encoderStream.WrittenCount > 0;

    /// <summary>Appends the pending encoder-stream instructions (capacity change, insertions) and clears them; returns the bytes written.</summary>
    public int WriteEncoderInstructions(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        int length = _encoderStream.WrittenCount;
        if (length > 0)
        {
            destination.Write(_encoderStream.WrittenSpan);
            _encoderStream.Clear();
        }

        return length;
    }

    /// <summary>Starts encoding a field section for <paramref name="streamId"/>; follow with <see cref="AddFieldLine"/> calls and <see cref="EndFieldSection"/>.</summary>
    public void BeginFieldSection(long streamId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(streamId);
        if (_sectionStreamId >= 0)
        {
            throw new InvalidOperationException("A field section is already being encoded.");
        }

        _sectionStreamId = streamId;
        _sectionBase = InsertCount;
        _sectionRequiredInsertCount = 0;
        _sectionReferences.Clear();
        _lines.Clear();
    }

    /// <summary>
    /// Adds a field line to the section being encoded, inserting it into the dynamic table when useful and allowed.
    /// <paramref name="name"/> is lower-cased. <paramref name="neverIndexed"/> (credentials) keeps the line out of the
    /// table and marks it so intermediaries do not index it either.
    /// </summary>
    public void AddFieldLine(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed = false)
    {
        if (_sectionStreamId < 0)
        {
            throw new InvalidOperationException("Call BeginFieldSection first.");
        }

        QpackStaticTable.Match staticMatch = QpackStaticTable.Find(name, value, out int staticIndex);
        if (_table is null || _table.Capacity == 0 || (staticMatch == QpackStaticTable.Match.NameAndValue && !neverIndexed))
        {
            WriteStaticLine(name, value, neverIndexed, staticMatch, staticIndex);
            return;
        }

        bool canBlock = CanBlockSection();
        long exact = -1, nameOnly = -1;
        if (!neverIndexed)
        {
            FindDynamic(name, value, out exact, out nameOnly);
            if (exact >= 0 && (exact < _knownReceivedCount || canBlock))
            {
                WriteIndexed(exact);
                return;
            }

            if (exact < 0 && ShouldInsert(name) && TryInsert(name, value, staticMatch, staticIndex, nameOnly, out long absolute))
            {
                if (canBlock)
                {
                    WriteIndexed(absolute);
                    return;
                }
            }
        }
        else
        {
            FindDynamic(name, value, out _, out nameOnly);
        }

        // Literal value; the name by reference when possible.
        if (staticMatch != QpackStaticTable.Match.None)
        {
            WriteStaticLine(name, value, neverIndexed, QpackStaticTable.Match.Name, staticIndex);
        }
        else if (nameOnly >= 0 && (nameOnly < _knownReceivedCount || canBlock) && IsPresent(nameOnly))
        {
            WriteLiteralWithDynamicName(nameOnly, value, neverIndexed);
        }
        else
        {
            WriteStaticLine(name, value, neverIndexed, QpackStaticTable.Match.None, 0);
        }
    }

    /// <summary>Finishes the section: appends its prefix (Required Insert Count, Base) and field lines to <paramref name="destination"/>.</summary>
    public void EndFieldSection(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (_sectionStreamId < 0)
        {
            throw new InvalidOperationException("Call BeginFieldSection first.");
        }

        long ric = _sectionRequiredInsertCount;
        if (ric == 0)
        {
            WriteFieldSectionPrefix(destination);
        }
        else
        {
            // RFC 9204 §4.5.1.1: the encoded Required Insert Count wraps at twice the peer's maximum entries.
            long maxEntries = PeerMaxTableCapacity / QpackStaticTable.EntryOverhead;
            ulong encoded = (ulong)(ric % (2 * maxEntries)) + 1;
            QpackPrimitives.WriteInteger(destination, encoded, 8, 0);
            if (_sectionBase >= ric)
            {
                QpackPrimitives.WriteInteger(destination, (ulong)(_sectionBase - ric), 7, 0);
            }
            else
            {
                QpackPrimitives.WriteInteger(destination, (ulong)(ric - _sectionBase - 1), 7, 0x80);
            }

            var section = new Section(ric, [.. _sectionReferences]);
            if (!_unacknowledged.TryGetValue(_sectionStreamId, out Queue<Section>? queue))
            {
                queue = new Queue<Section>();
                _unacknowledged.Add(_sectionStreamId, queue);
            }

            queue.Enqueue(section);
        }

        destination.Write(_lines.WrittenSpan);
        _lines.Clear();
        _sectionReferences.Clear();
        _sectionStreamId = -1;
    }

    /// <summary>
    /// Abandons the section being encoded (e.g. a field could not be encoded): releases its references so they do not
    /// pin table entries. Insertions already queued on the encoder stream stay valid.
    /// </summary>
    public void CancelFieldSection()
    {
        if (_sectionStreamId < 0)
        {
            return;
        }

        Release(new Section(0, [.. _sectionReferences]));
        _sectionReferences.Clear();
        _lines.Clear();
        _sectionStreamId = -1;
    }

    private void EnableDynamicTable()
    {
        long capacity = Math.Min(_localMaxTableCapacity, PeerMaxTableCapacity);
        if (capacity <= 0 || _table is not null)
        {
            return;
        }

        _table = new QpackDynamicTable(capacity);
        _table.TrySetCapacity(capacity);

        // Set Dynamic Table Capacity: 001 Capacity(5+).
        QpackPrimitives.WriteInteger(_encoderStream, (ulong)capacity, 5, 0x20);
    }

    private bool CanBlockSection()
    {
        // Already blocking in this section, or this stream already blocks: no extra blocked stream.
        if (_sectionRequiredInsertCount > _knownReceivedCount)
        {
            return true;
        }

        if (_unacknowledged.TryGetValue(_sectionStreamId, out Queue<Section>? queue) && IsBlocking(queue))
        {
            return true;
        }

        return BlockedStreamCount < PeerBlockedStreams;
    }

    private bool IsBlocking(Queue<Section> sections)
    {
        foreach (Section section in sections)
        {
            if (section.RequiredInsertCount > _knownReceivedCount)
            {
                return true;
            }
        }

        return false;
    }

    private static bool ShouldInsert(ReadOnlySpan<byte> name)
    {
        foreach (byte[] skip in s_neverInsert)
        {
            if (QpackStaticTable.EqualsLowerCase(skip, name))
            {
                return false;
            }
        }

        return true;
    }

    private bool IsPresent(long absolute) => _table!.TryGetAbsolute(absolute, out _);

    private void FindDynamic(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out long exact, out long nameOnly)
    {
        exact = -1;
        nameOnly = -1;
        QpackDynamicTable table = _table!;

        // Newest first: the entry least likely to be evicted soon.
        for (long absolute = table.InsertCount - 1; absolute >= table.FirstAbsoluteIndex; absolute--)
        {
            table.TryGetAbsolute(absolute, out QpackTableEntry entry);
            if (!QpackStaticTable.EqualsLowerCase(entry.Name, name))
            {
                continue;
            }

            if (entry.Value.AsSpan().SequenceEqual(value))
            {
                exact = absolute;
                return;
            }

            if (nameOnly < 0)
            {
                nameOnly = absolute;
            }
        }
    }

    private bool TryInsert(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, QpackStaticTable.Match staticMatch, int staticIndex, long nameOnly, out long absolute)
    {
        absolute = -1;
        QpackDynamicTable table = _table!;
        long size = (long)name.Length + value.Length + QpackStaticTable.EntryOverhead;

        // Insert only what leaves room for several entries; never evict an entry that is unacknowledged or referenced
        // by an unacknowledged section (RFC 9204 §2.1.1).
        if (size > table.Capacity / 4)
        {
            return false;
        }

        long toFree = table.Size + size - table.Capacity;
        long evictUpTo = table.FirstAbsoluteIndex; // entries below this one would be evicted
        while (toFree > 0)
        {
            if (!table.TryGetAbsolute(evictUpTo, out QpackTableEntry oldest) || evictUpTo >= _knownReceivedCount || _references.ContainsKey(evictUpTo))
            {
                return false;
            }

            toFree -= oldest.Size;
            evictUpTo++;
        }

        byte[] nameBytes = new byte[name.Length];
        for (int i = 0; i < name.Length; i++)
        {
            byte b = name[i];
            nameBytes[i] = (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
        }

        byte[] valueBytes = value.ToArray();

        // The instruction: name from the static table, from a dynamic entry that survives the eviction, or literal.
        Span<byte> span = _encoderStream.GetSpan(QpackPrimitives.MaxIntegerLength + QpackPrimitives.GetMaxStringLength(name.Length, 6) + QpackPrimitives.GetMaxStringLength(value.Length, 8));
        int written;
        if (staticMatch != QpackStaticTable.Match.None)
        {
            // Insert with Name Reference, static: 1 1 NameIndex(6+).
            written = QpackPrimitives.WriteInteger(span, (ulong)staticIndex, 6, 0xC0);
        }
        else if (nameOnly >= evictUpTo)
        {
            // Insert with Name Reference, dynamic: 1 0 RelativeIndex(6+), relative to the Insert Count.
            written = QpackPrimitives.WriteInteger(span, (ulong)(table.InsertCount - 1 - nameOnly), 6, 0x80);
        }
        else
        {
            // Insert with Literal Name: 0 1 H NameLength(5+).
            written = QpackPrimitives.WriteString(span, nameBytes, 6, 0x40, _useHuffman, toLower: false);
        }

        written += QpackPrimitives.WriteString(span.Slice(written), valueBytes, 8, 0, _useHuffman, toLower: false);
        _encoderStream.Advance(written);

        absolute = table.InsertCount;
        table.TryInsert(nameBytes, valueBytes);
        return true;
    }

    private void Reference(long absolute)
    {
        _sectionReferences.Add(absolute);
        _references[absolute] = _references.GetValueOrDefault(absolute) + 1;
        _sectionRequiredInsertCount = Math.Max(_sectionRequiredInsertCount, absolute + 1);
    }

    private void WriteIndexed(long absolute)
    {
        Reference(absolute);
        Span<byte> span = _lines.GetSpan(QpackPrimitives.MaxIntegerLength);
        _lines.Advance(absolute < _sectionBase
            ? QpackPrimitives.WriteInteger(span, (ulong)(_sectionBase - 1 - absolute), 6, 0x80) // Indexed Field Line, dynamic: 1 0 Index(6+)
            : QpackPrimitives.WriteInteger(span, (ulong)(absolute - _sectionBase), 4, 0x10));  // Indexed with Post-Base Index: 0001 Index(4+)
    }

    private void WriteLiteralWithDynamicName(long absolute, ReadOnlySpan<byte> value, bool neverIndexed)
    {
        Reference(absolute);
        Span<byte> span = _lines.GetSpan(QpackPrimitives.MaxIntegerLength + QpackPrimitives.GetMaxStringLength(value.Length, 8));
        int written = absolute < _sectionBase
            ? QpackPrimitives.WriteInteger(span, (ulong)(_sectionBase - 1 - absolute), 4, (byte)(0x40 | (neverIndexed ? 0x20 : 0))) // 01 N 0 Index(4+)
            : QpackPrimitives.WriteInteger(span, (ulong)(absolute - _sectionBase), 3, (byte)(neverIndexed ? 0x08 : 0));           // 0000 N Index(3+)
        written += QpackPrimitives.WriteString(span.Slice(written), value, 8, 0, _useHuffman, toLower: false);
        _lines.Advance(written);
    }

    private void WriteStaticLine(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed, QpackStaticTable.Match match, int index)
    {
        Span<byte> span = _lines.GetSpan(GetMaxFieldLineLength(name.Length, value.Length));
        int written;
        if (match == QpackStaticTable.Match.NameAndValue && !neverIndexed)
        {
            written = QpackPrimitives.WriteInteger(span, (ulong)index, 6, 0xC0);
        }
        else
        {
            byte n = neverIndexed ? (byte)0x20 : (byte)0;
            if (match != QpackStaticTable.Match.None)
            {
                written = QpackPrimitives.WriteInteger(span, (ulong)index, 4, (byte)(0x50 | n));
            }
            else
            {
                written = QpackPrimitives.WriteString(span, name, 4, (byte)(0x20 | (n >> 1)), _useHuffman, toLower: true);
            }

            written += QpackPrimitives.WriteString(span.Slice(written), value, 8, 0, _useHuffman, toLower: false);
        }

        _lines.Advance(written);
    }

    private bool OnSectionAcknowledgment(ulong streamId)
    {
        if (streamId > long.MaxValue || !_unacknowledged.TryGetValue((long)streamId, out Queue<Section>? queue) || queue.Count == 0)
        {
            return false;
        }

        Section section = queue.Dequeue();
        if (queue.Count == 0)
        {
            _unacknowledged.Remove((long)streamId);
        }

        Release(section);

        // RFC 9204 §4.4.1: acknowledging a section also acknowledges the insertions it needed.
        _knownReceivedCount = Math.Max(_knownReceivedCount, section.RequiredInsertCount);
        return true;
    }

    private void OnStreamCancellation(ulong streamId)
    {
        if (streamId <= long.MaxValue && _unacknowledged.Remove((long)streamId, out Queue<Section>? queue))
        {
            foreach (Section section in queue)
            {
                Release(section);
            }
        }
    }

    private bool OnInsertCountIncrement(ulong increment)
    {
        if (increment == 0 || increment > (ulong)(InsertCount - _knownReceivedCount))
        {
            return false;
        }

        _knownReceivedCount += (long)increment;
        return true;
    }

    private void Release(Section section)
    {
        foreach (long absolute in section.References)
        {
            int count = _references[absolute] - 1;
            if (count == 0)
            {
                _references.Remove(absolute);
            }
            else
            {
                _references[absolute] = count;
            }
        }
    }

    private sealed class Section(long requiredInsertCount, long[] references)
    {
        public long RequiredInsertCount { get; } = requiredInsertCount;

        public long[] References { get; } = references;
    }
}
