using KestrelQuic.Connection;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// Steady-state allocations of the connection core itself: both ends exchange datagrams directly (no simulator
/// copies, no loss), the receiver decrypts in place, and the application reads into a reused buffer.
/// </summary>
[Collection(nameof(AllocationMeasurementCollection))]
public sealed class AllocationSimulationTests
{
    private readonly ITestOutputHelper _output;

    public AllocationSimulationTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void SteadyStateTransfer_AllocationsPerPacket()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        QuicConnectionCore sender = net.Server!;
        QuicConnectionCore receiver = net.Client;
        Assert.True(sender.TryOpenStream(true, out ulong id));
        byte[] chunk = SimulationHelpers.Payload(64 * 1024, 1);
        byte[] datagram = new byte[1500];
        byte[] readBuffer = new byte[64 * 1024];
        long now = net.Now;
        long received = 0;

        void Run(int rounds)
        {
            for (int r = 0; r < rounds; r++)
            {
                now += TimeSpan.TicksPerMillisecond;
                int offset = 0;
                while (offset < chunk.Length)
                {
                    int n = sender.WriteStream(id, chunk.AsSpan(offset));
                    if (n == 0) break;
                    offset += n;
                }

                for (int i = 0; i < 200; i++)
                {
                    int len = sender.PollDatagram(datagram, now, out _);
                    if (len == 0) break;
                    receiver.ReceiveDatagram(datagram.AsSpan(0, len), SimulatedNetwork.ServerAddress, now);
                    _packets++;
                }

                while (receiver.ReadStream(id, readBuffer, out _) is int read and > 0) received += read;
                while (receiver.TryDequeueEvent(out _)) { }
                while (sender.TryDequeueEvent(out _)) { }
                int ackLen;
                while ((ackLen = receiver.PollDatagram(datagram, now, out _)) > 0)
                {
                    sender.ReceiveDatagram(datagram.AsSpan(0, ackLen), SimulatedNetwork.ClientAddress, now);
                }

                if (sender.NextTimeout <= now) sender.HandleTimeout(now);
                if (receiver.NextTimeout <= now) receiver.HandleTimeout(now);
            }
        }

        Run(300); // warm-up: windows, pools and buffers reach their steady size
        _packets = 0;
        long before = GC.GetAllocatedBytesForCurrentThread();
        long receivedBefore = received;
        Run(300);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(received - receivedBefore > 1024 * 1024, $"only {received - receivedBefore} bytes moved");
        double perPacket = (double)allocated / Math.Max(1, _packets);
        _output.WriteLine($"{_packets} packets, {received - receivedBefore} bytes, {allocated} B allocated: {perPacket:F1} B/packet");

        // The packet path (seal, send, receive, decrypt, ACK, loss detection, stream buffers) does not allocate;
        // what remains is occasional growth of pooled structures, far below one byte per packet.
        Assert.True(perPacket < 1, $"{perPacket:F1} B allocated per packet");
    }

    private long _packets;
}
