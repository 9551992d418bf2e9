using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Frames;

public sealed class FrameValidationTests
{
    public static TheoryData<string> SampleNames => FrameSamples.Names();

    private static (FrameReadStatus Status, TransportError Error) ReadOne(ReadOnlySpan<byte> payload, PacketType packetType = PacketType.OneRtt)
    {
        var reader = new FrameReader(payload, packetType);
        FrameReadStatus status = reader.TryReadFrame(out _, out TransportError error);
        return (status, error);
    }

    private static void AssertError(ReadOnlySpan<byte> payload, TransportErrorCode code, ulong frameType, PacketType packetType = PacketType.OneRtt)
    {
        (FrameReadStatus status, TransportError error) = ReadOne(payload, packetType);
        Assert.Equal(FrameReadStatus.Error, status);
        Assert.Equal(code, error.Code);
        Assert.Equal(frameType, error.FrameType);
        Assert.False(string.IsNullOrEmpty(error.Reason));
    }

    [Theory]
    [MemberData(nameof(SampleNames))]
    public void Truncation_AtEveryOffset_IsFrameEncodingError(string name)
    {
        FrameSample sample = FrameSamples.Get(name);
        byte[] bytes = sample.Bytes;
        int checkedCuts = 0;
        for (int cut = 1; cut < bytes.Length; cut++)
        {
            ReadOnlySpan<byte> truncated = bytes.AsSpan(0, cut);
            var reader = new FrameReader(truncated, PacketType.OneRtt);
            FrameReadStatus status = reader.TryReadFrame(out Frame frame, out TransportError error);
            if (sample.ImplicitLength && cut >= bytes.Length - FrameSamples.Payload.Length && sample.RawType != 0x00)
            {
                // Frames without a Length field end with the packet: cutting into their data is still valid.
                Assert.Equal(FrameReadStatus.Frame, status);
                Assert.Equal(cut, frame.EncodedLength);
                continue;
            }

            if (sample.RawType == 0x00)
            {
                Assert.Equal(FrameReadStatus.Frame, status);
                Assert.Equal(cut, frame.EncodedLength);
                continue;
            }

            Assert.Equal(FrameReadStatus.Error, status);
            Assert.Equal(TransportErrorCode.FrameEncodingError, error.Code);
            Assert.Equal(sample.RawType, error.FrameType);
            checkedCuts++;

            // The reader stays failed.
            Assert.Equal(FrameReadStatus.Error, reader.TryReadFrame(out _, out TransportError again));
            Assert.Equal(error, again);
        }

        if (!sample.ImplicitLength) Assert.Equal(bytes.Length - 1, checkedCuts);
    }

