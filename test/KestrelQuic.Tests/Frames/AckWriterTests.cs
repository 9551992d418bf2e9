using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Frames;

public sealed class AckWriterTests
{
    // Ranges [0,1), [3,5), [8,11), ... with growing gaps so that the gap/length varints change size.
    private static RangeSet ManyRanges(int count)
    {
        var set = new RangeSet();
        long start = 0;
        for (int i = 0; i < count; i++)
        {
            long length = 1 + (i % 7) * (i % 3 == 0 ? 30 : 1);
            set.Add(start, start + length);
            start += length + 1 + (i % 5) * (i % 4 == 0 ? 100 : 1);
        }

        Assert.Equal(count, set.Count);
        return set;
    }

    private static ValueRange[] Decode(ReadOnlySpan<byte> bytes, out AckSummary summary)
    {
        var reader = new FrameReader(bytes, PacketType.OneRtt);
        Assert.Equal(FrameReadStatus.Frame, reader.TryReadFrame(out Frame frame, out _));
        Assert.Equal(FrameReadStatus.End, reader.TryReadFrame(out _, out _));
        var ranges = new ValueRange[frame.Ack.TotalRangeCount];
        Assert.Equal(ranges.Length, frame.Ack.CopyRanges(ranges));

        // The enumerator yields the same ranges.
        int i = 0;
        foreach (ValueRange r in frame.Ack)
        {
            Assert.Equal(ranges[i++], r);
        }

        Assert.Equal(ranges.Length, i);
        summary = new AckSummary(frame.Ack.AckDelay, frame.Ack.HasEcn, frame.Ack.Ect0, frame.Ack.Ect1, frame.Ack.Ce);
        return ranges;
    }

    private readonly record struct AckSummary(ulong Delay, bool HasEcn, ulong Ect0, ulong Ect1, ulong Ce);

    private static ValueRange[] HighestDescending(RangeSet set, int count)
    {
        ReadOnlySpan<ValueRange> all = set.AsSpan();
        var result = new ValueRange[count];
        for (int i = 0; i < count; i++) result[i] = all[all.Length - 1 - i];
        return result;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(64)]
    [InlineData(300)]
    public void WriteAck_ManyRanges_RoundTrips(int count)
    {
        RangeSet set = ManyRanges(count);
        byte[] buffer = new byte[16384];
        var w = new SpanWriter(buffer);
        Assert.Equal(count, FrameWriter.WriteAck(ref w, set, 0x3fff_ffff, int.MaxValue, (1, 2, 3)));
        Assert.Equal(FrameWriter.GetAckLength(set, 0x3fff_ffff, int.MaxValue, (1, 2, 3)), w.Position);

        ValueRange[] decoded = Decode(w.Written, out AckSummary summary);
        Assert.Equal(HighestDescending(set, count), decoded);
        Assert.Equal(new AckSummary(0x3fff_ffff, true, 1, 2, 3), summary);
    }

    [Fact]
    public void WriteAck_MaxRanges_LimitsToHighest()
    {
        RangeSet set = ManyRanges(50);
        byte[] buffer = new byte[4096];
        var w = new SpanWriter(buffer);
        Assert.Equal(10, FrameWriter.WriteAck(ref w, set, 5, 10, null));
        Assert.Equal(HighestDescending(set, 10), Decode(w.Written, out AckSummary s));
        Assert.False(s.HasEcn);
    }

    [Fact]
    public void WriteAck_ShortOfSpace_WritesHighestRangesThatFit()
    {
        RangeSet set = ManyRanges(200);
        int full = FrameWriter.GetAckLength(set, 100, int.MaxValue, null);
        int minimum = FrameWriter.GetAckLength(set, 100, 1, null);
        for (int space = 0; space <= full; space++)
        {
            byte[] buffer = new byte[space];
            var w = new SpanWriter(buffer);
            int written = FrameWriter.WriteAck(ref w, set, 100, int.MaxValue, null);
            if (space < minimum)
            {
                Assert.Equal(0, written);
                Assert.Equal(0, w.Position);
                continue;
            }

            Assert.InRange(written, 1, 200);
            Assert.True(w.Position <= space);
            Assert.Equal(FrameWriter.GetAckLength(set, 100, written, null), w.Position);

            // Maximal: one more range would not have fitted.
            if (written < 200) Assert.True(FrameWriter.GetAckLength(set, 100, written + 1, null) > space);
            Assert.Equal(HighestDescending(set, written), Decode(w.Written, out _));
        }
    }

    [Fact]
    public void WriteAck_RangeCountVarIntGrows_StillFits()
    {
        // 64 ranges need a 2-byte ACK Range Count (63 additional ranges fit in 1 byte, 64 do not).
        RangeSet set = new();
        for (int i = 0; i < 100; i++) set.Add(i * 2L);
        int len64 = FrameWriter.GetAckLength(set, 0, 64, null);
        int len65 = FrameWriter.GetAckLength(set, 0, 65, null);
        Assert.Equal(len64 + 3, len65); // 2 bytes of range + 1 extra byte of count
        byte[] buffer = new byte[len65 - 1];
        var w = new SpanWriter(buffer);
        Assert.Equal(64, FrameWriter.WriteAck(ref w, set, 0, int.MaxValue, null));
        Assert.Equal(len64, w.Position);
    }

    [Fact]
    public void WriteAck_KnownEncoding()
    {
        var set = new RangeSet();
        set.Add(0, 3);   // 0..2
        set.Add(5, 10);  // 5..9
        byte[] buffer = new byte[32];
        var w = new SpanWriter(buffer);
        Assert.Equal(2, FrameWriter.WriteAck(ref w, set, 25, 8, null));
        // Type 02, Largest 9, Delay 25, Count 1, First 4, Gap = 5 - 2 - 2 = 1, Length 2.
        Assert.Equal("0209190104" + "0102", Convert.ToHexString(w.Written).ToLowerInvariant());
    }

    [Fact]
    public void WriteAck_EmptySet_Throws()
    {
        Assert.Throws<ArgumentException>(() =>
        {
            var w = new SpanWriter(new byte[16]);
            FrameWriter.WriteAck(ref w, new RangeSet(), 0, 1, null);
        });
    }
}
