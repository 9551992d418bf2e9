using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Frames;

/// <summary>
/// Decodes the frames of one decrypted packet payload (RFC 9000 §12.4, §19; RFC 9221 §4) with strict validation.
/// Malformed input yields <see cref="FrameReadStatus.Error"/> with the RFC error code and the offending frame type;
/// nothing is thrown and nothing is allocated.
/// </summary>
internal ref struct FrameReader
{
    // RFC 9000 §19.11: a count of streams cannot exceed 2^60.
    private const ulong MaxStreamCount = 1UL << 60;
    private const int PathDataLength = 8;
    private const int StatelessResetTokenLength = 16;
    private const int MaxConnectionIdLength = 20;

    private readonly ReadOnlySpan<byte> _payload;
    private readonly PacketType _packetType;
    private int _position;
    private bool _failed;
    private TransportError _error;

    public FrameReader(ReadOnlySpan<byte> payload, PacketType packetType)
    {
        _payload = payload;
        _packetType = packetType;
        _position = 0;
        _failed = false;
        _error = default;
    }

    /// <summary>Offset in the payload of the next frame.</summary>
    public readonly int Position => _position;

    public readonly PacketType PacketType => _packetType;

    public FrameReadStatus TryReadFrame(out Frame frame, out TransportError error)
    {
        frame = default;
        if (_failed)
        {
            error = _error;
            return FrameReadStatus.Error;
        }

        error = default;
        if (_position >= _payload.Length)
        {
            return FrameReadStatus.End;
        }

        ReadOnlySpan<byte> rest = _payload.Slice(_position);

        // Every known frame type fits in one byte; a longer varint is either unknown or non-minimal (RFC 9000 §12.4).
        if (!VariableLengthInteger.TryRead(rest, out ulong rawType, out int typeLength))
        {
            return Fail(out error, TransportErrorCode.FrameEncodingError, rest[0], "Truncated frame type");
        }

        if (!FrameRules.IsKnown(rawType))
        {
            return Fail(out error, TransportErrorCode.FrameEncodingError, rawType, "Unknown frame type");
        }

        if (typeLength != 1)
        {
            return Fail(out error, TransportErrorCode.ProtocolViolation, rawType, "Frame type not minimally encoded");
        }

        FrameType type = FrameRules.Normalize(rawType);
        if (!FrameRules.IsAllowed(type, _packetType))
        {
            return Fail(out error, TransportErrorCode.ProtocolViolation, rawType, "Frame type not permitted in this packet type");
        }

        // Decoded into a local: an out parameter's value is narrower-scoped than the payload reader.
        Frame f = default;
        f.Type = type;
        f.RawType = rawType;
        var r = new SpanReader(rest.Slice(1));
        string? failure = type switch
        {
            FrameType.Padding => ReadPadding(ref r),
            FrameType.Ping or FrameType.HandshakeDone => null,
            FrameType.Ack or FrameType.AckEcn => ReadAck(ref r, ref f, type == FrameType.AckEcn),
            FrameType.ResetStream => ReadResetStream(ref r, ref f),
            FrameType.StopSending => ReadStopSending(ref r, ref f),
            FrameType.Crypto => ReadCrypto(ref r, ref f),
            FrameType.NewToken => ReadNewToken(ref r, ref f),
            FrameType.Stream => ReadStream(ref r, ref f, (byte)rawType),
            FrameType.MaxData or FrameType.DataBlocked => ReadMaximum(ref r, ref f),
            FrameType.MaxStreamData or FrameType.StreamDataBlocked => ReadStreamMaximum(ref r, ref f),
            FrameType.MaxStreamsBidi or FrameType.MaxStreamsUni
                or FrameType.StreamsBlockedBidi or FrameType.StreamsBlockedUni => ReadStreamCount(ref r, ref f),
            FrameType.NewConnectionId => ReadNewConnectionId(ref r, ref f),
            FrameType.RetireConnectionId => ReadRetireConnectionId(ref r, ref f),
            FrameType.PathChallenge or FrameType.PathResponse => ReadPathData(ref r, ref f),
            FrameType.ConnectionClose or FrameType.ConnectionCloseApplication =>
                ReadConnectionClose(ref r, ref f, type == FrameType.ConnectionClose),
            FrameType.Datagram or FrameType.DatagramWithLength =>
                ReadDatagram(ref r, ref f, type == FrameType.DatagramWithLength),
            _ => "Unknown frame type",
        };

        if (failure is not null)
        {
            return Fail(out error, TransportErrorCode.FrameEncodingError, rawType, failure);
        }

        int consumed = 1 + r.Position;
        f.EncodedLength = consumed;
        frame = f;
        _position += consumed;
        return FrameReadStatus.Frame;
    }

    private FrameReadStatus Fail(out TransportError error, TransportErrorCode code, ulong frameType, string reason)
    {
        _error = new TransportError(code, frameType, reason);
        _failed = true;
        error = _error;
        return FrameReadStatus.Error;
    }

    // RFC 9000 §19.1: runs of PADDING are collapsed into one frame.
    private static string? ReadPadding(ref SpanReader r)
    {
        ReadOnlySpan<byte> rest = r.RemainingSpan;
        int run = rest.IndexOfAnyExcept((byte)0);
        r.TrySkip(run < 0 ? rest.Length : run);
        return null;
    }

    // RFC 9000 §19.3.
    private static string? ReadAck(ref SpanReader r, ref Frame frame, bool ecn)
    {
        if (!r.TryReadVarInt(out ulong largest) || !r.TryReadVarInt(out ulong delay)
            || !r.TryReadVarInt(out ulong count) || !r.TryReadVarInt(out ulong first))
        {
            return "Truncated ACK frame";
        }

        // RFC 9000 §19.3.1: no computed packet number may be negative.
        if (first > largest)
        {
            return "ACK range below zero";
        }

        // Each range needs at least two bytes; this also bounds the count to an int.
        if (count > (ulong)r.Remaining / 2)
        {
            return "Truncated ACK frame";
        }

        long smallest = (long)(largest - first);
        ReadOnlySpan<byte> rangesStart = r.RemainingSpan;
        int start = r.Position;
        for (ulong i = 0; i < count; i++)
        {
            if (!r.TryReadVarInt(out ulong gap) || !r.TryReadVarInt(out ulong length))
            {
                return "Truncated ACK frame";
            }

            // The next range's largest is smallest - gap - 2.
            if (gap + 2 > (ulong)smallest)
            {
                return "ACK range below zero";
            }

            long nextLargest = smallest - (long)gap - 2;
            if (length > (ulong)nextLargest)
            {
                return "ACK range below zero";
            }

            smallest = nextLargest - (long)length;
        }

        ReadOnlySpan<byte> ranges = rangesStart.Slice(0, r.Position - start);
        ulong ect0 = 0, ect1 = 0, ce = 0;
        if (ecn && (!r.TryReadVarInt(out ect0) || !r.TryReadVarInt(out ect1) || !r.TryReadVarInt(out ce)))
        {
            return "Truncated ACK frame";
        }

        frame.Ack = new AckFrame((long)largest, delay, (long)first, (int)count, ranges, ecn, ect0, ect1, ce);
        return null;
    }

    // RFC 9000 §19.4.
    private static string? ReadResetStream(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong streamId) || !r.TryReadVarInt(out ulong errorCode) || !r.TryReadVarInt(out ulong finalSize))
        {
            return "Truncated RESET_STREAM frame";
        }

        frame.StreamId = streamId;
        frame.ErrorCode = errorCode;
        frame.FinalSize = finalSize;
        return null;
    }

    // RFC 9000 §19.5.
    private static string? ReadStopSending(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong streamId) || !r.TryReadVarInt(out ulong errorCode))
        {
            return "Truncated STOP_SENDING frame";
        }

        frame.StreamId = streamId;
        frame.ErrorCode = errorCode;
        return null;
    }

    // RFC 9000 §19.6.
    private static string? ReadCrypto(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong offset) || !r.TryReadVarInt(out ulong length))
        {
            return "Truncated CRYPTO frame";
        }

        if (length > (ulong)r.Remaining)
        {
            return "Truncated CRYPTO frame";
        }

        if (offset + length > VariableLengthInteger.MaxValue)
        {
            return "CRYPTO frame exceeds the maximum offset";
        }

        r.TryReadBytes((int)length, out ReadOnlySpan<byte> data);
        frame.Offset = offset;
        frame.Data = data;
        return null;
    }

    // RFC 9000 §19.7.
    private static string? ReadNewToken(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong length) || length > (ulong)r.Remaining)
        {
            return "Truncated NEW_TOKEN frame";
        }

        if (length == 0)
        {
            return "Empty NEW_TOKEN token";
        }

        r.TryReadBytes((int)length, out ReadOnlySpan<byte> token);
        frame.Data = token;
        return null;
    }

    // RFC 9000 §19.8.
    private static string? ReadStream(ref SpanReader r, ref Frame frame, byte rawType)
    {
        if (!r.TryReadVarInt(out ulong streamId))
        {
            return "Truncated STREAM frame";
        }

        ulong offset = 0;
        if ((rawType & StreamFrameBits.Offset) != 0 && !r.TryReadVarInt(out offset))
        {
            return "Truncated STREAM frame";
        }

        ReadOnlySpan<byte> data;
        if ((rawType & StreamFrameBits.Length) != 0)
        {
            if (!r.TryReadVarInt(out ulong length) || length > (ulong)r.Remaining)
            {
                return "Truncated STREAM frame";
            }

            r.TryReadBytes((int)length, out data);
        }
        else
        {
            // Without LEN the data extends to the end of the packet.
            r.TryReadBytes(r.Remaining, out data);
        }

        if (offset + (ulong)data.Length > VariableLengthInteger.MaxValue)
        {
            return "STREAM frame exceeds the maximum offset";
        }

        frame.StreamId = streamId;
        frame.Offset = offset;
        frame.Data = data;
        frame.Fin = (rawType & StreamFrameBits.Fin) != 0;
        return null;
    }

    // MAX_DATA (RFC 9000 §19.9), DATA_BLOCKED (§19.12).
    private static string? ReadMaximum(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong maximum))
        {
            return "Truncated frame";
        }

        frame.Maximum = maximum;
        return null;
    }

    // MAX_STREAM_DATA (RFC 9000 §19.10), STREAM_DATA_BLOCKED (§19.13).
    private static string? ReadStreamMaximum(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong streamId) || !r.TryReadVarInt(out ulong maximum))
        {
            return "Truncated frame";
        }

        frame.StreamId = streamId;
        frame.Maximum = maximum;
        return null;
    }

    // MAX_STREAMS (RFC 9000 §19.11), STREAMS_BLOCKED (§19.14).
    private static string? ReadStreamCount(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong maximum))
        {
            return "Truncated frame";
        }

        if (maximum > MaxStreamCount)
        {
            return "Stream count exceeds 2^60";
        }

        frame.Maximum = maximum;
        return null;
    }

    // RFC 9000 §19.15.
    private static string? ReadNewConnectionId(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong sequence) || !r.TryReadVarInt(out ulong retirePriorTo) || !r.TryReadByte(out byte length))
        {
            return "Truncated NEW_CONNECTION_ID frame";
        }

        if (length is 0 or > MaxConnectionIdLength)
        {
            return "Invalid NEW_CONNECTION_ID connection ID length";
        }

        if (!r.TryReadBytes(length, out ReadOnlySpan<byte> cid)
            || !r.TryReadBytes(StatelessResetTokenLength, out ReadOnlySpan<byte> token))
        {
            return "Truncated NEW_CONNECTION_ID frame";
        }

        if (retirePriorTo > sequence)
        {
            return "NEW_CONNECTION_ID Retire Prior To exceeds the sequence number";
        }

        frame.SequenceNumber = sequence;
        frame.RetirePriorTo = retirePriorTo;
        frame.Data = cid;
        frame.StatelessResetToken = token;
        return null;
    }

    // RFC 9000 §19.16.
    private static string? ReadRetireConnectionId(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadVarInt(out ulong sequence))
        {
            return "Truncated RETIRE_CONNECTION_ID frame";
        }

        frame.SequenceNumber = sequence;
        return null;
    }

    // RFC 9000 §19.17, §19.18.
    private static string? ReadPathData(ref SpanReader r, ref Frame frame)
    {
        if (!r.TryReadBytes(PathDataLength, out ReadOnlySpan<byte> data))
        {
            return "Truncated PATH_CHALLENGE/PATH_RESPONSE frame";
        }

        frame.Data = data;
        return null;
    }

    // RFC 9000 §19.19.
    private static string? ReadConnectionClose(ref SpanReader r, ref Frame frame, bool transport)
    {
        if (!r.TryReadVarInt(out ulong errorCode))
        {
            return "Truncated CONNECTION_CLOSE frame";
        }

        ulong frameType = 0;
        if (transport && !r.TryReadVarInt(out frameType))
        {
            return "Truncated CONNECTION_CLOSE frame";
        }

        if (!r.TryReadVarInt(out ulong reasonLength) || reasonLength > (ulong)r.Remaining)
        {
            return "Truncated CONNECTION_CLOSE frame";
        }

        r.TryReadBytes((int)reasonLength, out ReadOnlySpan<byte> reason);
        frame.ErrorCode = errorCode;
        frame.FrameTypeInClose = frameType;
        frame.Data = reason;
        return null;
    }

    // RFC 9221 §4.
    private static string? ReadDatagram(ref SpanReader r, ref Frame frame, bool hasLength)
    {
        ReadOnlySpan<byte> data;
        if (hasLength)
        {
            if (!r.TryReadVarInt(out ulong length) || length > (ulong)r.Remaining)
            {
                return "Truncated DATAGRAM frame";
            }

            r.TryReadBytes((int)length, out data);
        }
        else
        {
            r.TryReadBytes(r.Remaining, out data);
        }

        frame.Data = data;
        return null;
    }
}
