using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class SendBufferTests
{
    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private readonly record struct Sent(long Offset, int Length, bool Fin, byte[] Bytes);

    private static Sent Take(SendBuffer buffer, int maxLength, long limit = long.MaxValue)
    {
        Assert.True(buffer.TryGetNext(maxLength, limit, out long offset, out int length, out bool fin, out _));
        var bytes = new byte[length];
        Assert.Equal(length, buffer.CopyTo(offset, bytes));
        buffer.MarkSent(offset, length, fin);
        return new Sent(offset, length, fin, bytes);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(9)]
    public void RandomLossAndAck_ReceiverReassemblesExactStream(int seed)
    {
        var rng = new Random(seed);
        byte[] data = Pattern(300_000, seed);
        var sender = new SendBuffer(64 * 1024);
        var receiver = new ReceiveBuffer(data.Length);
        var inFlight = new List<Sent>();
        var output = new MemoryStream();
        var scratch = new byte[8192];
        int written = 0;
        long flowLimit = 20_000;
        int guard = 0;
        while (!sender.IsAllAcked)
        {
            Assert.True(guard++ < 1_000_000);
            if (written < data.Length)
            {
                written += sender.Write(data.AsSpan(written, Math.Min(rng.Next(1, 20_000), data.Length - written)));
                Assert.True(sender.BufferedBytes <= 64 * 1024);
                if (written == data.Length) sender.Finish();
            }

            flowLimit += rng.Next(0, 3000); // the peer keeps raising MAX_STREAM_DATA
            while (rng.Next(4) != 0 && sender.TryGetNext(rng.Next(1, 1500), flowLimit, out long offset, out int length, out bool fin, out _))
            {
                Assert.True(offset + length <= Math.Max(flowLimit, sender.SentOffset));
                var bytes = new byte[length];
                sender.CopyTo(offset, bytes);
                Assert.True(data.AsSpan((int)offset, length).SequenceEqual(bytes));
                sender.MarkSent(offset, length, fin);
                inFlight.Add(new Sent(offset, length, fin, bytes));
            }

            // Resolve some packets: ~20% lost, the rest delivered and acknowledged (in random order).
            for (int i = inFlight.Count - 1; i >= 0; i--)
            {
                if (rng.Next(3) != 0) continue;
                Sent s = inFlight[i];
                inFlight.RemoveAt(i);
                if (rng.Next(5) == 0)
                {
                    sender.OnLost(s.Offset, s.Length, s.Fin);
                }
                else
                {
                    Assert.NotEqual(ReceiveBufferResult.FinalSizeError, receiver.Write(s.Offset, s.Bytes, s.Fin));
                    sender.OnAcked(s.Offset, s.Length, s.Fin);
                }
            }

            // The receiving application reads continuously.
            output.Write(scratch, 0, receiver.Read(scratch));
        }

        int n;
        while ((n = receiver.Read(scratch)) > 0) output.Write(scratch, 0, n);

        Assert.Equal(data.Length, receiver.FinalSize);
        Assert.True(receiver.IsAllReceived);
        Assert.Empty(inFlight);
        Assert.Equal(0, sender.HeldChunks);
        Assert.False(sender.HasPendingData(long.MaxValue));
        Assert.Equal(data, output.ToArray());
        Assert.True(receiver.IsComplete);
    }

    [Fact]
    public void RandomLossAndAck_ContentMatchesByteForByte()
    {
        var rng = new Random(3);
        byte[] data = Pattern(100_000, 3);
        var sender = new SendBuffer();
        sender.Write(data);
        sender.Finish();
        var receiver = new ReceiveBuffer(data.Length);
        var inFlight = new List<Sent>();
        while (!sender.IsAllAcked)
        {
            while (sender.HasPendingData(long.MaxValue))
            {
                inFlight.Add(Take(sender, rng.Next(1, 1400)));
            }

            Shuffle(inFlight, rng);
            foreach (Sent s in inFlight)
            {
                if (rng.Next(3) == 0)
                {
                    sender.OnLost(s.Offset, s.Length, s.Fin);
                }
                else
                {
                    receiver.Write(s.Offset, s.Bytes, s.Fin);
                    sender.OnAcked(s.Offset, s.Length, s.Fin);
                }
            }

            inFlight.Clear();
        }

        var output = new byte[data.Length];
        Assert.Equal(data.Length, receiver.Read(output));
        Assert.Equal(data, output);
        Assert.True(receiver.IsComplete);
    }

    [Fact]
    public void LostData_IsRetransmittedBeforeNewData_LowestOffsetFirst()
    {
        byte[] data = Pattern(10_000, 1);
        var buffer = new SendBuffer();
        buffer.Write(data);
        Sent a = Take(buffer, 1000);
        Sent b = Take(buffer, 1000);
        Sent c = Take(buffer, 1000);
        buffer.OnAcked(b.Offset, b.Length, b.Fin);
        buffer.OnLost(c.Offset, c.Length, c.Fin);
        buffer.OnLost(a.Offset, a.Length, a.Fin);

        Assert.True(buffer.TryGetNext(600, long.MaxValue, out long offset, out int length, out bool fin, out bool retx));
        Assert.Equal((0L, 600, false, true), (offset, length, fin, retx));
        Sent r1 = Take(buffer, 600);
        Assert.Equal(data.AsSpan(0, 600).ToArray(), r1.Bytes);
        Sent r2 = Take(buffer, 5000);
        Assert.Equal((600L, 400), (r2.Offset, r2.Length));
        Sent r3 = Take(buffer, 5000);
        Assert.Equal((2000L, 1000), (r3.Offset, r3.Length));
        Assert.Equal(data.AsSpan(2000, 1000).ToArray(), r3.Bytes);

        Assert.True(buffer.TryGetNext(5000, long.MaxValue, out offset, out length, out _, out retx));
        Assert.Equal((3000L, 5000, false), (offset, length, retx));
    }

    [Fact]
    public void LostRange_PartiallyAcked_OnlyUnackedBytesAreRetransmitted()
    {
        var buffer = new SendBuffer();
        buffer.Write(Pattern(3000, 2));
        Take(buffer, 3000);
        buffer.OnAcked(1000, 500, false);   // e.g. acknowledged through a retransmission
        buffer.OnLost(0, 3000, false);
        Sent first = Take(buffer, 3000);
        Assert.Equal((0L, 1000), (first.Offset, first.Length));
        Sent second = Take(buffer, 3000);
        Assert.Equal((1500L, 1500), (second.Offset, second.Length));
        Assert.False(buffer.HasPendingData(long.MaxValue));

        // A late ack for data already scheduled for retransmission cancels it (spurious loss).
        buffer.OnLost(0, 1000, false);
        buffer.OnAcked(0, 1000, false);
        Assert.False(buffer.HasPendingData(long.MaxValue));
    }

    [Fact]
    public void FlowControlLimit_AppliesToNewDataOnly()
    {
        var buffer = new SendBuffer();
        buffer.Write(Pattern(5000, 3));
        Assert.False(buffer.IsBlockedBy(2000));
        Sent s = Take(buffer, 5000, limit: 2000);
        Assert.Equal((0L, 2000), (s.Offset, s.Length));
        Assert.False(buffer.TryGetNext(5000, 2000, out _, out _, out _, out _));
        Assert.False(buffer.HasPendingData(2000));
        Assert.True(buffer.IsBlockedBy(2000));

        buffer.OnLost(0, 2000, false);
        Assert.True(buffer.HasPendingData(1000));
        Assert.True(buffer.TryGetNext(5000, 1000, out long offset, out int length, out _, out bool retx));
        Assert.Equal((0L, 2000, true), (offset, length, retx)); // not limited by the (lower) flow control limit

        buffer.MarkSent(0, 2000, false);
        Assert.True(buffer.TryGetNext(5000, 4500, out offset, out length, out bool fin, out retx));
        Assert.Equal((2000L, 2500, false, false), (offset, length, fin, retx));
    }

    [Fact]
    public void Fin_IsSentWithLastData()
    {
        var buffer = new SendBuffer();
        buffer.Write(Pattern(100, 4));
        buffer.Finish();
        Sent s = Take(buffer, 60);
        Assert.False(s.Fin);
        s = Take(buffer, 60);
        Assert.Equal((60L, 40, true), (s.Offset, s.Length, s.Fin));
        Assert.False(buffer.HasPendingData(long.MaxValue));
        Assert.True(buffer.IsFinSent);
        buffer.OnAcked(0, 60, false);
        Assert.False(buffer.IsAllAcked);
        buffer.OnAcked(60, 40, true);
        Assert.True(buffer.IsAllAcked);
    }

    [Fact]
    public void Fin_AfterAllDataSent_IsFinOnlyFrame_AndIsRetransmittedWhenLost()
    {
        var buffer = new SendBuffer();
        buffer.Write(Pattern(100, 5));
        Take(buffer, 1000);
        Assert.False(buffer.HasPendingData(long.MaxValue));
        buffer.Finish();
        Assert.True(buffer.HasPendingData(long.MaxValue));
        Assert.True(buffer.TryGetNext(0, long.MaxValue, out long offset, out int length, out bool fin, out bool retx));
        Assert.Equal((100L, 0, true, false), (offset, length, fin, retx));
        buffer.MarkSent(100, 0, true);
        Assert.False(buffer.HasPendingData(long.MaxValue));

        buffer.OnAcked(0, 100, false);
        buffer.OnLost(100, 0, true);
        Assert.True(buffer.TryGetNext(1000, long.MaxValue, out offset, out length, out fin, out retx));
        Assert.Equal((100L, 0, true, true), (offset, length, fin, retx));
        buffer.MarkSent(100, 0, true);
        Assert.False(buffer.IsAllAcked);
        buffer.OnAcked(100, 0, true);
        Assert.True(buffer.IsAllAcked);
    }

    [Fact]
    public void LostFrameWithFin_RetransmitsDataAndFinTogether()
    {
        var buffer = new SendBuffer();
        buffer.Write(Pattern(500, 6));
        buffer.Finish();
        Sent s = Take(buffer, 1000);
        Assert.True(s.Fin);
        buffer.OnLost(0, 500, true);
        Sent r = Take(buffer, 300);
        Assert.Equal((0L, 300, false), (r.Offset, r.Length, r.Fin));
        r = Take(buffer, 300);
        Assert.Equal((300L, 200, true), (r.Offset, r.Length, r.Fin));
        Assert.False(buffer.HasPendingData(long.MaxValue));
    }

    [Fact]
    public void EmptyStream_FinOnly()
    {
        var buffer = new SendBuffer();
        buffer.Finish();
        Sent s = Take(buffer, 100);
        Assert.Equal((0L, 0, true), (s.Offset, s.Length, s.Fin));
        buffer.OnAcked(0, 0, true);
        Assert.True(buffer.IsAllAcked);
    }

    [Fact]
    public void SharedAccount_LimitsStreamsTogether_AcksAndDiscardsGiveRoomBack()
    {
        int chunk = ChunkRing.ChunkSize;
        var account = new SendBufferAccount(3 * chunk);
        var a = new SendBuffer(2 * chunk, account);
        var b = new SendBuffer(2 * chunk, account);
        byte[] data = Pattern(4 * chunk, 8);

        Assert.Equal(2 * chunk, a.Write(data));          // its own limit
        Assert.Equal(chunk, b.Write(data));              // the connection's: 3 chunks in all
        Assert.Equal(0, b.Write(data));
        Assert.Equal(3 * chunk, account.BufferedBytes);

        Take(a, chunk);
        a.OnAcked(0, chunk, false);                      // an acknowledged prefix is released
        Assert.Equal(2 * chunk, account.BufferedBytes);
        Assert.Equal(chunk, b.Write(data.AsSpan(chunk)));
        Assert.Equal(0, a.Write(data));

        b.Discard();                                     // a reset stream gives back all it held, once
        b.Discard();
        Assert.Equal(chunk, account.BufferedBytes);
        Assert.Equal(chunk, a.Write(data.AsSpan(2 * chunk)));
        Assert.Equal(2 * chunk, account.BufferedBytes);
    }

    [Fact]
    public void BufferLimit_AppliesBackpressure_AndAcksFreeChunks()
    {
        int chunk = ChunkRing.ChunkSize;
        var buffer = new SendBuffer(4 * chunk);
        byte[] data = Pattern(10 * chunk, 7);
        Assert.Equal(4 * chunk, buffer.Write(data));
        Assert.Equal(0, buffer.Write(data.AsSpan(4 * chunk)));
        Assert.Equal(4, buffer.HeldChunks);
        Take(buffer, 2 * chunk);
        buffer.OnAcked(chunk, chunk, false);   // not a prefix: nothing freed
        Assert.Equal(4, buffer.HeldChunks);
        Assert.Equal(4 * chunk, buffer.BufferedBytes);
        buffer.OnAcked(0, chunk - 1, false);
        Assert.Equal(4, buffer.HeldChunks);
        buffer.OnAcked(chunk - 1, 1, false);
        Assert.Equal(2, buffer.HeldChunks);
        Assert.Equal(2 * chunk, buffer.BufferedBytes);
        Assert.Equal(2 * chunk, buffer.Write(data.AsSpan(4 * chunk)));
        Assert.Equal(6 * chunk, buffer.WrittenOffset);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.CopyTo(0, new byte[10]));

        var copy = new byte[2 * chunk];
        buffer.CopyTo(3 * chunk, copy);
        Assert.Equal(data.AsSpan(3 * chunk, 2 * chunk).ToArray(), copy);
    }

    [Fact]
    public void Discard_ReleasesEverything()
    {
        var buffer = new SendBuffer();
        buffer.Write(new byte[20_000]);
        Take(buffer, 5000);
        buffer.OnLost(0, 5000, false);
        buffer.Discard();
        Assert.Equal(0, buffer.HeldChunks);
        Assert.False(buffer.HasPendingData(long.MaxValue));
        Assert.False(buffer.TryGetNext(1000, long.MaxValue, out _, out _, out _, out _));
        Assert.Equal(0, buffer.Write(new byte[10]));
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
