using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Frames;

/// <summary>
/// Frame encoders (RFC 9000 §19, RFC 9221 §4). Every <c>Write…</c> has a <c>Get…Length</c> so that the packet
/// builder can check the fit first; writing past the end of the destination is a programming error and throws.
/// </summary>
internal static class FrameWriter
{
    private const int PathDataLength = 8;
    private const int StatelessResetTokenLength = 16;
    private const int MaxConnectionIdLength = 20;

    private static int V(ulong value) => VariableLengthInteger.GetLength(value);

    // ---- PADDING / PING / HANDSHAKE_DONE ----

    /// <summary>Writes <paramref name="count"/> PADDING bytes (RFC 9000 §19.1).</summary>
    public static void WritePadding(ref SpanWriter w, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        w.Reserve(count).Clear();
    }

    public static int GetPingLength() => 1;

    public static void WritePing(ref SpanWriter w) => w.WriteByte((byte)FrameType.Ping);

    public static int GetHandshakeDoneLength() => 1;

    public static void WriteHandshakeDone(ref SpanWriter w) => w.WriteByte((byte)FrameType.HandshakeDone);

    // ---- ACK (RFC 9000 §19.3) ----

    /// <summary>
    /// Writes an ACK (or ACK_ECN when <paramref name="ecn"/> is set) for the highest ranges of
    /// <paramref name="receivedPacketNumbers"/> that fit both <c>w.Remaining</c> and <paramref name="maxRanges"/>
    /// (the total number of ranges, first one included). Returns the number of ranges written, 0 if not even the
    /// first range fits (nothing is written then).
    /// </summary>
    public static int WriteAck(ref SpanWriter w, RangeSet receivedPacketNumbers, ulong ackDelayScaled, int maxRanges,
        (ulong Ect0, ulong Ect1, ulong Ce)? ecn)
    {
        ArgumentNullException.ThrowIfNull(receivedPacketNumbers);
        if (receivedPacketNumbers.IsEmpty) throw new ArgumentException("No packet numbers to acknowledge.", nameof(receivedPacketNumbers));
        if (maxRanges < 1) return 0;

        int rangeCount = FitAckRanges(receivedPacketNumbers, ackDelayScaled, Math.Min(maxRanges, receivedPacketNumbers.Count), ecn, w.Remaining, out _);
        if (rangeCount == 0) return 0;

        ReadOnlySpan<ValueRange> ranges = receivedPacketNumbers.AsSpan();
        int top = ranges.Length - 1;
        ValueRange first = ranges[top];
        w.WriteByte((byte)(ecn is null ? FrameType.Ack : FrameType.AckEcn));
        w.WriteVarInt((ulong)(first.End - 1));
        w.WriteVarInt(ackDelayScaled);
        w.WriteVarInt((ulong)(rangeCount - 1));
        w.WriteVarInt((ulong)(first.Length - 1));
        long previousSmallest = first.Start;
        for (int i = 1; i < rangeCount; i++)
        {
            ValueRange r = ranges[top - i];
            // Gap = previous smallest - this largest - 2, with largest = End - 1 (RFC 9000 §19.3.1).
            w.WriteVarInt((ulong)(previousSmallest - r.End - 1));
            w.WriteVarInt((ulong)(r.Length - 1));
            previousSmallest = r.Start;
        }

        if (ecn is { } counts)
        {
            w.WriteVarInt(counts.Ect0);
            w.WriteVarInt(counts.Ect1);
            w.WriteVarInt(counts.Ce);
        }

        return rangeCount;
    }

    /// <summary>Length of the ACK frame <see cref="WriteAck"/> would write with unlimited space.</summary>
    public static int GetAckLength(RangeSet receivedPacketNumbers, ulong ackDelayScaled, int maxRanges, (ulong Ect0, ulong Ect1, ulong Ce)? ecn)
    {
        ArgumentNullException.ThrowIfNull(receivedPacketNumbers);
        if (receivedPacketNumbers.IsEmpty || maxRanges < 1) return 0;
        FitAckRanges(receivedPacketNumbers, ackDelayScaled, Math.Min(maxRanges, receivedPacketNumbers.Count), ecn, int.MaxValue, out int length);
        return length;
    }

