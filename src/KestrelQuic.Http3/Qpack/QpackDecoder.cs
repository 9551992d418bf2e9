using System.Buffers;

namespace KestrelQuic.Http3.Qpack;

/// <summary>
/// QPACK decoder for one HTTP/3 connection (RFC 9204 §2.2): decodes encoded field sections (HEADERS and PUSH_PROMISE
/// payloads), including references to the dynamic table; maintains that table from the peer's encoder stream; tracks
/// blocked streams; and produces the decoder-stream instructions (Section Acknowledgment, Stream Cancellation,
/// Insert Count Increment) the caller must send on our QPACK decoder stream.
/// </summary>
/// <remarks>
/// <para>Errors use a result pattern: malformed input never throws. Every QPACK error is a connection error; once one
/// is reported the decoder stays failed and keeps returning it.</para>
/// <para>Not thread-safe: one connection's receive loop drives it.</para>
/// <para>Insert Count Increment is emitted lazily by <see cref="WriteDecoderInstructions"/>, so a Section Acknowledgment
/// that already covers new insertions replaces it (as in RFC 9204 Appendix B.2).</para>
/// </remarks>
public sealed class QpackDecoder
{
    private readonly QpackDynamicTable _table;
    private readonly int _maxBlockedStreams;
    private readonly long _maxEntries;

    // Blocked streams (RFC 9204 §2.1.2): stream ID and Required Insert Count; at most _maxBlockedStreams of them.
    private readonly List<(long StreamId, long RequiredInsertCount)> _blocked = [];

    // Encoder-stream bytes of an instruction that has not fully arrived.
    private byte[] _pending = [];
    private int _pendingLength;

    // Decoder-stream instructions not yet handed to the caller.
    private byte[] _output = new byte[32];
    private int _outputLength;

    // Where Huffman strings are decoded to; grows to the largest string seen.
    private byte[] _scratch = new byte[256];

    private long _knownReceivedCount;
    private QpackError _failure;

