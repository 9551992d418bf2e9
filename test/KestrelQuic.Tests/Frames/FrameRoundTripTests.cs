using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Frames;

public sealed class FrameRoundTripTests
{
    public static TheoryData<string> SampleNames => FrameSamples.Names();

    [Theory]
    [MemberData(nameof(SampleNames))]
    public void Encode_LengthFunctionMatchesBytesWritten(string name)
    {
        FrameSample sample = FrameSamples.Get(name);
        Assert.Equal(sample.ExpectedLength, sample.Bytes.Length);
        Assert.Equal(sample.RawType, sample.Bytes[0]);
    }

    [Theory]
    [MemberData(nameof(SampleNames))]
    public void Decode_RoundTripsEveryFrameType(string name)
    {
        FrameSample sample = FrameSamples.Get(name);
        var reader = new FrameReader(sample.Bytes, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame frame, out _));
        Assert.Equal(sample.RawType, frame.RawType);
        Assert.Equal(sample.Bytes.Length, frame.EncodedLength);
        byte[] payload = FrameSamples.Payload;

        switch (sample.RawType)
        {
            case 0x00:
                Assert.Equal(FrameType.Padding, frame.Type);
                break;
            case 0x01:
                Assert.Equal(FrameType.Ping, frame.Type);
                break;
            case 0x02:
            case 0x03:
                Assert.Equal(sample.RawType == 0x03 ? FrameType.AckEcn : FrameType.Ack, frame.Type);
                AckFrame ack = frame.Ack;
                Assert.Equal(100004, ack.LargestAcknowledged);
                Assert.Equal(1234UL, ack.AckDelay);
                Assert.Equal(4, ack.FirstAckRange);
                Assert.Equal(3, ack.RangeCount);
                Assert.Equal(4, ack.TotalRangeCount);
                Assert.Equal(0, ack.SmallestAcknowledged);
                var ranges = new ValueRange[8];
                Assert.Equal(4, ack.CopyRanges(ranges));
                Assert.Equal(
                    new[] { new ValueRange(100000, 100005), new ValueRange(20, 400), new ValueRange(10, 11), new ValueRange(0, 3) },
                    ranges[..4]);
                Assert.Equal(sample.RawType == 0x03, ack.HasEcn);
                if (ack.HasEcn)
                {
                    Assert.Equal((7UL, 8UL, 70000UL), (ack.Ect0, ack.Ect1, ack.Ce));
                }

                break;
            case 0x04:
                Assert.Equal(FrameType.ResetStream, frame.Type);
                Assert.Equal((4UL, 0x1234UL, 1_000_000UL), (frame.StreamId, frame.ErrorCode, frame.FinalSize));
                break;
            case 0x05:
                Assert.Equal(FrameType.StopSending, frame.Type);
                Assert.Equal((8UL, 77UL), (frame.StreamId, frame.ErrorCode));
                break;
            case 0x06:
                Assert.Equal(FrameType.Crypto, frame.Type);
                Assert.Equal(1000UL, frame.Offset);
                Assert.Equal(payload, frame.Data.ToArray());
                break;
            case 0x07:
                Assert.Equal(FrameType.NewToken, frame.Type);
                Assert.Equal(FrameSamples.Token16, frame.Data.ToArray());
                break;
            case >= 0x08 and <= 0x0f:
                Assert.Equal(FrameType.Stream, frame.Type);
                Assert.Equal(5UL, frame.StreamId);
                Assert.Equal((sample.RawType & 4) != 0 ? 70000UL : 0UL, frame.Offset);
                Assert.Equal((sample.RawType & 1) != 0, frame.Fin);
                Assert.Equal(payload, frame.Data.ToArray());
                break;
            case 0x10:
                Assert.Equal(FrameType.MaxData, frame.Type);
                Assert.Equal(1UL << 40, frame.Maximum);
                break;
            case 0x11:
                Assert.Equal(FrameType.MaxStreamData, frame.Type);
                Assert.Equal((3UL, 65536UL), (frame.StreamId, frame.Maximum));
                break;
            case 0x12:
                Assert.Equal(FrameType.MaxStreamsBidi, frame.Type);
                Assert.True(frame.IsBidirectional);
                Assert.Equal(100UL, frame.Maximum);
                break;
            case 0x13:
                Assert.Equal(FrameType.MaxStreamsUni, frame.Type);
                Assert.False(frame.IsBidirectional);
                Assert.Equal(1UL << 60, frame.Maximum);
                break;
            case 0x14:
                Assert.Equal(FrameType.DataBlocked, frame.Type);
                Assert.Equal(16384UL, frame.Maximum);
                break;
            case 0x15:
                Assert.Equal(FrameType.StreamDataBlocked, frame.Type);
                Assert.Equal((7UL, 99UL), (frame.StreamId, frame.Maximum));
                break;
            case 0x16:
                Assert.Equal(FrameType.StreamsBlockedBidi, frame.Type);
                Assert.Equal(10UL, frame.Maximum);
                break;
            case 0x17:
                Assert.Equal(FrameType.StreamsBlockedUni, frame.Type);
                Assert.Equal(300UL, frame.Maximum);
                break;
            case 0x18:
                Assert.Equal(FrameType.NewConnectionId, frame.Type);
                Assert.Equal((9UL, 2UL), (frame.SequenceNumber, frame.RetirePriorTo));
                Assert.Equal(FrameSamples.Cid8, frame.Data.ToArray());
                Assert.Equal(FrameSamples.Token16, frame.StatelessResetToken.ToArray());
                break;
            case 0x19:
                Assert.Equal(FrameType.RetireConnectionId, frame.Type);
                Assert.Equal(1000UL, frame.SequenceNumber);
                break;
            case 0x1a:
            case 0x1b:
                Assert.Equal(sample.RawType == 0x1a ? FrameType.PathChallenge : FrameType.PathResponse, frame.Type);
                Assert.Equal(FrameSamples.PathData, frame.Data.ToArray());
                break;
            case 0x1c:
                Assert.Equal(FrameType.ConnectionClose, frame.Type);
                Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, frame.ErrorCode);
                Assert.Equal(6UL, frame.FrameTypeInClose);
                Assert.Equal(payload, frame.Data.ToArray());
                break;
            case 0x1d:
                Assert.Equal(FrameType.ConnectionCloseApplication, frame.Type);
                Assert.Equal(0x4242UL, frame.ErrorCode);
                Assert.Equal(0UL, frame.FrameTypeInClose);
                Assert.Equal(payload, frame.Data.ToArray());
                break;
            case 0x1e:
                Assert.Equal(FrameType.HandshakeDone, frame.Type);
                break;
            case 0x30:
            case 0x31:
                Assert.Equal(sample.RawType == 0x30 ? FrameType.Datagram : FrameType.DatagramWithLength, frame.Type);
                Assert.Equal(payload, frame.Data.ToArray());
                break;
            default:
                Assert.Fail("Unexpected sample " + name);
                break;
        }

        Assert.Equal(FrameReadStatus.End, reader.TryReadFrame(out _, out _));
    }

    [Fact]
    public void Decode_AllSamplesConcatenated_InOnePayload()
    {
        var payload = new List<byte>();
        List<FrameSample> samples = FrameSamples.All();
        foreach (FrameSample s in samples)
        {
            // Frames without a length must be last; PADDING runs would merge with a following PADDING only.
            if (!s.ImplicitLength || s.RawType is 0x01 or 0x1e) payload.AddRange(s.Bytes);
        }

        var reader = new FrameReader(payload.ToArray(), PacketType.OneRtt);
        int count = 0;
        while (reader.TryReadFrame(out Frame frame, out _) == FrameReadStatus.Frame)
        {
            count++;
        }

        Assert.Equal(samples.Count(s => !s.ImplicitLength || s.RawType is 0x01 or 0x1e), count);
        Assert.Equal(payload.Count, reader.Position);
    }

    [Fact]
    public void Decode_PaddingRunsCollapse()
    {
        byte[] payload = [0, 0, 0, 1, 0];
        var reader = new FrameReader(payload, PacketType.Initial);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Assert.Equal(FrameType.Padding, f.Type);
        Assert.Equal(3, f.EncodedLength);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out f, out _));
        Assert.Equal(FrameType.Ping, f.Type);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out f, out _));
        Assert.Equal(FrameType.Padding, f.Type);
        Assert.Equal(1, f.EncodedLength);
        Assert.Equal(FrameReadStatus.End, reader.TryReadFrame(out _, out _));
    }

    [Fact]
    public void Decode_EmptyPayload_End()
    {
        var reader = new FrameReader([], PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.End, reader.TryReadFrame(out _, out _));
    }

    [Fact]
    public void Decode_StreamWithoutLength_ExtendsToEndOfPacket()
    {
        byte[] bytes = FrameSamples.Encode(64, (ref SpanWriter w) => FrameWriter.WriteStream(ref w, 0, 0, [1, 2, 3], fin: true, explicitLength: false));
        Assert.Equal("0900010203", Convert.ToHexString(bytes));
        var reader = new FrameReader(bytes, PacketType.ZeroRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Assert.True(f.Fin);
        Assert.Equal(0x09UL, f.RawType);
        Assert.Equal(new byte[] { 1, 2, 3 }, f.Data.ToArray());
    }

    [Fact]
    public void Decode_EmptyStreamFrameWithFin()
    {
        byte[] bytes = FrameSamples.Encode(64, (ref SpanWriter w) => FrameWriter.WriteStream(ref w, 4, 100, [], fin: true, explicitLength: true));
        Assert.Equal("0f04406400", Convert.ToHexString(bytes).ToLowerInvariant());
        var reader = new FrameReader(bytes, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Assert.True(f.Fin);
        Assert.Equal(100UL, f.Offset);
        Assert.True(f.Data.IsEmpty);
    }

    [Fact]
    public void Decode_StreamAtMaximumOffset_Accepted()
    {
        // offset + length == 2^62 - 1 is the largest permitted (RFC 9000 §19.8).
        ulong offset = VariableLengthInteger.MaxValue - 2;
        byte[] bytes = FrameSamples.Encode(64, (ref SpanWriter w) => FrameWriter.WriteStream(ref w, 0, offset, [1, 2], false, true));
        var reader = new FrameReader(bytes, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Assert.Equal(offset, f.Offset);
    }

    [Fact]
    public void Decode_AckWithoutRanges_FirstRangeOnly()
    {
        // ACK largest 0, delay 0, count 0, first range 0 acknowledges packet 0 only.
        var reader = new FrameReader(Convert.FromHexString("0200000000"), PacketType.Initial);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame f, out _));
        Span<ValueRange> ranges = stackalloc ValueRange[2];
        Assert.Equal(1, f.Ack.CopyRanges(ranges));
        Assert.Equal(new ValueRange(0, 1), ranges[0]);
    }

    [Fact]
    public void FrameRules_Flags()
    {
        Assert.False(FrameRules.IsAckEliciting(FrameType.Padding));
        Assert.False(FrameRules.IsAckEliciting(FrameType.Ack));
        Assert.False(FrameRules.IsAckEliciting(FrameType.AckEcn));
        Assert.False(FrameRules.IsAckEliciting(FrameType.ConnectionClose));
        Assert.False(FrameRules.IsAckEliciting(FrameType.ConnectionCloseApplication));
        Assert.True(FrameRules.IsAckEliciting(FrameType.Ping));
        Assert.True(FrameRules.IsAckEliciting(FrameType.Stream));
        Assert.True(FrameRules.IsAckEliciting(FrameType.Datagram));
        Assert.True(FrameRules.IsAckEliciting(FrameType.HandshakeDone));

        Assert.True(FrameRules.IsCountedInFlight(FrameType.Padding));
        Assert.True(FrameRules.IsCountedInFlight(FrameType.Crypto));
        Assert.False(FrameRules.IsCountedInFlight(FrameType.Ack));
        Assert.False(FrameRules.IsCountedInFlight(FrameType.ConnectionClose));

        Assert.True(FrameRules.IsProbing(FrameType.PathChallenge));
        Assert.True(FrameRules.IsProbing(FrameType.PathResponse));
        Assert.True(FrameRules.IsProbing(FrameType.NewConnectionId));
        Assert.True(FrameRules.IsProbing(FrameType.Padding));
        Assert.False(FrameRules.IsProbing(FrameType.Ping));
        Assert.False(FrameRules.IsProbing(FrameType.Stream));
    }

    [Fact]
    public void Decode_DoesNotAllocate()
    {
        List<FrameSample> samples = FrameSamples.All();
        byte[][] payloads = samples.Select(s => s.Bytes).ToArray();
        var ranges = new ValueRange[8];
        DecodeAll(payloads, ranges); // warm up
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) DecodeAll(payloads, ranges);
        long after = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(0, after - before);

        static void DecodeAll(byte[][] payloads, ValueRange[] ranges)
        {
            foreach (byte[] p in payloads)
            {
                var reader = new FrameReader(p, PacketType.OneRtt);
                while (reader.TryReadFrame(out Frame f, out _) == FrameReadStatus.Frame)
                {
                    if (f.Type is FrameType.Ack or FrameType.AckEcn) f.Ack.CopyRanges(ranges);
                }
            }
        }
    }

    [Fact]
    public void Encode_DoesNotAllocate()
    {
        byte[] buffer = new byte[2048];
        RangeSet ranges = FrameSamples.AckRanges();
        byte[] data = FrameSamples.Payload;
        byte[] cid = FrameSamples.Cid8;
        byte[] token = FrameSamples.Token16;
        EncodeAll(buffer, ranges, data, cid, token);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++) EncodeAll(buffer, ranges, data, cid, token);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        static void EncodeAll(byte[] buffer, RangeSet ranges, byte[] data, byte[] cid, byte[] token)
        {
            var w = new SpanWriter(buffer);
            FrameWriter.WriteAck(ref w, ranges, 10, 64, (1, 2, 3));
            FrameWriter.WriteStream(ref w, 4, 1000, data, true, true);
            FrameWriter.WriteCrypto(ref w, 0, data);
            FrameWriter.WriteNewConnectionId(ref w, 3, 1, cid, token);
            FrameWriter.WriteConnectionClose(ref w, 1, 2, data);
            FrameWriter.WriteDatagram(ref w, data, true);
            FrameWriter.WritePadding(ref w, 10);
        }
    }
}
