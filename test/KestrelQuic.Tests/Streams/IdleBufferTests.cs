using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

/// <summary>An idle stream (everything written is acknowledged, everything received is read) holds no 4 KiB chunk.</summary>
public sealed class IdleBufferTests
{
    [Fact]
    public void SendBuffer_AllWrittenDataAcknowledged_ReleasesTheChunk_AndLaterWritesStillWork()
    {
        var buffer = new SendBuffer();
        byte[] first = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        Assert.Equal(first.Length, buffer.Write(first));
        Assert.True(buffer.TryGetNext(100, long.MaxValue, out long offset, out int length, out bool fin, out _));
        buffer.MarkSent(offset, length, fin);
        Assert.Equal(1, buffer.HeldChunks);

        buffer.OnAcked(offset, length, fin);
        Assert.Equal(0, buffer.HeldChunks);

        // More data for the same (released) chunk: a fresh chunk, the right bytes.
        byte[] second = [11, 12, 13];
        buffer.Write(second);
        Assert.True(buffer.TryGetNext(100, long.MaxValue, out offset, out length, out fin, out _));
        Assert.Equal(10, offset);
        var copy = new byte[length];
        buffer.CopyTo(offset, copy);
        Assert.Equal(second, copy);
    }

    [Fact]
    public void SendBuffer_PartlyAcknowledged_KeepsTheChunk()
    {
        var buffer = new SendBuffer();
        buffer.Write(new byte[100]);
        Assert.True(buffer.TryGetNext(60, long.MaxValue, out long offset, out int length, out bool fin, out _));
        buffer.MarkSent(offset, length, fin);
        buffer.OnAcked(offset, length, fin);
        Assert.Equal(1, buffer.HeldChunks); // 40 bytes still to send
    }

    [Fact]
    public void ReceiveBuffer_Drained_ReleasesTheChunk_OutOfOrderDataKeepsIt()
    {
        var buffer = new ReceiveBuffer(1 << 20);
        var scratch = new byte[100];
        buffer.Write(0, new byte[] { 1, 2, 3 }, fin: false);
        buffer.Write(10, new byte[] { 9 }, fin: false); // beyond a gap, same chunk
        Assert.Equal(3, buffer.Read(scratch));
        Assert.Equal(1, buffer.HeldChunks);

        buffer.Write(3, new byte[] { 4, 5, 6, 7, 8, 9, 10 }, fin: false);
        Assert.Equal(8, buffer.Read(scratch));
        Assert.Equal(new byte[] { 4, 5, 6, 7, 8, 9, 10, 9 }, scratch[..8]);
        Assert.Equal(0, buffer.HeldChunks);

        buffer.Write(11, new byte[] { 42 }, fin: false);
        Assert.Equal(1, buffer.Read(scratch));
        Assert.Equal(42, scratch[0]);
    }
}
