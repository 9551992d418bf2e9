using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class ReceiveBufferTests
{
    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public void TinyFragmentsWithGaps_BeyondMaxRanges_AreRefused_ButFillingAndExtendingStillWork()
    {
        var buffer = new ReceiveBuffer(1 << 20);

        // Fragments at every other offset, last first (each one a new range in front of the others).
        int last = 2 * ReceiveBuffer.MaxRanges;
        for (int offset = last; offset > 0; offset -= 2)
        {
            Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(offset, [1], fin: false));
        }

        Assert.Equal(ReceiveBufferResult.TooManyGaps, buffer.Write(last + 2, [1], fin: false));
        Assert.Equal(ReceiveBufferResult.TooManyGaps, buffer.Write(100_000, [1, 2, 3], fin: true));
        Assert.Null(buffer.FinalSize); // a refused fragment changes nothing

        // Extending a range, or filling a gap, does not add a range.
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(last + 1, [1], fin: false));
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(1, [1], fin: false));
        Assert.Equal(ReceiveBufferResult.Duplicate, buffer.Write(2, [1], fin: false));

        // Reading moves past the first range: room for a new one.
        Assert.Equal(0, buffer.ReadableBytes);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(0, [1], fin: false));
        Assert.Equal(3, buffer.Read(new byte[16]));
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(last + 10, [1], fin: false));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(42)]
    public void RandomFragmentation_Reordering_Duplication_Overlap_ReproducesStream(int seed)
    {
        var rng = new Random(seed);
        byte[] data = Pattern(150_000 + rng.Next(10_000), seed);
        var fragments = new List<(int Offset, int Length)>();

        // A covering split of the stream, plus overlapping and duplicate fragments.
        for (int pos = 0; pos < data.Length;)
        {
            int len = Math.Min(rng.Next(1, 3000), data.Length - pos);
            fragments.Add((pos, len));
            pos += len;
        }

        int extra = fragments.Count;
        for (int i = 0; i < extra; i++)
        {
            int start = rng.Next(data.Length);
            fragments.Add((start, Math.Min(rng.Next(1, 5000), data.Length - start)));
        }

        fragments.AddRange(fragments.GetRange(0, 50));
        fragments.Add((data.Length, 0)); // FIN-only frame
        Shuffle(fragments, rng);

        var buffer = new ReceiveBuffer(data.Length);
        var output = new List<byte>();
        var scratch = new byte[rng.Next(100, 9000)];
        int maxChunks = (data.Length / ChunkRing.ChunkSize) + 2;
        foreach ((int offset, int length) in fragments)
        {
            bool fin = (offset + length == data.Length && rng.Next(3) != 0) || length == 0;
            ReceiveBufferResult result = buffer.Write(offset, data.AsSpan(offset, length), fin);
            Assert.True(result is ReceiveBufferResult.Ok or ReceiveBufferResult.Duplicate, result.ToString());
            Assert.True(buffer.HeldChunks <= maxChunks);
            if (rng.Next(4) == 0)
            {
                int n = buffer.Read(scratch);
                output.AddRange(scratch.AsSpan(0, n).ToArray());
                Assert.Equal(output.Count, buffer.ReadOffset);
            }
        }

        Assert.Equal(data.Length, buffer.HighestReceivedOffset);
        Assert.Equal(data.Length, buffer.FinalSize);
        Assert.True(buffer.IsAllReceived);
        Assert.Equal(data.Length - output.Count, buffer.ReadableBytes);
        int read;
        while ((read = buffer.Read(scratch)) > 0) output.AddRange(scratch.AsSpan(0, read).ToArray());

        Assert.Equal(data, output.ToArray());
        Assert.True(buffer.IsComplete);
        Assert.Equal(0, buffer.HeldChunks);
    }

    [Fact]
    public void LargeWindowedTransfer_MemoryStaysBoundedByWindow()
    {
        const int window = 64 * 1024;
        const int total = 8 * 1024 * 1024;
        var rng = new Random(7);
        var buffer = new ReceiveBuffer(window);
        byte[] source = Pattern(total, 7);
        var scratch = new byte[5000];
        long checkedUpTo = 0;
        long sent = 0;
        var pending = new List<(int Offset, int Length)>();
        while (checkedUpTo < total)
        {
            // The sender may send anything up to ReadOffset + window; fragments are delivered out of order.
            while (sent < Math.Min(total, buffer.ReadOffset + window))
            {
                int len = (int)Math.Min(rng.Next(1, 1400), Math.Min(total, buffer.ReadOffset + window) - sent);
                pending.Add(((int)sent, len));
                sent += len;
            }

            if (pending.Count > 0)
            {
                int take = rng.Next(pending.Count);
                (int o, int l) = pending[take];
                pending.RemoveAt(take);
                Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(o, source.AsSpan(o, l), o + l == total));
                Assert.True(buffer.HeldChunks <= (window / ChunkRing.ChunkSize) + 1, $"held {buffer.HeldChunks}");
            }

            int n = buffer.Read(scratch);
            Assert.True(source.AsSpan((int)checkedUpTo, n).SequenceEqual(scratch.AsSpan(0, n)));
            checkedUpTo += n;
        }

        Assert.True(buffer.IsComplete);
        Assert.Equal(0, buffer.HeldChunks);
    }

    [Fact]
    public void FinalSize_DataBeyondKnownFinalSize_IsError()
    {
        var buffer = new ReceiveBuffer(1000);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(0, new byte[10], fin: true));
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(5, new byte[6], fin: false));
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(10, new byte[1], fin: false));
        Assert.Equal(ReceiveBufferResult.Duplicate, buffer.Write(5, new byte[5], fin: false));
        Assert.Equal(ReceiveBufferResult.Duplicate, buffer.Write(0, new byte[10], fin: true));
        Assert.Equal(ReceiveBufferResult.Duplicate, buffer.Write(10, default, fin: true));
    }

    [Theory]
    [InlineData(12)]
    [InlineData(9)]
    [InlineData(0)]
    public void FinalSize_ChangedByLaterFin_IsError(int otherFinalSize)
    {
        var buffer = new ReceiveBuffer(1000);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(8, new byte[2], fin: true));
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(otherFinalSize, default, fin: true));
        Assert.Equal(10, buffer.FinalSize);
    }

    [Fact]
    public void FinalSize_BelowReceivedData_IsError()
    {
        var buffer = new ReceiveBuffer(1000);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(100, new byte[20], fin: false));
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(0, new byte[50], fin: true));
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(119, default, fin: true));
        Assert.Null(buffer.FinalSize);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(120, default, fin: true));
        Assert.Equal(120, buffer.FinalSize);
        Assert.True(buffer.IsFinReceived);
        Assert.False(buffer.IsAllReceived);
    }

    [Fact]
    public void BufferLimit_IsRelativeToReadOffset()
    {
        var buffer = new ReceiveBuffer(100);
        Assert.Equal(ReceiveBufferResult.BufferExceeded, buffer.Write(90, new byte[11], fin: false));
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(0, Pattern(100, 1), fin: false));
        Assert.Equal(0, buffer.HighestReceivedOffset - 100);
        Assert.Equal(50, buffer.Read(new byte[50]));
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(100, new byte[50], fin: false));
        Assert.Equal(ReceiveBufferResult.BufferExceeded, buffer.Write(150, new byte[1], fin: false));
    }

    [Fact]
    public void Peek_ReturnsChunkSegments_WithoutCopy_AndAdvanceReleasesChunks()
    {
        byte[] data = Pattern(3 * ChunkRing.ChunkSize, 5);
        var buffer = new ReceiveBuffer(1 << 20);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(100, data.AsSpan(100), fin: true));
        Assert.False(buffer.TryPeek(out _)); // gap at [0, 100)
        Assert.Equal(0, buffer.ReadableBytes);
        Assert.Equal(3, buffer.HeldChunks);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(0, data.AsSpan(0, 100), fin: false));
        Assert.Equal(data.Length, buffer.ReadableBytes);

        Assert.True(buffer.TryPeek(out ReadOnlySpan<byte> first));
        Assert.Equal(ChunkRing.ChunkSize, first.Length); // stops at the chunk boundary
        Assert.True(first.SequenceEqual(data.AsSpan(0, ChunkRing.ChunkSize)));
        buffer.Advance(10);
        Assert.True(buffer.TryPeek(out ReadOnlySpan<byte> rest));
        Assert.Equal(ChunkRing.ChunkSize - 10, rest.Length);
        Assert.True(rest.SequenceEqual(data.AsSpan(10, rest.Length)));
        Assert.True(System.Runtime.CompilerServices.Unsafe.AreSame(
            ref System.Runtime.InteropServices.MemoryMarshal.GetReference(first.Slice(10)),
            ref System.Runtime.InteropServices.MemoryMarshal.GetReference(rest)));
        buffer.Advance(rest.Length);
        Assert.Equal(2, buffer.HeldChunks); // the first chunk went back to the pool

        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.Advance((2 * ChunkRing.ChunkSize) + 1));
        Assert.True(buffer.TryPeek(out ReadOnlySpan<byte> second));
        Assert.True(second.SequenceEqual(data.AsSpan(ChunkRing.ChunkSize, ChunkRing.ChunkSize)));
        buffer.Advance(second.Length);
        Assert.True(buffer.TryPeek(out ReadOnlySpan<byte> third));
        buffer.Advance(third.Length);
        Assert.False(buffer.TryPeek(out _));
        Assert.True(buffer.IsComplete);
        Assert.Equal(0, buffer.HeldChunks);
    }

    [Fact]
    public void Discard_ReleasesChunks_ButKeepsValidatingFinalSize()
    {
        var buffer = new ReceiveBuffer(100_000);
        buffer.Write(0, new byte[20_000], fin: false);
        Assert.True(buffer.HeldChunks >= 4);
        buffer.Discard();
        Assert.Equal(0, buffer.HeldChunks);
        Assert.Equal(0, buffer.ReadableBytes);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(20_000, new byte[5_000], fin: true));
        Assert.Equal(0, buffer.HeldChunks);
        Assert.True(buffer.IsAllReceived);
        Assert.Equal(ReceiveBufferResult.FinalSizeError, buffer.Write(25_000, new byte[1], fin: false));
        Assert.False(buffer.IsComplete);
    }

    [Fact]
    public void EmptyStream_FinAtZero_IsCompleteImmediately()
    {
        var buffer = new ReceiveBuffer(10);
        Assert.Equal(ReceiveBufferResult.Ok, buffer.Write(0, default, fin: true));
        Assert.True(buffer.IsAllReceived);
        Assert.True(buffer.IsComplete);
        Assert.Equal(0, buffer.Read(new byte[4]));
    }

    private static void Shuffle<T>(List<T> list, Random rng)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
