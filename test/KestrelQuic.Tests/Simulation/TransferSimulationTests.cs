using System.Diagnostics;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

// The lossy 10 MB transfers bound what the cores allocate per datagram: alone, like the other allocation tests.
[Collection(nameof(AllocationMeasurementCollection))]
public sealed class TransferSimulationTests
{
    private readonly ITestOutputHelper _output;

    /// <summary>
    /// Bound on what the two cores allocate per datagram in the second half of the lossy 10 MB transfer, once the
    /// windows, stream buffers and the shared chunk pool have grown (measured: well under 1 B). The first half
    /// also pays for that growth, about 7 MB in a fresh process; any allocation per packet would exceed this.
    /// </summary>
    private const double MaxCoreBytesPerDatagramUnderLoss = 16;

    public TransferSimulationTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void ThreeStreams_BeyondTheConnectionSendBuffer_AcksWakeTheWritersWithoutWindowUpdates()
    {
        // The client's windows are so large that no MAX_STREAM_DATA is needed. The server's send buffers are small
        // (1 MiB per stream, 2 MiB for the connection, from its own windows) and the path long enough that all of it
        // is in flight at once: writes are refused until acknowledgments release room, and only those wake the writers.
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c =>
            {
                c.MaxStreamData = c.MaxStreamReceiveWindow = 64L << 20;
                c.MaxData = c.MaxConnectionReceiveWindow = 256L << 20;
            }),
            SimulationHelpers.ServerConfig(c =>
            {
                c.MaxStreamData = c.MaxStreamReceiveWindow = 1L << 20;
                c.MaxData = 1L << 20;
                c.MaxConnectionReceiveWindow = 2L << 20;
            }));
        net.ToClient.Delay = net.ToServer.Delay = TimeSpan.FromMilliseconds(50);
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        QuicConnectionCore server = net.Server!;
        Assert.Equal(2L << 20, server.SendBufferLimit);
        var payloads = new Dictionary<ulong, byte[]>();
        for (int i = 0; i < 3; i++)
        {
            Assert.True(server.TryOpenStream(bidirectional: false, out ulong id));
            payloads[id] = SimulationHelpers.Payload(4 * 1024 * 1024, 30 + i);
            pump.Send(server, id, payloads[id]);
        }

        Assert.Equal(server.SendBufferLimit, server.SendBufferedBytes); // 12 MiB asked, 2 MiB taken
        long peak = 0, largestCredit = 0;
        Assert.True(net.RunUntil(() =>
        {
            peak = Math.Max(peak, server.SendBufferedBytes);
            foreach (ulong id in payloads.Keys) largestCredit = Math.Max(largestCredit, server.GetStream(id)?.SendFlow!.MaxData ?? 0);
            return payloads.Keys.All(id => pump.Finished.Contains((net.Client, id)));
        }, TimeSpan.FromSeconds(120)), "the writers were not woken");
        foreach ((ulong id, byte[] payload) in payloads) Assert.Equal(payload, pump.ReceivedBytes(net.Client, id));
        Assert.True(peak <= server.SendBufferLimit);
        Assert.Equal(64L << 20, largestCredit); // the initial window: no MAX_STREAM_DATA woke anyone
        Assert.True(net.RunUntil(() => server.SendBufferedBytes == 0, TimeSpan.FromSeconds(5)), $"{server.SendBufferedBytes} bytes still counted once everything was acknowledged");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Transfer10MB_With10PercentLossAndReordering_ContentVerified(bool clientToServer)
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), seed: 42);
        foreach (LinkConditions link in new[] { net.ToServer, net.ToClient })
        {
            link.LossRate = 0.10;
            link.ReorderRate = 0.10;
            link.Delay = TimeSpan.FromMilliseconds(20);
        }

        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete(TimeSpan.FromSeconds(60)));

        byte[] payload = SimulationHelpers.Payload(10 * 1024 * 1024, 7);
        QuicConnectionCore sender = clientToServer ? net.Client : net.Server!;
        QuicConnectionCore receiver = clientToServer ? net.Server! : net.Client;
        Assert.True(sender.TryOpenStream(bidirectional: true, out ulong id));

        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        long coreAllocatedBefore = net.CoreAllocatedBytes;
        long packetsBefore = net.DatagramsToClient + net.DatagramsToServer;
        long simulatedStart = net.Now;
        var sw = Stopwatch.StartNew();
        pump.Send(sender, id, payload);
        Assert.True(net.RunUntil(() => pump.Received.TryGetValue((receiver, id), out MemoryStream? r) && r.Length >= payload.Length / 2, TimeSpan.FromMinutes(10)), "first half did not arrive");
        long halfPackets = net.DatagramsToClient + net.DatagramsToServer;
        long halfCoreAllocated = net.CoreAllocatedBytes;
        Assert.True(net.RunUntil(() => pump.Finished.Contains((receiver, id)), TimeSpan.FromMinutes(10)), "transfer did not finish");
        sw.Stop();
        long packets = net.DatagramsToClient + net.DatagramsToServer - packetsBefore;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        long coreAllocated = net.CoreAllocatedBytes - coreAllocatedBefore;
        double secondHalf = (double)(net.CoreAllocatedBytes - halfCoreAllocated) / Math.Max(1, net.DatagramsToClient + net.DatagramsToServer - halfPackets);

        Assert.Equal(payload, pump.ReceivedBytes(receiver, id));
        double corePerPacket = (double)coreAllocated / Math.Max(1, packets);
        _output.WriteLine($"10 MB with 10% loss: wall {sw.ElapsedMilliseconds} ms, simulated {TimeSpan.FromTicks(net.Now - simulatedStart).TotalSeconds:F1} s, {packets} datagrams, lost {sender.Statistics.PacketsLost}; allocated per datagram: {corePerPacket:F1} B by the two connection cores (second half {secondHalf:F1} B), {allocated / Math.Max(1, packets)} B including the simulator's copies");

        // The per-packet path does not allocate, also under loss (retransmission, loss detection, reassembly).
        Assert.True(secondHalf < MaxCoreBytesPerDatagramUnderLoss, $"the connection cores allocated {secondHalf:F1} B per datagram in the second half");
    }

    [Fact]
    public void ThousandConcurrentStreams_AllDelivered()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(),
            SimulationHelpers.ServerConfig(c => c.MaxBidirectionalStreams = 1000));
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());

        var ids = new List<ulong>();
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(net.Client.TryOpenStream(true, out ulong id), $"stream {i}");
            ids.Add(id);
            pump.Send(net.Client, id, SimulationHelpers.Payload(1000 + i, i));
        }

        // The peer's limit is exactly 1000: the next one must wait.
        Assert.False(net.Client.TryOpenStream(true, out _));
        Assert.True(net.RunUntil(() => ids.All(id => pump.Finished.Contains((net.Server!, id))), TimeSpan.FromSeconds(60)));
        for (int i = 0; i < ids.Count; i++)
        {
            Assert.Equal(SimulationHelpers.Payload(1000 + i, i), pump.ReceivedBytes(net.Server!, ids[i]));
        }
    }

    [Fact]
    public void FlowControl_BlocksAndUnblocks()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(),
            SimulationHelpers.ServerConfig(c =>
            {
                c.MaxData = 64 * 1024;
                c.MaxStreamData = 16 * 1024;
                c.MaxConnectionReceiveWindow = 64 * 1024;
                c.MaxStreamReceiveWindow = 16 * 1024;
            }));
        var pump = new StreamPump(net);
        bool serverReads = false;
        pump.ReadEnabled = c => c != net.Server || serverReads;
        Assert.True(net.RunUntilHandshakeComplete());

        byte[] payload = SimulationHelpers.Payload(1024 * 1024, 3);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        pump.Send(net.Client, id, payload);
        net.RunFor(TimeSpan.FromSeconds(2));

        // The server does not read: the client is stuck at the stream window.
        Assert.Equal(16 * 1024, net.Server!.GetStream(id)!.Receive!.HighestReceivedOffset);
        Assert.Equal(16 * 1024, net.Client.GetStream(id)!.Send!.SentOffset);

        serverReads = true;
        pump.ReadAll();
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server, id)), TimeSpan.FromSeconds(120)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server, id));
    }

    /// <summary>Connects, starts a 2 MB client-to-server stream and runs until the server has received 256 KB of it.</summary>
    private static SimulatedNetwork StartTwoMegabyteUpload(int seed, out StreamPump pump, out ulong id, out byte[] payload)
    {
        var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        payload = SimulationHelpers.Payload(2 * 1024 * 1024, seed);
        Assert.True(net.Client.TryOpenStream(true, out ulong streamId));
        pump.Send(net.Client, streamId, payload);
        Assert.True(net.RunUntil(() => net.Server!.GetStream(streamId)?.Receive?.HighestReceivedOffset > 256 * 1024, TimeSpan.FromSeconds(30)));
        id = streamId;
        return net;
    }

    [Fact]
    public void KeyUpdate_MidTransfer_BothSidesMoveToNewPhase()
    {
        using SimulatedNetwork net = StartTwoMegabyteUpload(seed: 5, out StreamPump pump, out ulong id, out byte[] payload);

        Assert.True(net.Client.RequestKeyUpdate(net.Now));
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        Assert.Equal(1, net.Client.Statistics.KeyUpdates);
        Assert.Equal(1, net.Server!.Statistics.KeyUpdates);

        // A second update is allowed once the first was acknowledged.
        Assert.True(net.Client.RequestKeyUpdate(net.Now));
        net.Client.Ping();
        Assert.True(net.RunUntil(() => net.Server.Statistics.KeyUpdates == 2, TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void KeyUpdateInterval_RenewsKeysByItself_EachUpdateWaitsForTheLastToBeAcknowledged()
    {
        QuicConfiguration clientConfig = SimulationHelpers.ClientConfig();
        clientConfig.KeyUpdateInterval = 200;
        using var net = new SimulatedNetwork(clientConfig, SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        byte[] payload = SimulationHelpers.Payload(2 * 1024 * 1024, 6);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));

        // About 1,500 packets carry 2 MB: an update once 200 packets were sealed under a key, started only after a
        // packet of the current phase was acknowledged (a window of packets may be in flight by then); the server
        // follows every one and starts none of its own.
        long updates = net.Client.Statistics.KeyUpdates;
        Assert.InRange(updates, 3, net.Client.Statistics.PacketsSent / 200);
        Assert.Equal(updates, net.Server!.Statistics.KeyUpdates);
    }

    [Fact]
    public void KeyUpdate_ReorderedPacketOfTheOldPhase_DecryptsUntilTheOldKeysAreDiscarded()
    {
        using SimulatedNetwork net = StartTwoMegabyteUpload(seed: 11, out StreamPump pump, out ulong id, out byte[] payload);

        // Hold back two 1-RTT datagrams sent in key phase 0, as if the network delayed them past the update.
        var held = new List<byte[]>();
        net.Filter = (toServer, datagram) =>
        {
            if (!toServer || (datagram[0] & 0x80) != 0 || held.Count == 2) return true;
            held.Add((byte[])datagram.Clone());
            return false;
        };
        Assert.True(net.RunUntil(() => held.Count == 2, TimeSpan.FromSeconds(5)));
        net.Filter = null;
        Assert.True(net.Client.RequestKeyUpdate(net.Now));
        Assert.True(net.RunUntil(() => net.Server!.Statistics.KeyUpdates == 1, TimeSpan.FromSeconds(5)));
        ConnectionStatistics server = net.Server!.Statistics;

        // RFC 9001 §6.5: the previous read keys are kept for a while, so a late packet of the old phase still
        // decrypts (received, or dropped as a duplicate of what was retransmitted) and starts no second update.
        long failures = server.DecryptionFailures;
        long handled = server.PacketsReceived + server.PacketsDropped;
        net.Server.ReceiveDatagram((byte[])held[0].Clone(), SimulatedNetwork.ClientAddress, net.Now);
        Assert.Equal(failures, server.DecryptionFailures);
        Assert.Equal(handled + 1, server.PacketsReceived + server.PacketsDropped);
        Assert.Equal(1, server.KeyUpdates);

        // Three PTOs later they are gone: the same kind of packet no longer decrypts, and is not taken for an update.
        net.RunFor(TimeSpan.FromSeconds(3));
        failures = server.DecryptionFailures;
        long received = server.PacketsReceived;
        net.Server.ReceiveDatagram((byte[])held[1].Clone(), SimulatedNetwork.ClientAddress, net.Now);
        Assert.Equal(failures + 1, server.DecryptionFailures);
        Assert.Equal(received, server.PacketsReceived);
        Assert.Equal(1, server.KeyUpdates);
        Assert.Null(net.Server.CloseReason);

        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server, id));
    }

    [Fact]
    public void Datagrams_DeliveredWhenNegotiated()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.MaxDatagramFrameSize = 1200),
            SimulationHelpers.ServerConfig(c => c.MaxDatagramFrameSize = 1200));
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.SendDatagram("hello"u8));
        Assert.True(net.RunUntil(() => net.ServerEvents.Any(e => e.Kind == ConnectionEventKind.DatagramReceived), TimeSpan.FromSeconds(1)));
        Assert.Equal("hello"u8.ToArray(), net.ServerEvents.First(e => e.Kind == ConnectionEventKind.DatagramReceived).Data);
    }

    [Fact]
    public void Datagrams_RefusedWhenPeerDidNotNegotiate()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(c => c.MaxDatagramFrameSize = 1200), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.False(net.Client.SendDatagram("hello"u8));
    }
}