    // Finds how many of the highest ranges fit in `space`; returns the count (0 if none) and the frame length.
    private static int FitAckRanges(RangeSet set, ulong ackDelay, int maxRanges, (ulong Ect0, ulong Ect1, ulong Ce)? ecn, int space, out int length)
    {
        ReadOnlySpan<ValueRange> ranges = set.AsSpan();
        int top = ranges.Length - 1;
        ValueRange first = ranges[top];
        int fixedPart = 1 + V((ulong)(first.End - 1)) + V(ackDelay) + V((ulong)(first.Length - 1));
        if (ecn is { } c)
        {
            fixedPart += V(c.Ect0) + V(c.Ect1) + V(c.Ce);
        }

        length = fixedPart + 1;
        if (length > space)
        {
            length = 0;
            return 0;
        }

        int count = 1;
        int rangesPart = 0;
        long previousSmallest = first.Start;
        while (count < maxRanges)
        {
            ValueRange r = ranges[top - count];
            int add = V((ulong)(previousSmallest - r.End - 1)) + V((ulong)(r.Length - 1));
            // The ACK Range Count varint grows with the count; both terms only grow, so stop at the first miss.
            int candidate = fixedPart + V((ulong)count) + rangesPart + add;
            if (candidate > space) break;
            rangesPart += add;
            length = candidate;
            previousSmallest = r.Start;
            count++;
        }

        return count;
    }

    // ---- RESET_STREAM / STOP_SENDING ----

    public static int GetResetStreamLength(ulong streamId, ulong errorCode, ulong finalSize) => 1 + V(streamId) + V(errorCode) + V(finalSize);

    /// <summary>RFC 9000 §19.4.</summary>
    public static void WriteResetStream(ref SpanWriter w, ulong streamId, ulong errorCode, ulong finalSize)
    {
        w.WriteByte((byte)FrameType.ResetStream);
        w.WriteVarInt(streamId);
        w.WriteVarInt(errorCode);
        w.WriteVarInt(finalSize);
    }

    public static int GetStopSendingLength(ulong streamId, ulong errorCode) => 1 + V(streamId) + V(errorCode);

    /// <summary>RFC 9000 §19.5.</summary>
    public static void WriteStopSending(ref SpanWriter w, ulong streamId, ulong errorCode)
    {
        w.WriteByte((byte)FrameType.StopSending);
        w.WriteVarInt(streamId);
        w.WriteVarInt(errorCode);
    }

    // ---- CRYPTO (RFC 9000 §19.6) ----

    public static int GetCryptoHeaderLength(ulong offset, int dataLength) => 1 + V(offset) + V((ulong)dataLength);

    public static int GetCryptoLength(ulong offset, int dataLength) => GetCryptoHeaderLength(offset, dataLength) + dataLength;

    /// <summary>The most CRYPTO data bytes that fit in <paramref name="space"/> bytes at <paramref name="offset"/>; 0 if none.</summary>
    public static int GetCryptoDataCapacity(ulong offset, int space) => CapacityWithLength(space - 1 - V(offset));

    public static void WriteCrypto(ref SpanWriter w, ulong offset, ReadOnlySpan<byte> data)
    {
        WriteCryptoHeader(ref w, offset, data.Length);
        w.WriteBytes(data);
    }

    /// <summary>Writes only the CRYPTO header; the caller copies <paramref name="dataLength"/> bytes right after it.</summary>
    public static void WriteCryptoHeader(ref SpanWriter w, ulong offset, int dataLength)
    {
        CheckOffset(offset, dataLength);
        w.WriteByte((byte)FrameType.Crypto);
        w.WriteVarInt(offset);
        w.WriteVarInt((ulong)dataLength);
    }

    // ---- NEW_TOKEN (RFC 9000 §19.7) ----

    public static int GetNewTokenLength(int tokenLength) => 1 + V((ulong)tokenLength) + tokenLength;

    public static void WriteNewToken(ref SpanWriter w, ReadOnlySpan<byte> token)
    {
        if (token.IsEmpty) throw new ArgumentException("A NEW_TOKEN token must not be empty.", nameof(token));
        w.WriteByte((byte)FrameType.NewToken);
        w.WriteVarInt((ulong)token.Length);
        w.WriteBytes(token);
    }

    // ---- STREAM (RFC 9000 §19.8) ----

    /// <summary>Header length of a STREAM frame: type, Stream ID, Offset (omitted when 0) and, if explicit, Length.</summary>
    public static int GetStreamHeaderLength(ulong streamId, ulong offset, int dataLength, bool explicitLength) =>
        1 + V(streamId) + (offset != 0 ? V(offset) : 0) + (explicitLength ? V((ulong)dataLength) : 0);

    public static int GetStreamLength(ulong streamId, ulong offset, int dataLength, bool explicitLength) =>
        GetStreamHeaderLength(streamId, offset, dataLength, explicitLength) + dataLength;

