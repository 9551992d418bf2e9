using KestrelQuic.Wire;

namespace KestrelQuic.Frames;

/// <summary>Result of <see cref="FrameReader.TryReadFrame"/>.</summary>
internal enum FrameReadStatus
{
    /// <summary>A frame was decoded.</summary>
    Frame,

    /// <summary>The payload is exhausted.</summary>
    End,

    /// <summary>The payload is malformed; the error says why. The reader stays in this state.</summary>
    Error,
}

/// <summary>
/// One decoded frame. The spans point into the packet payload, so a frame is only valid while the payload is.
/// Fields that the frame type does not carry are zero/empty.
/// </summary>
internal ref struct Frame
{
    /// <summary>The logical frame type; every STREAM variant is normalised to <see cref="FrameType.Stream"/>.</summary>
    public FrameType Type { get; set; }

    /// <summary>The frame type as it appeared on the wire (e.g. 0x0b for STREAM with OFF|LEN|FIN).</summary>
    public ulong RawType { get; set; }

    /// <summary>Bytes of the payload this frame occupied, including the type (for PADDING: the whole run).</summary>
    public int EncodedLength { get; set; }

    /// <summary>Stream ID (RESET_STREAM, STOP_SENDING, STREAM, MAX_STREAM_DATA, STREAM_DATA_BLOCKED).</summary>
    public ulong StreamId { get; set; }

    /// <summary>Data offset (STREAM, CRYPTO).</summary>
    public ulong Offset { get; set; }

    /// <summary>
    /// STREAM/CRYPTO/DATAGRAM data, NEW_TOKEN token, PATH_CHALLENGE/PATH_RESPONSE 8-byte data,
    /// CONNECTION_CLOSE reason phrase, NEW_CONNECTION_ID connection ID.
    /// </summary>
    public ReadOnlySpan<byte> Data { get; set; }

    /// <summary>STREAM FIN bit.</summary>
    public bool Fin { get; set; }

    /// <summary>Application error code (RESET_STREAM, STOP_SENDING, CONNECTION_CLOSE 0x1d) or transport error code (CONNECTION_CLOSE 0x1c).</summary>
    public ulong ErrorCode { get; set; }

    /// <summary>RESET_STREAM final size.</summary>
    public ulong FinalSize { get; set; }

    /// <summary>The limit of MAX_DATA, MAX_STREAM_DATA, MAX_STREAMS, DATA_BLOCKED, STREAM_DATA_BLOCKED, STREAMS_BLOCKED.</summary>
    public ulong Maximum { get; set; }

    /// <summary>NEW_CONNECTION_ID / RETIRE_CONNECTION_ID sequence number.</summary>
    public ulong SequenceNumber { get; set; }

    /// <summary>NEW_CONNECTION_ID Retire Prior To.</summary>
    public ulong RetirePriorTo { get; set; }

    /// <summary>The Frame Type field of a transport CONNECTION_CLOSE (0x1c).</summary>
    public ulong FrameTypeInClose { get; set; }

    /// <summary>NEW_CONNECTION_ID stateless reset token (16 bytes).</summary>
    public ReadOnlySpan<byte> StatelessResetToken { get; set; }

    /// <summary>ACK / ACK_ECN content.</summary>
    public AckFrame Ack { get; set; }

    /// <summary>True for MAX_STREAMS / STREAMS_BLOCKED of bidirectional streams.</summary>
    public readonly bool IsBidirectional => Type is FrameType.MaxStreamsBidi or FrameType.StreamsBlockedBidi;
}

/// <summary>
/// A validated ACK frame (RFC 9000 §19.3) over its raw ACK Range fields. Ranges are produced on demand in
/// descending order as half-open packet-number intervals; decoding already checked that none goes below 0.
/// </summary>
internal readonly ref struct AckFrame
{
    private readonly ReadOnlySpan<byte> _ackRanges;

    public AckFrame(long largestAcknowledged, ulong ackDelay, long firstAckRange, int rangeCount, ReadOnlySpan<byte> ackRanges,
        bool hasEcn, ulong ect0, ulong ect1, ulong ce)
    {
        LargestAcknowledged = largestAcknowledged;
        AckDelay = ackDelay;
        FirstAckRange = firstAckRange;
        RangeCount = rangeCount;
        _ackRanges = ackRanges;
        HasEcn = hasEcn;
        Ect0 = ect0;
        Ect1 = ect1;
        Ce = ce;
    }

    public long LargestAcknowledged { get; }

    /// <summary>The raw ACK Delay field; the receiver scales it by 2^ack_delay_exponent microseconds.</summary>
    public ulong AckDelay { get; }

    public long FirstAckRange { get; }

    /// <summary>The ACK Range Count field: ranges AFTER the first one. <see cref="TotalRangeCount"/> includes the first.</summary>
    public int RangeCount { get; }

    /// <summary>Number of intervals <see cref="CopyRanges"/> produces: <see cref="RangeCount"/> + 1.</summary>
    public int TotalRangeCount => RangeCount + 1;

    /// <summary>The smallest acknowledged packet number (lower end of the last range).</summary>
    public long SmallestAcknowledged
    {
        get
        {
            long smallest = 0;
            foreach (ValueRange r in this) smallest = r.Start;
            return smallest;
        }
    }

    public bool HasEcn { get; }

    public ulong Ect0 { get; }

    public ulong Ect1 { get; }

    public ulong Ce { get; }

    /// <summary>Writes up to <c>dest.Length</c> ranges, highest first, as half-open [smallest, largest + 1) intervals; returns how many.</summary>
    public int CopyRanges(Span<ValueRange> dest)
    {
        int n = 0;
        foreach (ValueRange r in this)
        {
            if (n == dest.Length) break;
            dest[n++] = r;
        }

        return n;
    }

    public Enumerator GetEnumerator() => new(this);

    /// <summary>Allocation-free enumeration of the acknowledged ranges in descending order.</summary>
    public ref struct Enumerator
    {
        private readonly ReadOnlySpan<byte> _data;
        private int _position;
        private int _remaining;
        private long _smallest;
        private ValueRange _current;
        private bool _started;

        internal Enumerator(AckFrame ack)
        {
            _data = ack._ackRanges;
            _position = 0;
            _remaining = ack.RangeCount;
            _smallest = ack.LargestAcknowledged - ack.FirstAckRange;
            _current = new ValueRange(_smallest, ack.LargestAcknowledged + 1);
            _started = false;
        }

        public readonly ValueRange Current => _current;

        public bool MoveNext()
        {
            if (!_started)
            {
                // The first range was prepared by the constructor.
                _started = true;
                return true;
            }

            if (_remaining == 0)
            {
                return false;
            }

            // Values were validated when the frame was decoded (RFC 9000 §19.3.1).
            VariableLengthInteger.TryRead(_data.Slice(_position), out ulong gap, out int n1);
            _position += n1;
            VariableLengthInteger.TryRead(_data.Slice(_position), out ulong length, out int n2);
            _position += n2;
            long largest = _smallest - (long)gap - 2;
            _smallest = largest - (long)length;
            _current = new ValueRange(_smallest, largest + 1);
            _remaining--;
            return true;
        }
    }
}