    // RFC 9000 §12.4 Table 3, written out independently of FrameRules: I, H, 0, 1 (ih01 for 0x1c).
    [Theory]
    [InlineData(0x00, "IH01")]
    [InlineData(0x01, "IH01")]
    [InlineData(0x02, "IH_1")]
    [InlineData(0x03, "IH_1")]
    [InlineData(0x04, "__01")]
    [InlineData(0x05, "__01")]
    [InlineData(0x06, "IH_1")]
    [InlineData(0x07, "___1")]
    [InlineData(0x08, "__01")]
    [InlineData(0x09, "__01")]
    [InlineData(0x0a, "__01")]
    [InlineData(0x0b, "__01")]
    [InlineData(0x0c, "__01")]
    [InlineData(0x0d, "__01")]
    [InlineData(0x0e, "__01")]
    [InlineData(0x0f, "__01")]
    [InlineData(0x10, "__01")]
    [InlineData(0x11, "__01")]
    [InlineData(0x12, "__01")]
    [InlineData(0x13, "__01")]
    [InlineData(0x14, "__01")]
    [InlineData(0x15, "__01")]
    [InlineData(0x16, "__01")]
    [InlineData(0x17, "__01")]
    [InlineData(0x18, "__01")]
    [InlineData(0x19, "___1")]
    [InlineData(0x1a, "__01")]
    [InlineData(0x1b, "___1")]
    [InlineData(0x1c, "IH01")]
    [InlineData(0x1d, "__01")]
    [InlineData(0x1e, "___1")]
    [InlineData(0x30, "__01")]
    [InlineData(0x31, "__01")]
    public void PacketTypeTable_NotPermitted_IsProtocolViolation(int rawType, string permitted)
    {
        FrameSample sample = FrameSamples.All().First(s => s.RawType == (ulong)rawType);
        PacketType[] types = [PacketType.Initial, PacketType.Handshake, PacketType.ZeroRtt, PacketType.OneRtt];
        for (int i = 0; i < 4; i++)
        {
            bool allowed = permitted[i] != '_';
            Assert.Equal(allowed, FrameRules.IsAllowed(FrameRules.Normalize((ulong)rawType), types[i]));
            (FrameReadStatus status, TransportError error) = ReadOne(sample.Bytes, types[i]);
            if (allowed)
            {
                Assert.Equal(FrameReadStatus.Frame, status);
            }
            else
            {
                Assert.Equal(FrameReadStatus.Error, status);
                Assert.Equal(TransportErrorCode.ProtocolViolation, error.Code);
                Assert.Equal((ulong)rawType, error.FrameType);
            }
        }
    }

    [Fact]
    public void PacketTypeTable_RetryAndVersionNegotiationCarryNoFrames()
    {
        AssertError([0x01], TransportErrorCode.ProtocolViolation, 0x01, PacketType.Retry);
        AssertError([0x00], TransportErrorCode.ProtocolViolation, 0x00, PacketType.VersionNegotiation);
    }

    [Theory]
    [InlineData("1f", 0x1fUL)]
    [InlineData("20", 0x20UL)]
    [InlineData("2f", 0x2fUL)]
    [InlineData("32", 0x32UL)]
    [InlineData("3f", 0x3fUL)]
    [InlineData("4040", 0x40UL)]
    [InlineData("7fff", 0x3fffUL)]
    [InlineData("80abcdef", 0x00abcdefUL)]
    [InlineData("c100000000000000", 0x1UL << 56)]
    public void UnknownFrameType_IsFrameEncodingError(string hex, ulong type)
    {
        AssertError(Convert.FromHexString(hex + "00"), TransportErrorCode.FrameEncodingError, type);
    }

    [Theory]
    [InlineData("4001", 0x01UL)]
    [InlineData("4000", 0x00UL)]
    [InlineData("401e", 0x1eUL)]
    [InlineData("4031", 0x31UL)]
    [InlineData("80000006", 0x06UL)]
    [InlineData("c000000000000010", 0x10UL)]
    public void NonMinimalFrameType_IsProtocolViolation(string hex, ulong type)
    {
        AssertError(Convert.FromHexString(hex + "0000000000"), TransportErrorCode.ProtocolViolation, type);
    }

    [Fact]
    public void TruncatedFrameTypeVarInt_IsFrameEncodingError()
    {
        (FrameReadStatus status, TransportError error) = ReadOne([0x40]);
        Assert.Equal(FrameReadStatus.Error, status);
        Assert.Equal(TransportErrorCode.FrameEncodingError, error.Code);
    }

    [Theory]
    [InlineData(true, 0x12)]
    [InlineData(false, 0x13)]
    public void MaxStreams_Above2Pow60_IsFrameEncodingError(bool bidi, int type)
    {
        byte[] ok = FrameSamples.Encode(16, (ref SpanWriter w) => FrameWriter.WriteMaxStreams(ref w, bidi, 1UL << 60));
        Assert.Equal(FrameReadStatus.Frame, ReadOne(ok).Status);
        byte[] bad = [(byte)type, .. Varint((1UL << 60) + 1)];
        AssertError(bad, TransportErrorCode.FrameEncodingError, (ulong)type);
        Assert.Throws<ArgumentOutOfRangeException>(() => FrameSamples.Encode(16, (ref SpanWriter w) => FrameWriter.WriteMaxStreams(ref w, bidi, (1UL << 60) + 1)));
    }