    /// <summary>The most STREAM data bytes that fit in <paramref name="space"/> bytes; 0 if none (a FIN-only frame may still fit, see <see cref="GetStreamHeaderLength"/>).</summary>
    public static int GetStreamDataCapacity(ulong streamId, ulong offset, int space, bool explicitLength)
    {
        int header = 1 + V(streamId) + (offset != 0 ? V(offset) : 0);
        return explicitLength ? CapacityWithLength(space - header) : Math.Max(0, space - header);
    }

    public static void WriteStream(ref SpanWriter w, ulong streamId, ulong offset, ReadOnlySpan<byte> data, bool fin, bool explicitLength)
    {
        WriteStreamHeader(ref w, streamId, offset, data.Length, fin, explicitLength);
        w.WriteBytes(data);
    }

    /// <summary>Writes only the STREAM header; the caller copies <paramref name="dataLength"/> bytes right after it.</summary>
    public static void WriteStreamHeader(ref SpanWriter w, ulong streamId, ulong offset, int dataLength, bool fin, bool explicitLength)
    {
        CheckOffset(offset, dataLength);
        byte type = (byte)FrameType.Stream;
        if (offset != 0) type |= StreamFrameBits.Offset;
        if (explicitLength) type |= StreamFrameBits.Length;
        if (fin) type |= StreamFrameBits.Fin;
        w.WriteByte(type);
        w.WriteVarInt(streamId);
        if (offset != 0) w.WriteVarInt(offset);
        if (explicitLength) w.WriteVarInt((ulong)dataLength);
    }

    // ---- Flow control: MAX_* and *_BLOCKED (RFC 9000 §19.9–§19.14) ----

    public static int GetMaxDataLength(ulong maximum) => 1 + V(maximum);

    public static void WriteMaxData(ref SpanWriter w, ulong maximum) => WriteTypeAndVarInt(ref w, FrameType.MaxData, maximum);

    public static int GetMaxStreamDataLength(ulong streamId, ulong maximum) => 1 + V(streamId) + V(maximum);

    public static void WriteMaxStreamData(ref SpanWriter w, ulong streamId, ulong maximum)
    {
        w.WriteByte((byte)FrameType.MaxStreamData);
        w.WriteVarInt(streamId);
        w.WriteVarInt(maximum);
    }

    public static int GetMaxStreamsLength(ulong maximum) => 1 + V(maximum);

    public static void WriteMaxStreams(ref SpanWriter w, bool bidirectional, ulong maximum)
    {
        CheckStreamCount(maximum);
        WriteTypeAndVarInt(ref w, bidirectional ? FrameType.MaxStreamsBidi : FrameType.MaxStreamsUni, maximum);
    }

    public static int GetDataBlockedLength(ulong limit) => 1 + V(limit);

    public static void WriteDataBlocked(ref SpanWriter w, ulong limit) => WriteTypeAndVarInt(ref w, FrameType.DataBlocked, limit);

    public static int GetStreamDataBlockedLength(ulong streamId, ulong limit) => 1 + V(streamId) + V(limit);

    public static void WriteStreamDataBlocked(ref SpanWriter w, ulong streamId, ulong limit)
    {
        w.WriteByte((byte)FrameType.StreamDataBlocked);
        w.WriteVarInt(streamId);
        w.WriteVarInt(limit);
    }

    public static int GetStreamsBlockedLength(ulong limit) => 1 + V(limit);

    public static void WriteStreamsBlocked(ref SpanWriter w, bool bidirectional, ulong limit)
    {
        CheckStreamCount(limit);
        WriteTypeAndVarInt(ref w, bidirectional ? FrameType.StreamsBlockedBidi : FrameType.StreamsBlockedUni, limit);
    }

    // ---- Connection IDs (RFC 9000 §19.15, §19.16) ----

    public static int GetNewConnectionIdLength(ulong sequenceNumber, ulong retirePriorTo, int connectionIdLength) =>
        1 + V(sequenceNumber) + V(retirePriorTo) + 1 + connectionIdLength + StatelessResetTokenLength;

    public static void WriteNewConnectionId(ref SpanWriter w, ulong sequenceNumber, ulong retirePriorTo,
        ReadOnlySpan<byte> connectionId, ReadOnlySpan<byte> statelessResetToken)
    {
        if (connectionId.Length is 0 or > MaxConnectionIdLength) throw new ArgumentException("Connection ID must be 1..20 bytes.", nameof(connectionId));
        if (statelessResetToken.Length != StatelessResetTokenLength) throw new ArgumentException("Token must be 16 bytes.", nameof(statelessResetToken));
        if (retirePriorTo > sequenceNumber) throw new ArgumentOutOfRangeException(nameof(retirePriorTo));
        w.WriteByte((byte)FrameType.NewConnectionId);
        w.WriteVarInt(sequenceNumber);
        w.WriteVarInt(retirePriorTo);
        w.WriteByte((byte)connectionId.Length);
        w.WriteBytes(connectionId);
        w.WriteBytes(statelessResetToken);
    }

