using System.Buffers;
using System.Text;

namespace KestrelQuic.Http3.Qpack;

/// <summary>
/// QPACK encoder for one HTTP/3 connection (RFC 9204 §2.1). The static methods (<see cref="WriteFieldLine(IBufferWriter{byte}, ReadOnlySpan{byte}, ReadOnlySpan{byte}, bool)"/>,
/// <see cref="EncodeFieldSection(IBufferWriter{byte}, IEnumerable{KeyValuePair{string, string}})"/>) use only the static
/// table: Required Insert Count 0 and Base 0, never blocking the peer. Per field line: an exact static match becomes an
/// Indexed Field Line, a static name match a Literal Field Line with Name Reference, anything else a Literal Field Line
/// with Literal Name; strings are Huffman-coded when that is strictly shorter. Field names are lower-cased on the way
/// (RFC 9114 §4.2).
/// </summary>
/// <remarks>
/// <para>With a non-zero <c>maxTableCapacity</c>, <see cref="BeginFieldSection"/> / <see cref="AddFieldLine"/> /
/// <see cref="EndFieldSection"/> also use the dynamic table: they insert field lines through encoder-stream
/// instructions (<see cref="WriteEncoderInstructions"/>), reference entries the peer may not have yet only within its
/// SETTINGS_QPACK_BLOCKED_STREAMS, never evict entries that are unacknowledged or still referenced, and track Section
/// Acknowledgments, Stream Cancellations and Insert Count Increments from the peer's decoder stream
/// (<see cref="ProcessDecoderStream"/>).</para>
/// <para>Not thread-safe: callers serialize the dynamic-table methods and <see cref="ProcessDecoderStream"/> (e.g. with a
/// lock on the encoder). The static encoding methods keep no per-call state and may be used from any thread.</para>
/// </remarks>
public sealed partial class QpackEncoder
{
    /// <summary>Length of the field section prefix this encoder writes (Required Insert Count 0, Base 0).</summary>
    public const int FieldSectionPrefixLength = 2;

    private const int StackallocThreshold = 256;

    private readonly bool _useHuffman;
    private readonly byte[] _pending = new byte[16];
    private int _pendingLength;
    private QpackError _failure;

    /// <summary>Creates a static-table-only encoder.</summary>
    /// <param name="useHuffman">Huffman-code strings when shorter (default); false always sends raw octets.</param>
    public QpackEncoder(bool useHuffman = true)
        : this(0, useHuffman)
    {
    }