    [Theory]
    [InlineData(0x16)]
    [InlineData(0x17)]
    public void StreamsBlocked_Above2Pow60_IsFrameEncodingError(int type)
    {
        AssertError([(byte)type, .. Varint((1UL << 60) + 1)], TransportErrorCode.FrameEncodingError, (ulong)type);
        AssertError([(byte)type, .. Varint(VariableLengthInteger.MaxValue)], TransportErrorCode.FrameEncodingError, (ulong)type);
        Assert.Equal(FrameReadStatus.Frame, ReadOne([(byte)type, .. Varint(1UL << 60)]).Status);
    }

    [Fact]
    public void Stream_OffsetPlusLengthBeyond2Pow62_IsFrameEncodingError()
    {
        // Offset 2^62 - 2 with 2 bytes of data: the sum is 2^62, one past the limit.
        byte[] explicitLength = [0x0e, 0x00, .. Varint(VariableLengthInteger.MaxValue - 1), 0x02, 0xaa, 0xbb];
        AssertError(explicitLength, TransportErrorCode.FrameEncodingError, 0x0e);
        byte[] implicitLength = [0x0c, 0x00, .. Varint(VariableLengthInteger.MaxValue), 0xaa];
        AssertError(implicitLength, TransportErrorCode.FrameEncodingError, 0x0c);

        // An empty frame at exactly 2^62 - 1 is fine.
        Assert.Equal(FrameReadStatus.Frame, ReadOne([0x0d, 0x00, .. Varint(VariableLengthInteger.MaxValue)]).Status);
    }

    [Fact]
    public void Crypto_OffsetPlusLengthBeyond2Pow62_IsFrameEncodingError()
    {
        AssertError([0x06, .. Varint(VariableLengthInteger.MaxValue), 0x01, 0xaa], TransportErrorCode.FrameEncodingError, 0x06);
    }

    [Fact]
    public void Crypto_LengthBeyondPayload_IsFrameEncodingError()
    {
        AssertError([0x06, 0x00, .. Varint(VariableLengthInteger.MaxValue), 0xaa], TransportErrorCode.FrameEncodingError, 0x06);
    }

    [Fact]
    public void NewToken_Empty_IsFrameEncodingError()
    {
        AssertError([0x07, 0x00], TransportErrorCode.FrameEncodingError, 0x07);
        Assert.Throws<ArgumentException>(() => FrameSamples.Encode(16, (ref SpanWriter w) => FrameWriter.WriteNewToken(ref w, [])));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(21)]
    [InlineData(255)]
    public void NewConnectionId_BadLength_IsFrameEncodingError(int length)
    {
        byte[] frame = [0x18, 0x01, 0x00, (byte)length, .. new byte[length], .. FrameSamples.Token16];
        AssertError(frame, TransportErrorCode.FrameEncodingError, 0x18);
    }

    [Fact]
    public void NewConnectionId_MaximumLength_Accepted()
    {
        byte[] frame = [0x18, 0x01, 0x00, 20, .. new byte[20], .. FrameSamples.Token16];
        Assert.Equal(FrameReadStatus.Frame, ReadOne(frame).Status);
    }

    [Fact]
    public void NewConnectionId_RetirePriorToAboveSequence_IsFrameEncodingError()
    {
        byte[] frame = [0x18, 0x02, 0x03, 8, .. FrameSamples.Cid8, .. FrameSamples.Token16];
        AssertError(frame, TransportErrorCode.FrameEncodingError, 0x18);
        frame[2] = 0x02;
        Assert.Equal(FrameReadStatus.Frame, ReadOne(frame).Status);
    }