    public static int GetRetireConnectionIdLength(ulong sequenceNumber) => 1 + V(sequenceNumber);

    public static void WriteRetireConnectionId(ref SpanWriter w, ulong sequenceNumber) =>
        WriteTypeAndVarInt(ref w, FrameType.RetireConnectionId, sequenceNumber);

    // ---- Path validation (RFC 9000 §19.17, §19.18) ----

    public static int GetPathChallengeLength() => 1 + PathDataLength;

    public static void WritePathChallenge(ref SpanWriter w, ReadOnlySpan<byte> data) => WritePathData(ref w, FrameType.PathChallenge, data);

    public static int GetPathResponseLength() => 1 + PathDataLength;

    public static void WritePathResponse(ref SpanWriter w, ReadOnlySpan<byte> data) => WritePathData(ref w, FrameType.PathResponse, data);

    // ---- CONNECTION_CLOSE (RFC 9000 §19.19) ----

    public static int GetConnectionCloseLength(ulong errorCode, ulong frameType, int reasonLength) =>
        1 + V(errorCode) + V(frameType) + V((ulong)reasonLength) + reasonLength;

    /// <summary>Transport CONNECTION_CLOSE (0x1c). <paramref name="frameType"/> is the frame that triggered the error, 0 if unknown.</summary>
    public static void WriteConnectionClose(ref SpanWriter w, ulong errorCode, ulong frameType, ReadOnlySpan<byte> reason)
    {
        w.WriteByte((byte)FrameType.ConnectionClose);
        w.WriteVarInt(errorCode);
        w.WriteVarInt(frameType);
        w.WriteVarInt((ulong)reason.Length);
        w.WriteBytes(reason);
    }

    public static void WriteConnectionClose(ref SpanWriter w, TransportErrorCode errorCode, ulong frameType, ReadOnlySpan<byte> reason) =>
        WriteConnectionClose(ref w, (ulong)errorCode, frameType, reason);

    public static int GetApplicationCloseLength(ulong errorCode, int reasonLength) =>
        1 + V(errorCode) + V((ulong)reasonLength) + reasonLength;

    /// <summary>Application CONNECTION_CLOSE (0x1d).</summary>
    public static void WriteApplicationClose(ref SpanWriter w, ulong errorCode, ReadOnlySpan<byte> reason)
    {
        w.WriteByte((byte)FrameType.ConnectionCloseApplication);
        w.WriteVarInt(errorCode);
        w.WriteVarInt((ulong)reason.Length);
        w.WriteBytes(reason);
    }

    // ---- DATAGRAM (RFC 9221 §4) ----

    public static int GetDatagramLength(int dataLength, bool explicitLength) =>
        1 + (explicitLength ? V((ulong)dataLength) : 0) + dataLength;

    /// <summary>The most DATAGRAM payload bytes that fit in <paramref name="space"/> bytes; 0 if none.</summary>
    public static int GetDatagramDataCapacity(int space, bool explicitLength) =>
        explicitLength ? CapacityWithLength(space - 1) : Math.Max(0, space - 1);

    public static void WriteDatagram(ref SpanWriter w, ReadOnlySpan<byte> data, bool explicitLength)
    {
        w.WriteByte((byte)(explicitLength ? FrameType.DatagramWithLength : FrameType.Datagram));
        if (explicitLength) w.WriteVarInt((ulong)data.Length);
        w.WriteBytes(data);
    }

    // ---- helpers ----

    // Largest n such that V(n) + n <= space.
    private static int CapacityWithLength(int space)
    {
        if (space <= 1) return 0;
        int n = space - 1;
        while (n > 0 && V((ulong)n) + n > space) n--;
        return n;
    }

    private static void WriteTypeAndVarInt(ref SpanWriter w, FrameType type, ulong value)
    {
        w.WriteByte((byte)type);
        w.WriteVarInt(value);
    }

    private static void WritePathData(ref SpanWriter w, FrameType type, ReadOnlySpan<byte> data)
    {
        if (data.Length != PathDataLength) throw new ArgumentException("Path data must be 8 bytes.", nameof(data));
        w.WriteByte((byte)type);
        w.WriteBytes(data);
    }

    private static void CheckOffset(ulong offset, int dataLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataLength);
        if (offset > VariableLengthInteger.MaxValue - (ulong)dataLength) throw new ArgumentOutOfRangeException(nameof(offset));
    }

    private static void CheckStreamCount(ulong count)
    {
        if (count > 1UL << 60) throw new ArgumentOutOfRangeException(nameof(count));
    }
}
