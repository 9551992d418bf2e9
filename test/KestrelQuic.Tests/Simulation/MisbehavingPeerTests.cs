using System.Diagnostics;
using KestrelQuic.Connection;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// A peer that floods frames that are each legal on their own: the limits hold (bounded replies, bounded buffered
/// state), and the connection either survives and keeps working or closes with an RFC error code. The per-frame
/// limit violations (stream limit, flow control, optimistic ACK, connection ID limit, CRYPTO buffer) are in
/// <see cref="MalformedFrameTests"/>.
/// </summary>
public sealed class MisbehavingPeerTests(ITestOutputHelper output)
{
    private static SimulatedNetwork Connected()
    {
        var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        return net;
    }

    /// <summary>Sends one 1-RTT packet from the client carrying exactly <paramref name="frames"/>.</summary>
    private static void SendRawPacket(SimulatedNetwork net, byte[] frames)
    {
        net.Client.InjectRawFrames([0, 0, 0, .. frames]);
        net.Client.Ping();
        net.RunFor(TimeSpan.FromMilliseconds(2));
    }

    private static void AssertStillWorks(SimulatedNetwork net)
    {
        var pump = new StreamPump(net);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(100_000, 3);
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(30)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
    }

    [Fact]
    public void PathChallengeFlood_ResponsesBounded_ConnectionKeepsWorking()
    {
        using SimulatedNetwork net = Connected();
        net.RunFor(TimeSpan.FromMilliseconds(500));
        const int Packets = 200, ChallengesPerPacket = 100;
        byte[] frames = new byte[ChallengesPerPacket * 9];
        for (int i = 0; i < ChallengesPerPacket; i++)
        {
            frames[i * 9] = 0x1a;
            frames[i * 9 + 1] = (byte)i;
        }

        long toServer = net.BytesToServer, toClient = net.BytesToClient;
        for (int p = 0; p < Packets; p++)
        {
            SendRawPacket(net, frames);
        }

        net.RunFor(TimeSpan.FromMilliseconds(200));
        long received = net.BytesToServer - toServer, sent = net.BytesToClient - toClient;
        output.WriteLine($"{Packets * ChallengesPerPacket} PATH_CHALLENGEs in {received:N0} bytes; the server sent {sent:N0} bytes");

        // Answering every challenge would take 9 bytes each (RFC 9000 §9.3.3 allows answering only some).
        Assert.True(sent < Packets * ChallengesPerPacket * 9 / 4, $"server sent {sent} bytes");
        Assert.Null(net.Server!.CloseReason);
        Assert.Null(net.Client.CloseReason);
        AssertStillWorks(net);
    }