    [Fact]
    public void ConnectionClose_ReasonLengthBeyondPayload_IsFrameEncodingError()
    {
        AssertError([0x1c, 0x01, 0x00, 0x05, 0x61, 0x62], TransportErrorCode.FrameEncodingError, 0x1c);
        AssertError([0x1d, 0x01, 0x05, 0x61, 0x62], TransportErrorCode.FrameEncodingError, 0x1d);
    }

    [Fact]
    public void Ack_FirstRangeBelowZero_IsFrameEncodingError()
    {
        // Largest 5, first range 6 → smallest -1.
        AssertError([0x02, 0x05, 0x00, 0x00, 0x06], TransportErrorCode.FrameEncodingError, 0x02);

        // Largest 5, first range 5 → smallest 0: valid.
        Assert.Equal(FrameReadStatus.Frame, ReadOne([0x02, 0x05, 0x00, 0x00, 0x05]).Status);
    }

    [Fact]
    public void Ack_GapBelowZero_IsFrameEncodingError()
    {
        // Largest 10, first 2 → smallest 8; gap 6 → next largest = 8 - 6 - 2 = 0 (valid), gap 7 → -1.
        Assert.Equal(FrameReadStatus.Frame, ReadOne([0x02, 0x0a, 0x00, 0x01, 0x02, 0x06, 0x00]).Status);
        AssertError([0x02, 0x0a, 0x00, 0x01, 0x02, 0x07, 0x00], TransportErrorCode.FrameEncodingError, 0x02);
    }

    [Fact]
    public void Ack_RangeLengthBelowZero_IsFrameEncodingError()
    {
        // Largest 10, first 2 → smallest 8; gap 0 → next largest 6; length 6 → 0 (valid), length 7 → -1.
        Assert.Equal(FrameReadStatus.Frame, ReadOne([0x03, 0x0a, 0x00, 0x01, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00]).Status);
        AssertError([0x03, 0x0a, 0x00, 0x01, 0x02, 0x00, 0x07, 0x00, 0x00, 0x00], TransportErrorCode.FrameEncodingError, 0x03);
    }

    [Fact]
    public void Ack_HugeRangeCount_IsFrameEncodingError()
    {
        AssertError([0x02, 0x0a, 0x00, .. Varint(VariableLengthInteger.MaxValue), 0x00, 0x00, 0x00], TransportErrorCode.FrameEncodingError, 0x02);
    }

    [Fact]
    public void Ack_HugeGapValues_DoNotOverflow()
    {
        byte[] frame = [0x02, .. Varint(VariableLengthInteger.MaxValue), 0x00, 0x01, 0x00, .. Varint(VariableLengthInteger.MaxValue), 0x00];
        AssertError(frame, TransportErrorCode.FrameEncodingError, 0x02);
        frame = [0x02, .. Varint(VariableLengthInteger.MaxValue), 0x00, 0x01, 0x00, .. Varint(VariableLengthInteger.MaxValue - 2), 0x00];
        var reader = new FrameReader(frame, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Span<ValueRange> ranges = stackalloc ValueRange[4];
        Assert.Equal(2, f.Ack.CopyRanges(ranges));
        Assert.Equal(new ValueRange((long)VariableLengthInteger.MaxValue, (long)VariableLengthInteger.MaxValue + 1), ranges[0]);
        Assert.Equal(new ValueRange(0, 1), ranges[1]);
    }

    [Fact]
    public void Error_AfterValidFrames_ReportsOffendingType()
    {
        byte[] payload = [0x01, 0x00, 0x00, 0x1f];
        var reader = new FrameReader(payload, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out _, out _));
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out _, out _));
        Assert.Equal(FrameReadStatus.Error, reader.TryReadFrame(out _, out TransportError error));
        Assert.Equal(0x1fUL, error.FrameType);
    }

    internal static byte[] Varint(ulong value)
    {
        byte[] b = new byte[VariableLengthInteger.GetLength(value)];
        VariableLengthInteger.Write(b, value);
        return b;
    }
}
