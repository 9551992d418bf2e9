using KestrelQuic.FlowControl;
using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

[Collection(nameof(AllocationMeasurementCollection))]
public sealed class AllocationTests
{
    [Fact]
    public void ReceiveBuffer_WriteRead_DoesNotAllocate_AfterWarmUp()
    {
        var buffer = new ReceiveBuffer(1 << 20);
        var payload = new byte[1200];
        var destination = new byte[4000];
        long offset = 0;

        void Cycle()
        {
            // Three packets, the first one reordered behind the other two, then the application reads.
            buffer.Write(offset + 1200, payload, fin: false);
            buffer.Write(offset + 2400, payload, fin: false);
            buffer.Write(offset, payload, fin: false);
            buffer.Write(offset + 600, payload, fin: false); // overlap
            buffer.Read(destination.AsSpan(0, 3600));
            offset += 3600;
        }

        for (int i = 0; i < 200; i++) Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) Cycle();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(buffer.HeldChunks <= 1); // only the chunk the read offset is in
    }

    [Fact]
    public void SendBuffer_WriteSendAck_DoesNotAllocate_AfterWarmUp()
    {
        var buffer = new SendBuffer(256 * 1024);
        var data = new byte[5000];
        var frame = new byte[1200];

        void Cycle()
        {
            buffer.Write(data);
            long lostOffset = -1;
            while (buffer.TryGetNext(frame.Length, long.MaxValue, out long offset, out int length, out bool fin, out _))
            {
                buffer.CopyTo(offset, frame.AsSpan(0, length));
                buffer.MarkSent(offset, length, fin);
                if (lostOffset < 0)
                {
                    lostOffset = offset;
                    buffer.OnLost(offset, length, fin); // retransmitted within the same loop
                }
                else
                {
                    buffer.OnAcked(offset, length, fin);
                }
            }
        }

        for (int i = 0; i < 200; i++) Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) Cycle();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(0, allocated);
        Assert.True(buffer.HeldChunks <= 2);
    }

    [Fact]
    public void StreamState_ReceiveAndSend_DoNotAllocate_AfterWarmUp()
    {
        var connRecv = new ReceiveFlowController(1 << 20, 1 << 24);
        var connSend = new SendFlowController(long.MaxValue / 2);
        var stream = new StreamState(0, isServer: false, long.MaxValue / 2, 1 << 20, 1 << 24, connRecv, connSend);
        var payload = new byte[1200];
        var destination = new byte[2400];
        long offset = 0;
        long now = 0;

        void Cycle()
        {
            stream.OnStreamFrame(offset + 1200, payload, false, out _);
            stream.OnStreamFrame(offset, payload, false, out _);
            stream.Read(destination);
            offset += 2400;
            now += 10_000;
            if (stream.NeedsMaxStreamData(now, 1_000_000, out long max)) stream.OnMaxStreamDataSent(max, now);
            if (connRecv.ShouldSendUpdate(now, 1_000_000, out max)) connRecv.OnUpdateSent(max, now);

            stream.Write(payload);
            while (stream.TryGetNextFrame(1000, out long o, out int l, out bool f, out _))
            {
                stream.Send!.CopyTo(o, destination.AsSpan(0, l));
                stream.OnStreamFrameSent(o, l, f);
                stream.OnStreamFrameAcked(o, l, f);
            }
        }

        for (int i = 0; i < 200; i++) Cycle();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++) Cycle();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