    /// <summary>Creates an encoder that may use a dynamic table of up to <paramref name="maxTableCapacity"/> bytes (and at most what the peer allows).</summary>
    /// <param name="maxTableCapacity">Our limit on the dynamic table; 0 keeps the encoder static-only.</param>
    /// <param name="useHuffman">Huffman-code strings when shorter (default); false always sends raw octets.</param>
    public QpackEncoder(long maxTableCapacity, bool useHuffman = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTableCapacity);
        _useHuffman = useHuffman;
        _localMaxTableCapacity = maxTableCapacity;
    }

    /// <summary>Whether strings are Huffman-coded when shorter.</summary>
    public bool UseHuffman => _useHuffman;

    /// <summary>The peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY (0 until its SETTINGS arrive).</summary>
    public long PeerMaxTableCapacity { get; private set; }

    /// <summary>The peer's SETTINGS_QPACK_BLOCKED_STREAMS (0 until its SETTINGS arrive).</summary>
    public long PeerBlockedStreams { get; private set; }

    /// <summary>
    /// The peer's SETTINGS_MAX_FIELD_SECTION_SIZE (unlimited until its SETTINGS arrive). A sender SHOULD NOT exceed it
    /// (RFC 9114 §4.2.2); compare with <see cref="GetFieldLineSize"/> sums.
    /// </summary>
    public long PeerMaxFieldSectionSize { get; private set; } = long.MaxValue;

    /// <summary>The connection error reported by <see cref="ProcessDecoderStream"/>, if any.</summary>
    public QpackError Failure => _failure;

    /// <summary>
    /// Records the peer's QPACK settings (once, from its SETTINGS). A static-only encoder ignores the capacity; a dynamic
    /// one queues Set Dynamic Table Capacity with min(our limit, the peer's) on the encoder stream.
    /// </summary>
    public void ApplyPeerSettings(long maxTableCapacity, long blockedStreams, long maxFieldSectionSize = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTableCapacity);
        ArgumentOutOfRangeException.ThrowIfNegative(blockedStreams);
        ArgumentOutOfRangeException.ThrowIfNegative(maxFieldSectionSize);
        PeerMaxTableCapacity = maxTableCapacity;
        PeerBlockedStreams = blockedStreams;
        PeerMaxFieldSectionSize = maxFieldSectionSize;
        EnableDynamicTable();
    }

    /// <summary>Records the peer's settings from its SETTINGS frame.</summary>
    public void ApplyPeerSettings(Frames.Http3Settings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ApplyPeerSettings(settings.QpackMaxTableCapacity, settings.QpackBlockedStreams, settings.MaxFieldSectionSize);
    }

    /// <summary>
    /// Processes bytes of the peer's QPACK decoder stream (any split, RFC 9204 §4.4). Section Acknowledgment for a
    /// stream without an unacknowledged section with dynamic references, an Insert Count Increment of 0 or beyond the
    /// insertions sent, and malformed integers return false with <see cref="Http3ErrorCode.QpackDecoderStreamError"/>.
    /// </summary>
    public bool ProcessDecoderStream(ReadOnlySpan<byte> data, out QpackError error)
    {
        if (_failure.IsError)
        {
            error = _failure;
            return false;
        }

        while (!data.IsEmpty)
        {
            // Instructions are a single prefixed integer (at most 10 bytes): complete the pending one byte by byte.
            ReadOnlySpan<byte> source = data;
            if (_pendingLength > 0)
            {
                _pending[_pendingLength++] = data[0];
                data = data.Slice(1);
                source = _pending.AsSpan(0, _pendingLength);
            }

            byte first = source[0];
            int prefixBits = (first & 0x80) != 0 ? 7 : 6;
            QpackParseStatus status = QpackPrimitives.TryReadInteger(source, prefixBits, out ulong value, out int consumed);
            if (status == QpackParseStatus.Invalid)
            {
                return Fail("Invalid integer on the decoder stream.", out error);
            }

            if (status == QpackParseStatus.NeedMoreData)
            {
                if (_pendingLength == 0)
                {
                    source.CopyTo(_pending);
                    _pendingLength = source.Length;
                    data = default;
                }
                else if (_pendingLength >= QpackPrimitives.MaxIntegerLength)
                {
                    return Fail("Invalid integer on the decoder stream.", out error);
                }

                continue;
            }

            if (_pendingLength > 0)
            {
                _pendingLength = 0;
            }
            else
            {
                data = data.Slice(consumed);
            }

            if ((first & 0x80) != 0)
            {
                if (!OnSectionAcknowledgment(value))
                {
                    return Fail($"Section Acknowledgment for stream {value}, which has no unacknowledged section with dynamic references.", out error);
                }
            }
            else if ((first & 0x40) == 0)
            {
                if (!OnInsertCountIncrement(value))
                {
                    return Fail(value == 0 ? "Insert Count Increment of 0." : "Insert Count Increment beyond the insertions sent.", out error);
                }
            }
            else
            {
                OnStreamCancellation(value);
            }
        }

        error = default;
        return true;
    }

    /// <summary>RFC 9114 §4.2.2 size of one field line: name length + value length + 32.</summary>
    public static long GetFieldLineSize(int nameLength, int valueLength) => (long)nameLength + valueLength + QpackStaticTable.EntryOverhead;

    /// <summary>Upper bound of the bytes <see cref="TryWriteFieldLine"/> needs for a name and value of these lengths.</summary>
    public static int GetMaxFieldLineLength(int nameLength, int valueLength) =>
        Math.Max(2, QpackPrimitives.GetMaxStringLength(nameLength, 4)) + QpackPrimitives.GetMaxStringLength(valueLength, 8);

    /// <summary>Writes the Encoded Field Section Prefix: Required Insert Count 0, Base 0 (0x00 0x00).</summary>
    public static int WriteFieldSectionPrefix(Span<byte> destination)
    {
        if (destination.Length < FieldSectionPrefixLength)
        {
            throw new ArgumentException("Destination too short.", nameof(destination));
        }

        destination[0] = 0;
        destination[1] = 0;
        return FieldSectionPrefixLength;
    }

    /// <summary>Appends the Encoded Field Section Prefix to <paramref name="destination"/>.</summary>
    public static void WriteFieldSectionPrefix(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        destination.Advance(WriteFieldSectionPrefix(destination.GetSpan(FieldSectionPrefixLength)));
    }

    /// <summary>
    /// Encodes one field line. <paramref name="name"/> is lower-cased (ASCII) on the way. With
    /// <paramref name="neverIndexed"/> (sensitive values such as authorization or cookie) a literal representation with
    /// the N bit is used even for an exact static match. False when <paramref name="destination"/> is too short
    /// (<see cref="GetMaxFieldLineLength"/> always suffices).
    /// </summary>
    public bool TryWriteFieldLine(Span<byte> destination, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out int bytesWritten, bool neverIndexed = false)
    {
        bytesWritten = 0;
        if (destination.Length < GetMaxFieldLineLength(name.Length, value.Length))
        {
            // Exact fit is still possible; encode into scratch only in this rare case.
            int max = GetMaxFieldLineLength(name.Length, value.Length);
            byte[] rented = ArrayPool<byte>.Shared.Rent(max);
            try
            {
                int length = WriteFieldLineCore(rented, name, value, neverIndexed);
                if (length > destination.Length)
                {
                    return false;
                }

                rented.AsSpan(0, length).CopyTo(destination);
                bytesWritten = length;
                return true;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        bytesWritten = WriteFieldLineCore(destination, name, value, neverIndexed);
        return true;
    }

    /// <summary>Appends one encoded field line to <paramref name="destination"/>; see <see cref="TryWriteFieldLine"/>.</summary>
    public void WriteFieldLine(IBufferWriter<byte> destination, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed = false)
    {
        ArgumentNullException.ThrowIfNull(destination);
        Span<byte> span = destination.GetSpan(GetMaxFieldLineLength(name.Length, value.Length));
        destination.Advance(WriteFieldLineCore(span, name, value, neverIndexed));
    }

    /// <summary>
    /// Appends one encoded field line from strings. The name must be ASCII. The value is encoded with
    /// <paramref name="valueEncoding"/>, or as Latin-1 when null, in which case characters above U+00FF are rejected
    /// with <see cref="ArgumentException"/> rather than silently replaced.
    /// </summary>
    public void WriteFieldLine(IBufferWriter<byte> destination, string name, string value, bool neverIndexed = false, Encoding? valueEncoding = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(value);

        byte[]? rentedName = null;
        byte[]? rentedValue = null;
        try
        {
            Span<byte> nameBytes = name.Length <= StackallocThreshold
                ? stackalloc byte[StackallocThreshold]
                : (rentedName = ArrayPool<byte>.Shared.Rent(name.Length));
            nameBytes = nameBytes.Slice(0, name.Length);
            for (int i = 0; i < name.Length; i++)
            {
                char c = name[i];
                if (c > 0x7F)
                {
                    throw new ArgumentException("Field names must be ASCII.", nameof(name));
                }

                nameBytes[i] = (byte)c;
            }

            int valueLength = valueEncoding is null ? value.Length : valueEncoding.GetByteCount(value);
            Span<byte> valueBytes = valueLength <= StackallocThreshold
                ? stackalloc byte[StackallocThreshold]
                : (rentedValue = ArrayPool<byte>.Shared.Rent(valueLength));
            valueBytes = valueBytes.Slice(0, valueLength);
            if (valueEncoding is null)
            {
                for (int i = 0; i < value.Length; i++)
                {
                    char c = value[i];
                    if (c > 0xFF)
                    {
                        throw new ArgumentException("Field value has a character outside Latin-1; pass an encoding.", nameof(value));
                    }

                    valueBytes[i] = (byte)c;
                }
            }
            else
            {
                valueEncoding.GetBytes(value, valueBytes);
            }

            WriteFieldLine(destination, nameBytes, valueBytes, neverIndexed);
        }
        finally
        {
            if (rentedName is not null)
            {
                ArrayPool<byte>.Shared.Return(rentedName);
            }

            if (rentedValue is not null)
            {
                ArrayPool<byte>.Shared.Return(rentedValue);
            }
        }
    }

    /// <summary>Appends a whole encoded field section (prefix and lines, in order) to <paramref name="destination"/>.</summary>
    public void EncodeFieldSection(IBufferWriter<byte> destination, IEnumerable<KeyValuePair<string, string>> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        WriteFieldSectionPrefix(destination);
        foreach (KeyValuePair<string, string> field in fields)
        {
            WriteFieldLine(destination, field.Key, field.Value);
        }
    }

    /// <summary>Encodes a whole field section into a new array (convenience; the buffer-writer overload avoids the copy).</summary>
    public byte[] EncodeFieldSection(IEnumerable<KeyValuePair<string, string>> fields)
    {
        var writer = new ArrayBufferWriter<byte>(256);
        EncodeFieldSection(writer, fields);
        return writer.WrittenSpan.ToArray();
    }

    private int WriteFieldLineCore(Span<byte> destination, ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, bool neverIndexed)
    {
        QpackStaticTable.Match match = QpackStaticTable.Find(name, value, out int index);
        if (match == QpackStaticTable.Match.NameAndValue && !neverIndexed)
        {
            // Indexed Field Line, static: 1 1 Index(6+).
            return QpackPrimitives.WriteInteger(destination, (ulong)index, 6, 0xC0);
        }

        byte n = neverIndexed ? (byte)0x20 : (byte)0;
        if (match != QpackStaticTable.Match.None)
        {
            // Literal Field Line with Name Reference, static: 0 1 N 1 NameIndex(4+), value.
            int written = QpackPrimitives.WriteInteger(destination, (ulong)index, 4, (byte)(0x50 | n));
            return written + QpackPrimitives.WriteString(destination.Slice(written), value, 8, 0, _useHuffman, toLower: false);
        }

        // Literal Field Line with Literal Name: 0 0 1 N H NameLen(3+), name, value.
        int nameLength = QpackPrimitives.WriteString(destination, name, 4, (byte)(0x20 | (n >> 1)), _useHuffman, toLower: true);
        return nameLength + QpackPrimitives.WriteString(destination.Slice(nameLength), value, 8, 0, _useHuffman, toLower: false);
    }

    private bool Fail(string message, out QpackError error)
    {
        error = new QpackError(Http3ErrorCode.QpackDecoderStreamError, message);
        _failure = error;
        return false;
    }
}
