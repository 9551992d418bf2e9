using System.Buffers;
using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

/// <summary>
/// A test-only QPACK encoder that exercises the dynamic table the way servers do: inserts with static, dynamic and
/// literal names, duplicates, and field lines using relative, post-base, static and literal representations, with
/// wrapped Required Insert Counts and both Base signs. It keeps its own model of the table to check the decoder against.
/// </summary>
internal sealed class TestDynamicEncoder
{
    private readonly Random _rng;
    private readonly long _maxEntries;
    private readonly List<(long Absolute, string Name, string Value)> _entries = [];
    private readonly ArrayBufferWriter<byte> _encoderStream = new();
    private long _capacity;
    private long _size;

    public TestDynamicEncoder(Random rng, long maxTableCapacity)
    {
        _rng = rng;
        _maxEntries = maxTableCapacity / 32;
    }

    public long InsertCount { get; private set; }

    public long Size => _size;

    /// <summary>Encoder-stream bytes produced since the last call.</summary>
    public byte[] TakeEncoderStream()
    {
        byte[] bytes = _encoderStream.WrittenSpan.ToArray();
        _encoderStream.Clear();
        return bytes;
    }

    public void SetCapacity(long capacity)
    {
        WriteInteger(_encoderStream, (ulong)capacity, 5, 0x20);
        _capacity = capacity;
        EvictTo(capacity);
    }

    public byte[] EncodeSection(IReadOnlyList<(string Name, string Value)> fields)
    {
        long baseIndex = InsertCount;
        if (_rng.Next(4) == 0 && baseIndex > 0)
        {
            baseIndex -= _rng.Next(0, (int)Math.Min(baseIndex, 3) + 1); // exercise post-base for older entries too
        }

        long minReferenced = long.MaxValue;
        long maxReferenced = -1;
        var lines = new ArrayBufferWriter<byte>();

        void Reference(long absolute)
        {
            minReferenced = Math.Min(minReferenced, absolute);
            maxReferenced = Math.Max(maxReferenced, absolute);
        }

        foreach ((string name, string value) in fields)
        {
            byte[] nameBytes = Encoding.Latin1.GetBytes(name);
            byte[] valueBytes = Encoding.Latin1.GetBytes(value);
            int choice = _rng.Next(10);
            long exact = FindDynamic(name, value);
            if (exact >= 0 && choice < 6)
            {
                Reference(exact);
                WriteIndexed(lines, exact, baseIndex);
                continue;
            }

            if (choice < 8 && CanInsert(nameBytes.Length + valueBytes.Length + 32, minReferenced))
            {
                long inserted = Insert(name, value, exact);
                Reference(inserted);
                WriteIndexed(lines, inserted, baseIndex);
                continue;
            }

            // Literal line: name from the dynamic table, the static table, or literal.
            long dynamicName = FindDynamicName(name);
            QpackStaticTable.Match staticMatch = QpackStaticTable.Find(nameBytes, valueBytes, out int staticIndex);
            byte n = _rng.Next(5) == 0 ? (byte)1 : (byte)0;
            if (dynamicName >= 0 && _rng.Next(2) == 0)
            {
                Reference(dynamicName);
                if (dynamicName < baseIndex)
                {
                    WriteInteger(lines, (ulong)(baseIndex - 1 - dynamicName), 4, (byte)(0x40 | (n << 5)));
                }
                else
                {
                    WriteInteger(lines, (ulong)(dynamicName - baseIndex), 3, (byte)(n << 3));
                }

                WriteString(lines, valueBytes, 8, 0);
            }
            else if (staticMatch == QpackStaticTable.Match.NameAndValue && _rng.Next(2) == 0)
            {
                WriteInteger(lines, (ulong)staticIndex, 6, 0xC0);
            }
            else if (staticMatch != QpackStaticTable.Match.None)
            {
                WriteInteger(lines, (ulong)staticIndex, 4, (byte)(0x50 | (n << 5)));
                WriteString(lines, valueBytes, 8, 0);
            }
            else
            {
                WriteString(lines, nameBytes, 4, (byte)(0x20 | (n << 4)));
                WriteString(lines, valueBytes, 8, 0);
            }
        }

        long requiredInsertCount = maxReferenced + 1;
        var section = new ArrayBufferWriter<byte>();
        ulong encodedInsertCount = requiredInsertCount == 0 ? 0 : (ulong)(requiredInsertCount % (2 * _maxEntries)) + 1;
        WriteInteger(section, encodedInsertCount, 8, 0);
        if (requiredInsertCount == 0)
        {
            WriteInteger(section, 0, 7, 0);
        }
        else if (baseIndex >= requiredInsertCount)
        {
            WriteInteger(section, (ulong)(baseIndex - requiredInsertCount), 7, 0);
        }
        else
        {
            WriteInteger(section, (ulong)(requiredInsertCount - baseIndex - 1), 7, 0x80);
        }

        section.Write(lines.WrittenSpan);
        return section.WrittenSpan.ToArray();
    }