    [Fact]
    public void TinyStreamFragmentsWithGaps_BeyondMaxRanges_ClosesWithProtocolViolation()
    {
        using SimulatedNetwork net = Connected();

        // 1-byte STREAM frames (OFF|LEN) on stream 0 at every other offset, last first, so every one opens a new gap
        // in front of the others: within the 1 MiB stream window there is room for 512 Ki gaps, and reassembly with
        // that many was quadratic (35 s of CPU for 4,500 such packets). The receiver tracks at most
        // ReceiveBuffer.MaxRanges and then closes the connection.
        const int FramesPerPacket = 110, Packets = 40;
        long offset = 2L * FramesPerPacket * Packets;
        var clock = Stopwatch.StartNew();
        long heapBefore = GC.GetTotalMemory(true);
        int sentPackets = 0;
        for (int p = 0; p < Packets && net.Server!.CloseReason is null; p++)
        {
            var frames = new List<byte>();
            for (int i = 0; i < FramesPerPacket; i++)
            {
                offset -= 2;
                frames.AddRange([0x0e, 0x00, (byte)(0x80 | (offset >> 24)), (byte)(offset >> 16), (byte)(offset >> 8), (byte)offset, 0x01, 0x61]);
            }

            SendRawPacket(net, frames.ToArray());
            sentPackets++;
        }

        net.RunFor(TimeSpan.FromMilliseconds(100));
        long heapGrowth = GC.GetTotalMemory(true) - heapBefore;
        output.WriteLine(
            $"{sentPackets} packets of {FramesPerPacket} 1-byte fragments: server {net.Server!.CloseReason?.ToString() ?? "open"}, " +
            $"heap growth {heapGrowth / 1024:N0} KiB, {clock.ElapsedMilliseconds} ms");

        QuicCloseReason? reason = net.Server.CloseReason;
        Assert.NotNull(reason);
        Assert.False(reason.ClosedByPeer);
        Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, reason.ErrorCode);
        Assert.True(sentPackets < Packets, "the flood was not cut short");
        Assert.True(net.RunUntil(() => net.Client.CloseReason is not null, TimeSpan.FromSeconds(5)));
        Assert.Equal(reason.ErrorCode, net.Client.CloseReason!.ErrorCode);
        Assert.True(heapGrowth < 64L << 20, $"heap grew by {heapGrowth:N0} bytes");
    }

    [Fact]
    public void NewConnectionIdFlood_WhileTheServerCannotSend_ClosesWithConnectionIdLimitError()
    {
        using SimulatedNetwork net = Connected();

        // Every NEW_CONNECTION_ID retires all earlier IDs; with the server's packets blackholed its RETIRE_CONNECTION_ID
        // frames are never acknowledged, so without a bound they would accumulate for as long as the flood lasts.
        net.ToClient.Down = true;
        ulong sequence = 8;
        int packets = 0;
        for (; packets < 300 && net.Server!.CloseReason is null; packets++)
        {
            var frames = new List<byte>();
            for (int i = 0; i < 30; i++, sequence++)
            {
                byte[] seq = [0x80, 0, (byte)(sequence >> 8), (byte)sequence];
                frames.AddRange([0x18, .. seq, .. seq, 8, 1, 2, 3, 4, 5, 6, (byte)(sequence >> 8), (byte)sequence]);
                frames.AddRange(new byte[14]);
                frames.AddRange([(byte)(sequence >> 8), (byte)sequence]);
            }

            SendRawPacket(net, frames.ToArray());
        }

        QuicCloseReason? reason = net.Server!.CloseReason;
        output.WriteLine($"{sequence - 8} NEW_CONNECTION_IDs in {packets} packets: server {reason?.ToString() ?? "open"}");
        Assert.NotNull(reason);
        Assert.Equal((ulong)TransportErrorCode.ConnectionIdLimitError, reason.ErrorCode);
        Assert.True(packets < 300, "the flood was not cut short");
    }

    [Fact]
    public void StreamsOpenedUpToTheLimit_NeverFinished_ServerNeverReads_BufferedBytesBoundedByMaxData()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        bool serverReads = false;
        pump.ReadEnabled = c => c != net.Server || serverReads;
        Assert.True(net.RunUntilHandshakeComplete());

        // Every stream the server allows, each trying to push 64 KiB without FIN: together more than MaxData.
        long maxStreams = net.ServerConfig.MaxBidirectionalStreams;
        var streams = new List<ulong>();
        byte[] payload = SimulationHelpers.Payload(64 * 1024, 11);
        while (net.Client.TryOpenStream(true, out ulong id))
        {
            streams.Add(id);
            pump.Send(net.Client, id, payload, fin: false);
        }

        Assert.Equal(maxStreams, streams.Count);
        long heapBefore = GC.GetTotalMemory(true);
        net.RunFor(TimeSpan.FromSeconds(5));
        long heapGrowth = GC.GetTotalMemory(true) - heapBefore;

        long buffered = streams.Sum(id => net.Server!.GetStream(id)?.Receive?.HighestReceivedOffset ?? 0);
        output.WriteLine($"{streams.Count} streams: server holds {buffered:N0} unread bytes (MaxData {net.ServerConfig.MaxData:N0}); heap growth {heapGrowth / 1024:N0} KiB");
        Assert.Equal(net.ServerConfig.MaxData, buffered); // the connection window is full, and not a byte more
        Assert.True(heapGrowth < 2 * net.ServerConfig.MaxData + (16L << 20), $"heap grew by {heapGrowth:N0} bytes");
        Assert.False(net.Client.TryOpenStream(true, out _)); // no more streams until the server lets some close
        Assert.Null(net.Server!.CloseReason);

        // Once the application reads, everything flows.
        serverReads = true;
        pump.ReadAll();
        Assert.True(net.RunUntil(() => streams.All(id => pump.ReceivedBytes(net.Server, id).Length == payload.Length), TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public void OptimisticAck_CoveringASkippedPacketNumber_ClosesWithProtocolViolation()
    {
        using SimulatedNetwork net = Connected();
        var pump = new StreamPump(net);

        // An honest download: the server skips a 1-RTT packet number now and then, and honest ACKs never cover one.
        Assert.True(net.Server!.TryOpenStream(false, out ulong id));
        byte[] payload = SimulationHelpers.Payload(3 * 1024 * 1024, 12);
        pump.Send(net.Server, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Client, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Client, id));
        Assert.True(net.Server.Statistics.PacketNumbersSkipped > 0, "no packet number was skipped");
        Assert.Null(net.Server.CloseReason);

        // A peer that acknowledges everything up to the largest packet number sent, received or not.
        long largest = net.Server.Loss.LargestSent(PacketNumberSpace.ApplicationData);
        byte[] ack = [0x02, .. Fuzz.Mutator.EncodeVarInt((ulong)largest, 0), 0x00, 0x00, .. Fuzz.Mutator.EncodeVarInt((ulong)largest, 0)];
        SendRawPacket(net, ack);
        Assert.True(net.RunUntil(() => net.Server.CloseReason is not null, TimeSpan.FromSeconds(5)));
        QuicCloseReason reason = net.Server.CloseReason!;
        output.WriteLine($"{net.Server.Statistics.PacketNumbersSkipped} packet numbers skipped of {largest + 1}; {reason}");
        Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, reason.ErrorCode);
        Assert.Contains("skipped", reason.Reason, StringComparison.Ordinal);
    }
}