    /// <summary>Creates a decoder.</summary>
    /// <param name="maxTableCapacity">What we advertise as SETTINGS_QPACK_MAX_TABLE_CAPACITY (0 disables the dynamic table).</param>
    /// <param name="maxBlockedStreams">What we advertise as SETTINGS_QPACK_BLOCKED_STREAMS.</param>
    /// <param name="maxFieldSectionSize">What we advertise as SETTINGS_MAX_FIELD_SECTION_SIZE; <see cref="long.MaxValue"/> for unlimited.</param>
    public QpackDecoder(long maxTableCapacity, int maxBlockedStreams, long maxFieldSectionSize = long.MaxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxTableCapacity);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxTableCapacity, Http3VarInt.MaxValue);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBlockedStreams);
        ArgumentOutOfRangeException.ThrowIfNegative(maxFieldSectionSize);
        _table = new QpackDynamicTable(maxTableCapacity);
        _maxEntries = maxTableCapacity / QpackStaticTable.EntryOverhead;
        _maxBlockedStreams = maxBlockedStreams;
        MaxFieldSectionSize = maxFieldSectionSize;
    }

    /// <summary>Our SETTINGS_QPACK_MAX_TABLE_CAPACITY.</summary>
    public long MaxTableCapacity => _table.MaxCapacity;

    /// <summary>Our SETTINGS_QPACK_BLOCKED_STREAMS.</summary>
    public int MaxBlockedStreams => _maxBlockedStreams;

    /// <summary>Our SETTINGS_MAX_FIELD_SECTION_SIZE; sections decoding to more report <see cref="QpackDecodeStatus.FieldSectionTooLarge"/>.</summary>
    public long MaxFieldSectionSize { get; set; }

    /// <summary>Insert Count: total dynamic table insertions processed from the encoder stream.</summary>
    public long InsertCount => _table.InsertCount;

    /// <summary>Known Received Count as the encoder will compute it from the instructions we have produced.</summary>
    public long KnownReceivedCount => _knownReceivedCount;

    /// <summary>Current dynamic table capacity, as set by the peer's encoder.</summary>
    public long TableCapacity => _table.Capacity;

    /// <summary>Current dynamic table size.</summary>
    public long TableSize => _table.Size;

    /// <summary>Streams currently blocked on dynamic table state.</summary>
    public int BlockedStreamCount => _blocked.Count;

    /// <summary>True when decoder-stream instructions (or an Insert Count Increment) wait for <see cref="WriteDecoderInstructions"/>.</summary>
    public bool HasPendingDecoderInstructions => _outputLength > 0 || _table.InsertCount > _knownReceivedCount;

    /// <summary>The connection error reported earlier, if any.</summary>
    public QpackError Failure => _failure;

    internal QpackDynamicTable DynamicTable => _table;

    /// <summary>
    /// Processes bytes received on the peer's QPACK encoder stream, in order, as they arrive (any split is fine).
    /// Returns false with a <see cref="Http3ErrorCode.QpackEncoderStreamError"/> on malformed or illegal instructions.
    /// Afterwards, sections reported <see cref="QpackDecodeStatus.Blocked"/> whose Required Insert Count is at most
    /// <see cref="InsertCount"/> can be decoded.
    /// </summary>
    public bool ProcessEncoderStream(ReadOnlySpan<byte> data, out QpackError error)
    {
        if (_failure.IsError)
        {
            error = _failure;
            return false;
        }

        int consumed;
        if (_pendingLength == 0)
        {
            if (!ProcessInstructions(data, out consumed, out error))
            {
                return Fail(error);
            }

            data = data.Slice(consumed);
            if (!data.IsEmpty)
            {
                AppendPending(data);
            }

            return true;
        }

        AppendPending(data);
        if (!ProcessInstructions(_pending.AsSpan(0, _pendingLength), out consumed, out error))
        {
            return Fail(error);
        }

        _pending.AsSpan(consumed, _pendingLength - consumed).CopyTo(_pending);
        _pendingLength -= consumed;
        return true;
    }

    /// <inheritdoc cref="ProcessEncoderStream(ReadOnlySpan{byte}, out QpackError)"/>
    public bool ProcessEncoderStream(in ReadOnlySequence<byte> data, out QpackError error)
    {
        foreach (ReadOnlyMemory<byte> segment in data)
        {
            if (!ProcessEncoderStream(segment.Span, out error))
            {
                return false;
            }
        }

        error = default;
        return true;
    }

    /// <summary>
    /// Decodes one encoded field section (a whole HEADERS payload, or a PUSH_PROMISE payload after the push ID) received
    /// on <paramref name="streamId"/>, delivering field lines to <paramref name="handler"/>.
    /// </summary>
    public QpackDecodeResult DecodeFieldSection(long streamId, ReadOnlySpan<byte> encodedFieldSection, IQpackFieldHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfNegative(streamId);
        if (_failure.IsError)
        {
            return ErrorResult(_failure);
        }

        QpackDecodeResult result = DecodeCore(streamId, encodedFieldSection, handler);
        if (result.Status == QpackDecodeStatus.Error)
        {
            _failure = result.Error;
        }

        return result;
    }

    /// <inheritdoc cref="DecodeFieldSection(long, ReadOnlySpan{byte}, IQpackFieldHandler)"/>
    public QpackDecodeResult DecodeFieldSection(long streamId, in ReadOnlySequence<byte> encodedFieldSection, IQpackFieldHandler handler)
    {
        if (encodedFieldSection.IsSingleSegment)
        {
            return DecodeFieldSection(streamId, encodedFieldSection.FirstSpan, handler);
        }

        long length = encodedFieldSection.Length;
        if (length > int.MaxValue)
        {
            return ErrorResult(new QpackError(Http3ErrorCode.QpackDecompressionFailed, "Encoded field section too long."));
        }

        byte[] rented = ArrayPool<byte>.Shared.Rent((int)length);
        try
        {
            encodedFieldSection.CopyTo(rented);
            return DecodeFieldSection(streamId, rented.AsSpan(0, (int)length), handler);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// The stream was reset or we stopped reading it before all its field sections were decoded (RFC 9204 §2.2.2.2):
    /// forgets it as blocked and queues a Stream Cancellation (omitted when our maximum table capacity is 0, as allowed).
    /// </summary>
    public void AbandonStream(long streamId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(streamId);
        RemoveBlocked(streamId);
        if (_table.MaxCapacity > 0)
        {
            WriteOutput((ulong)streamId, 6, 0x40);
        }
    }

    /// <summary>
    /// Appends the pending decoder-stream instructions to <paramref name="destination"/> and clears them: Section
    /// Acknowledgments and Stream Cancellations in the order they arose, then one Insert Count Increment covering every
    /// insertion not yet acknowledged. Returns the number of bytes written (0 when there is nothing to send).
    /// </summary>
    public int WriteDecoderInstructions(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (_table.InsertCount > _knownReceivedCount)
        {
            WriteOutput((ulong)(_table.InsertCount - _knownReceivedCount), 6, 0x00);
            _knownReceivedCount = _table.InsertCount;
        }

        int length = _outputLength;
        if (length > 0)
        {
            destination.Write(_output.AsSpan(0, length));
            _outputLength = 0;
        }

        return length;
    }

    private QpackDecodeResult DecodeCore(long streamId, ReadOnlySpan<byte> source, IQpackFieldHandler handler)
    {
        // Encoded Field Section Prefix (RFC 9204 §4.5.1).
        if (QpackPrimitives.TryReadInteger(source, 8, out ulong encodedInsertCount, out int consumed) != QpackParseStatus.Done)
        {
            return Decompression("Truncated or invalid Required Insert Count.");
        }

        source = source.Slice(consumed);
        if (source.IsEmpty)
        {
            return Decompression("Truncated field section prefix.");
        }

        bool negativeBase = (source[0] & 0x80) != 0;
        if (QpackPrimitives.TryReadInteger(source, 7, out ulong deltaBase, out consumed) != QpackParseStatus.Done)
        {
            return Decompression("Truncated or invalid Delta Base.");
        }

        source = source.Slice(consumed);
        if (!TryDecodeRequiredInsertCount(encodedInsertCount, out long requiredInsertCount))
        {
            return Decompression("Invalid encoded Required Insert Count.");
        }

        long baseIndex;
        if (negativeBase)
        {
            if ((ulong)requiredInsertCount <= deltaBase)
            {
                return Decompression("Negative Base.");
            }

            baseIndex = requiredInsertCount - (long)deltaBase - 1;
        }
        else
        {
            baseIndex = requiredInsertCount + (long)deltaBase; // both below 2^62: no overflow
        }

        if (requiredInsertCount > _table.InsertCount)
        {
            return Block(streamId, requiredInsertCount);
        }

        RemoveBlocked(streamId);
        var state = new SectionState(requiredInsertCount, baseIndex, MaxFieldSectionSize);
        while (!source.IsEmpty)
        {
            QpackError lineError = DecodeFieldLine(ref source, ref state, handler);
            if (lineError.IsError)
            {
                return new QpackDecodeResult(QpackDecodeStatus.Error, requiredInsertCount, state.Size, lineError);
            }
        }

        if (requiredInsertCount != 0)
        {
            // Section Acknowledgment (RFC 9204 §4.4.1); it implies every insertion up to the Required Insert Count.
            WriteOutput((ulong)streamId, 7, 0x80);
            _knownReceivedCount = Math.Max(_knownReceivedCount, requiredInsertCount);
        }

        return new QpackDecodeResult(
            state.TooLarge ? QpackDecodeStatus.FieldSectionTooLarge : QpackDecodeStatus.Completed,
            requiredInsertCount,
            state.Size,
            default);
    }

    // RFC 9204 §4.5.1.1.
    private bool TryDecodeRequiredInsertCount(ulong encodedInsertCount, out long requiredInsertCount)
    {
        requiredInsertCount = 0;
        if (encodedInsertCount == 0)
        {
            return true;
        }

        long fullRange = 2 * _maxEntries;
        if (encodedInsertCount > (ulong)fullRange)
        {
            return false;
        }

        long maxValue = _table.InsertCount + _maxEntries;
        long maxWrapped = maxValue / fullRange * fullRange;
        long value = maxWrapped + (long)encodedInsertCount - 1;
        if (value > maxValue)
        {
            if (value <= fullRange)
            {
                return false;
            }

            value -= fullRange;
        }

        if (value == 0)
        {
            return false;
        }

        requiredInsertCount = value;
        return true;
    }

    private QpackDecodeResult Block(long streamId, long requiredInsertCount)
    {
        for (int i = 0; i < _blocked.Count; i++)
        {
            if (_blocked[i].StreamId == streamId)
            {
                _blocked[i] = (streamId, requiredInsertCount);
                return new QpackDecodeResult(QpackDecodeStatus.Blocked, requiredInsertCount, 0, default);
            }
        }

        if (_blocked.Count >= _maxBlockedStreams)
        {
            return Decompression($"More than SETTINGS_QPACK_BLOCKED_STREAMS ({_maxBlockedStreams}) blocked streams.");
        }

        _blocked.Add((streamId, requiredInsertCount));
        return new QpackDecodeResult(QpackDecodeStatus.Blocked, requiredInsertCount, 0, default);
    }

    private void RemoveBlocked(long streamId)
    {
        for (int i = 0; i < _blocked.Count; i++)
        {
            if (_blocked[i].StreamId == streamId)
            {
                _blocked.RemoveAt(i);
                return;
            }
        }
    }

    private QpackError DecodeFieldLine(ref ReadOnlySpan<byte> source, ref SectionState state, IQpackFieldHandler handler)
    {
        byte first = source[0];
        int consumed;
        ulong index;
        if ((first & 0x80) != 0)
        {
            // Indexed Field Line: 1 T Index(6+).
            if (QpackPrimitives.TryReadInteger(source, 6, out index, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated indexed field line.");
            }

            source = source.Slice(consumed);
            QpackTableEntry entry;
            if ((first & 0x40) != 0)
            {
                if (index >= QpackStaticTable.Count)
                {
                    return DecompressionError("Invalid static table index.");
                }

                entry = QpackStaticTable.Get((int)index);
            }
            else if (!TryGetRelative(index, in state, out entry))
            {
                return DecompressionError("Invalid dynamic table reference.");
            }

            Deliver(entry.Name, entry.Value, ref state, handler);
            return default;
        }

        if ((first & 0x40) != 0)
        {
            // Literal Field Line with Name Reference: 0 1 N T NameIndex(4+), value.
            if (QpackPrimitives.TryReadInteger(source, 4, out index, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated literal field line with name reference.");
            }

            source = source.Slice(consumed);
            QpackTableEntry entry;
            if ((first & 0x10) != 0)
            {
                if (index >= QpackStaticTable.Count)
                {
                    return DecompressionError("Invalid static table index.");
                }

                entry = QpackStaticTable.Get((int)index);
            }
            else if (!TryGetRelative(index, in state, out entry))
            {
                return DecompressionError("Invalid dynamic table reference.");
            }

            return DecodeValueAndDeliver(ref source, entry.Name, ref state, handler);
        }

        if ((first & 0x20) != 0)
        {
            // Literal Field Line with Literal Name: 0 0 1 N H NameLen(3+), name, value.
            if (QpackPrimitives.TryReadString(source, 4, int.MaxValue, out bool nameHuffman, out ReadOnlySpan<byte> rawName, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated or invalid literal name.");
            }

            source = source.Slice(consumed);
            if (QpackPrimitives.TryReadString(source, 8, int.MaxValue, out bool valueHuffman, out ReadOnlySpan<byte> rawValue, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated or invalid literal value.");
            }

            source = source.Slice(consumed);
            return DecodeLiteralAndDeliver(nameHuffman, rawName, valueHuffman, rawValue, ref state, handler);
        }

        if ((first & 0x10) != 0)
        {
            // Indexed Field Line with Post-Base Index: 0 0 0 1 Index(4+).
            if (QpackPrimitives.TryReadInteger(source, 4, out index, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated post-base indexed field line.");
            }

            source = source.Slice(consumed);
            if (!TryGetPostBase(index, in state, out QpackTableEntry entry))
            {
                return DecompressionError("Invalid post-base dynamic table reference.");
            }

            Deliver(entry.Name, entry.Value, ref state, handler);
            return default;
        }

        {
            // Literal Field Line with Post-Base Name Reference: 0 0 0 0 N NameIndex(3+), value.
            if (QpackPrimitives.TryReadInteger(source, 3, out index, out consumed) != QpackParseStatus.Done)
            {
                return DecompressionError("Truncated literal field line with post-base name reference.");
            }

            source = source.Slice(consumed);
            if (!TryGetPostBase(index, in state, out QpackTableEntry entry))
            {
                return DecompressionError("Invalid post-base dynamic table reference.");
            }

            return DecodeValueAndDeliver(ref source, entry.Name, ref state, handler);
        }
    }

    // Relative index in a field line: absolute = Base - 1 - index, which must be below the Required Insert Count.
    private bool TryGetRelative(ulong relativeIndex, in SectionState state, out QpackTableEntry entry)
    {
        if (relativeIndex >= (ulong)state.Base)
        {
            entry = default;
            return false;
        }

        long absolute = state.Base - 1 - (long)relativeIndex;
        if (absolute >= state.RequiredInsertCount)
        {
            entry = default;
            return false;
        }

        return _table.TryGetAbsolute(absolute, out entry);
    }

    // Post-Base index: absolute = Base + index, which must be below the Required Insert Count.
    private bool TryGetPostBase(ulong postBaseIndex, in SectionState state, out QpackTableEntry entry)
    {
        if (state.Base >= state.RequiredInsertCount || postBaseIndex >= (ulong)(state.RequiredInsertCount - state.Base))
        {
            entry = default;
            return false;
        }

        return _table.TryGetAbsolute(state.Base + (long)postBaseIndex, out entry);
    }

    private QpackError DecodeValueAndDeliver(ref ReadOnlySpan<byte> source, ReadOnlySpan<byte> name, ref SectionState state, IQpackFieldHandler handler)
    {
        if (QpackPrimitives.TryReadString(source, 8, int.MaxValue, out bool huffman, out ReadOnlySpan<byte> raw, out int consumed) != QpackParseStatus.Done)
        {
            return DecompressionError("Truncated or invalid field value.");
        }

        source = source.Slice(consumed);
        if (state.TooLarge || state.WouldExceed(name.Length + QpackPrimitives.GetMinDecodedLength(raw.Length, huffman)))
        {
            // Over the limit already: account without decoding, so a peer cannot make us inflate huge strings.
            state.MarkTooLarge(name.Length + QpackPrimitives.GetMinDecodedLength(raw.Length, huffman));
            return default;
        }

        ReadOnlySpan<byte> value = raw;
        if (huffman)
        {
            EnsureScratch(QpackHuffman.GetMaxDecodedLength(raw.Length));
            if (QpackHuffman.Decode(raw, _scratch, out int written) != OperationStatus.Done)
            {
                return DecompressionError("Invalid Huffman-coded field value.");
            }

            value = _scratch.AsSpan(0, written);
        }

        Deliver(name, value, ref state, handler);
        return default;
    }

    private QpackError DecodeLiteralAndDeliver(
        bool nameHuffman,
        ReadOnlySpan<byte> rawName,
        bool valueHuffman,
        ReadOnlySpan<byte> rawValue,
        ref SectionState state,
        IQpackFieldHandler handler)
    {
        long minimum = QpackPrimitives.GetMinDecodedLength(rawName.Length, nameHuffman) + QpackPrimitives.GetMinDecodedLength(rawValue.Length, valueHuffman);
        if (state.TooLarge || state.WouldExceed(minimum))
        {
            state.MarkTooLarge(minimum);
            return default;
        }

        int nameCapacity = nameHuffman ? QpackHuffman.GetMaxDecodedLength(rawName.Length) : 0;
        int valueCapacity = valueHuffman ? QpackHuffman.GetMaxDecodedLength(rawValue.Length) : 0;
        EnsureScratch(nameCapacity + valueCapacity);

        ReadOnlySpan<byte> name = rawName;
        if (nameHuffman)
        {
            if (QpackHuffman.Decode(rawName, _scratch.AsSpan(0, nameCapacity), out int nameLength) != OperationStatus.Done)
            {
                return DecompressionError("Invalid Huffman-coded field name.");
            }

            name = _scratch.AsSpan(0, nameLength);
        }

        ReadOnlySpan<byte> value = rawValue;
        if (valueHuffman)
        {
            if (QpackHuffman.Decode(rawValue, _scratch.AsSpan(nameCapacity, valueCapacity), out int valueLength) != OperationStatus.Done)
            {
                return DecompressionError("Invalid Huffman-coded field value.");
            }

            value = _scratch.AsSpan(nameCapacity, valueLength);
        }

        Deliver(name, value, ref state, handler);
        return default;
    }

    private static void Deliver(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, ref SectionState state, IQpackFieldHandler handler)
    {
        long lineSize = (long)name.Length + value.Length;
        if (state.TooLarge || state.WouldExceed(lineSize))
        {
            state.MarkTooLarge(lineSize);
            return;
        }

        state.Add(lineSize);
        handler.OnField(name, value);
    }

    private bool ProcessInstructions(ReadOnlySpan<byte> data, out int consumed, out QpackError error)
    {
        consumed = 0;
        while (consumed < data.Length)
        {
            QpackParseStatus status = ProcessInstruction(data.Slice(consumed), out int length, out error);
            if (status == QpackParseStatus.NeedMoreData)
            {
                break;
            }

            if (status == QpackParseStatus.Invalid)
            {
                return false;
            }

            consumed += length;
        }

        error = default;
        return true;
    }

    // One encoder instruction (RFC 9204 §4.3); applied only once complete, so a partial one can be retried.
    private QpackParseStatus ProcessInstruction(ReadOnlySpan<byte> source, out int length, out QpackError error)
    {
        length = 0;
        error = default;
        byte first = source[0];
        QpackParseStatus status;
        int consumed;

        // An entry cannot be larger than the capacity, so neither can its strings: reject longer declared lengths
        // before their bytes arrive.
        int maxStringLength = (int)Math.Clamp(_table.Capacity - QpackStaticTable.EntryOverhead, 0, int.MaxValue);

        if ((first & 0x80) != 0)
        {
            // Insert with Name Reference: 1 T NameIndex(6+), value.
            status = QpackPrimitives.TryReadInteger(source, 6, out ulong index, out consumed);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Invalid name index.", out error);
            }

            status = QpackPrimitives.TryReadString(source.Slice(consumed), 8, maxStringLength, out bool huffman, out ReadOnlySpan<byte> raw, out int valueLength);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Field value longer than the dynamic table capacity.", out error);
            }

            length = consumed + valueLength;
            QpackTableEntry named;
            if ((first & 0x40) != 0)
            {
                if (index >= QpackStaticTable.Count)
                {
                    return EncoderFailure("Invalid static table index.", out error);
                }

                named = QpackStaticTable.Get((int)index);
            }
            else if (!_table.TryGetRelative(index, out named))
            {
                return EncoderFailure("Invalid dynamic table reference.", out error);
            }

            if (!TryMaterialize(raw, huffman, out byte[]? value))
            {
                return EncoderFailure("Invalid Huffman-coded field value.", out error);
            }

            return Insert(named.Name, value, out error);
        }

        if ((first & 0x40) != 0)
        {
            // Insert with Literal Name: 0 1 H NameLen(5+), name, value.
            status = QpackPrimitives.TryReadString(source, 6, maxStringLength, out bool nameHuffman, out ReadOnlySpan<byte> rawName, out consumed);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Field name longer than the dynamic table capacity.", out error);
            }

            status = QpackPrimitives.TryReadString(source.Slice(consumed), 8, maxStringLength, out bool valueHuffman, out ReadOnlySpan<byte> rawValue, out int valueLength);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Field value longer than the dynamic table capacity.", out error);
            }

            length = consumed + valueLength;
            if (!TryMaterialize(rawName, nameHuffman, out byte[]? name))
            {
                return EncoderFailure("Invalid Huffman-coded field name.", out error);
            }

            if (!TryMaterialize(rawValue, valueHuffman, out byte[]? value))
            {
                return EncoderFailure("Invalid Huffman-coded field value.", out error);
            }

            return Insert(name, value, out error);
        }

        if ((first & 0x20) != 0)
        {
            // Set Dynamic Table Capacity: 0 0 1 Capacity(5+).
            status = QpackPrimitives.TryReadInteger(source, 5, out ulong capacity, out consumed);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Invalid capacity.", out error);
            }

            length = consumed;
            if (!_table.TrySetCapacity(capacity > (ulong)long.MaxValue ? -1 : (long)capacity))
            {
                return EncoderFailure("Capacity above SETTINGS_QPACK_MAX_TABLE_CAPACITY.", out error);
            }

            return QpackParseStatus.Done;
        }

        {
            // Duplicate: 0 0 0 Index(5+).
            status = QpackPrimitives.TryReadInteger(source, 5, out ulong index, out consumed);
            if (status != QpackParseStatus.Done)
            {
                return EncoderStatus(status, "Invalid duplicate index.", out error);
            }

            length = consumed;
            if (!_table.TryGetRelative(index, out QpackTableEntry existing))
            {
                return EncoderFailure("Invalid dynamic table reference.", out error);
            }

            return Insert(existing.Name, existing.Value, out error);
        }
    }

    private QpackParseStatus Insert(byte[] name, byte[] value, out QpackError error)
    {
        if (!_table.TryInsert(name, value))
        {
            return EncoderFailure("Entry larger than the dynamic table capacity.", out error);
        }

        error = default;
        return QpackParseStatus.Done;
    }

    private bool TryMaterialize(ReadOnlySpan<byte> raw, bool huffman, out byte[] value)
    {
        if (!huffman)
        {
            value = raw.ToArray();
            return true;
        }

        EnsureScratch(QpackHuffman.GetMaxDecodedLength(raw.Length));
        if (QpackHuffman.Decode(raw, _scratch, out int written) != OperationStatus.Done)
        {
            value = [];
            return false;
        }

        value = _scratch.AsSpan(0, written).ToArray();
        return true;
    }

    private static QpackParseStatus EncoderStatus(QpackParseStatus status, string message, out QpackError error)
    {
        error = status == QpackParseStatus.Invalid ? new QpackError(Http3ErrorCode.QpackEncoderStreamError, message) : default;
        return status;
    }

    private static QpackParseStatus EncoderFailure(string message, out QpackError error)
    {
        error = new QpackError(Http3ErrorCode.QpackEncoderStreamError, message);
        return QpackParseStatus.Invalid;
    }

    private void AppendPending(ReadOnlySpan<byte> data)
    {
        int required = _pendingLength + data.Length;
        if (required > _pending.Length)
        {
            Array.Resize(ref _pending, Math.Max(required, Math.Max(64, _pending.Length * 2)));
        }

        data.CopyTo(_pending.AsSpan(_pendingLength));
        _pendingLength = required;
    }

    private void WriteOutput(ulong value, int prefixBits, byte flags)
    {
        if (_output.Length - _outputLength < QpackPrimitives.MaxIntegerLength)
        {
            Array.Resize(ref _output, _output.Length * 2);
        }

        _outputLength += QpackPrimitives.WriteInteger(_output.AsSpan(_outputLength), value, prefixBits, flags);
    }

    private void EnsureScratch(int length)
    {
        if (_scratch.Length < length)
        {
            _scratch = new byte[Math.Max(length, _scratch.Length * 2)];
        }
    }

    private bool Fail(QpackError error)
    {
        _failure = error;
        return false;
    }

    private static QpackDecodeResult ErrorResult(QpackError error) => new(QpackDecodeStatus.Error, 0, 0, error);

    private static QpackDecodeResult Decompression(string message) =>
        ErrorResult(DecompressionError(message));

    private static QpackError DecompressionError(string message) => new(Http3ErrorCode.QpackDecompressionFailed, message);

    private struct SectionState
    {
        public SectionState(long requiredInsertCount, long baseIndex, long maxSize)
        {
            RequiredInsertCount = requiredInsertCount;
            Base = baseIndex;
            MaxSize = maxSize;
        }

        public long RequiredInsertCount { get; }

        public long Base { get; }

        public long MaxSize { get; }

        public long Size { get; private set; }

        public bool TooLarge { get; private set; }

        // lineBytes: name + value octets; each line also costs 32.
        public readonly bool WouldExceed(long lineBytes) => lineBytes + QpackStaticTable.EntryOverhead > MaxSize - Size;

        public void Add(long lineBytes) => Size += lineBytes + QpackStaticTable.EntryOverhead;

        public void MarkTooLarge(long lineBytes)
        {
            TooLarge = true;
            Size = Size > long.MaxValue - lineBytes - QpackStaticTable.EntryOverhead ? long.MaxValue : Size + lineBytes + QpackStaticTable.EntryOverhead;
        }
    }
}