    private long Insert(string name, string value, long exact)
    {
        byte[] nameBytes = Encoding.Latin1.GetBytes(name);
        byte[] valueBytes = Encoding.Latin1.GetBytes(value);
        long dynamicName = FindDynamicName(name);
        QpackStaticTable.Match staticMatch = QpackStaticTable.Find(nameBytes, valueBytes, out int staticIndex);
        if (exact >= 0 && _rng.Next(2) == 0)
        {
            WriteInteger(_encoderStream, (ulong)(InsertCount - 1 - exact), 5, 0x00); // Duplicate
        }
        else if (dynamicName >= 0 && _rng.Next(2) == 0)
        {
            WriteInteger(_encoderStream, (ulong)(InsertCount - 1 - dynamicName), 6, 0x80);
            WriteString(_encoderStream, valueBytes, 8, 0);
        }
        else if (staticMatch != QpackStaticTable.Match.None && _rng.Next(3) != 0)
        {
            WriteInteger(_encoderStream, (ulong)staticIndex, 6, 0xC0);
            WriteString(_encoderStream, valueBytes, 8, 0);
        }
        else
        {
            WriteString(_encoderStream, nameBytes, 6, 0x40);
            WriteString(_encoderStream, valueBytes, 8, 0);
        }

        long size = nameBytes.Length + valueBytes.Length + 32;
        EvictTo(_capacity - size);
        _entries.Add((InsertCount, name, value));
        _size += size;
        return InsertCount++;
    }

    private bool CanInsert(long size, long minReferenced)
    {
        if (size > _capacity)
        {
            return false;
        }

        long remaining = _size;
        foreach (var entry in _entries)
        {
            if (remaining <= _capacity - size)
            {
                return true;
            }

            if (entry.Absolute >= minReferenced)
            {
                return false; // would evict an entry this section references
            }

            remaining -= entry.Name.Length + entry.Value.Length + 32;
        }

        return remaining <= _capacity - size;
    }

    private void EvictTo(long target)
    {
        while (_size > target && _entries.Count > 0)
        {
            var oldest = _entries[0];
            _size -= oldest.Name.Length + oldest.Value.Length + 32;
            _entries.RemoveAt(0);
        }
    }

    private long FindDynamic(string name, string value)
    {
        for (int i = _entries.Count - 1; i >= 0; i--)
        {
            if (_entries[i].Name == name && _entries[i].Value == value)
            {
                return _entries[i].Absolute;
            }
        }

        return -1;
    }

    private long FindDynamicName(string name)
    {
        for (int i = _entries.Count - 1; i >= 0; i--)
        {
            if (_entries[i].Name == name)
            {
                return _entries[i].Absolute;
            }
        }

        return -1;
    }

    private static void WriteIndexed(IBufferWriter<byte> lines, long absolute, long baseIndex)
    {
        if (absolute < baseIndex)
        {
            WriteInteger(lines, (ulong)(baseIndex - 1 - absolute), 6, 0x80);
        }
        else
        {
            WriteInteger(lines, (ulong)(absolute - baseIndex), 4, 0x10);
        }
    }

    private void WriteString(IBufferWriter<byte> writer, byte[] value, int prefixBits, byte flags)
    {
        Span<byte> span = writer.GetSpan(QpackPrimitives.GetMaxStringLength(value.Length, prefixBits));
        writer.Advance(QpackPrimitives.WriteString(span, value, prefixBits, flags, useHuffman: _rng.Next(2) == 0, toLower: false));
    }

    private static void WriteInteger(IBufferWriter<byte> writer, ulong value, int prefixBits, byte flags) =>
        QpackPrimitives.WriteInteger(writer, value, prefixBits, flags);
}
