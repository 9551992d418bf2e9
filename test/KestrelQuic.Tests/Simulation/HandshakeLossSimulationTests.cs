using KestrelQuic.Frames;
using KestrelQuic.Packets;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Loss of the client's Handshake flight while it already sends 1-RTT data.</summary>
public sealed class HandshakeLossSimulationTests(ITestOutputHelper output)
{
    /// <summary>
    /// The client's Finished and its first probe are lost; a later Handshake probe (a PING) is acknowledged, so the
    /// Finished is declared lost, while 1-RTT stream data sent meanwhile fills the congestion window. The 1-RTT data
    /// cannot be acknowledged before the server completes the handshake and is not probed before confirmation: the
    /// Finished must still go out (found by the relay with 30% loss: the connection stalled until the idle timeout).
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void ClientHandshakePacketsLost_WhileOneRttDataFillsTheWindow_HandshakeAndTransferComplete(int lostHandshakeDatagrams)
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        int dropped = 0;
        net.Filter = (toServer, d) =>
        {
            if (!toServer || dropped >= lostHandshakeDatagrams || !HasHandshakePacket(d)) return true;
            dropped++;
            return false;
        };

        Assert.True(net.RunUntil(() => net.Client.IsHandshakeComplete, TimeSpan.FromSeconds(10)));
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(20_000, 1);
        pump.Send(net.Client, id, payload);
        bool finished = net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(25));
        output.WriteLine($"{dropped} client Handshake datagrams lost; {net.Client.Statistics.ProbeTimeouts} PTOs; finished {finished}");
        Assert.Equal(lostHandshakeDatagrams, dropped);
        Assert.True(finished, $"stalled: client confirmed {net.Client.IsHandshakeConfirmed}, server complete {net.Server?.IsHandshakeComplete}");
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        Assert.True(net.Client.IsHandshakeConfirmed);
    }

    /// <summary>
    /// RFC 9000 §13.2.5: the server buffers the client's 1-RTT packets that arrive before the client's Finished; when
    /// it acknowledges them, the ACK Delay includes that wait. Reported as zero, the client's RTT sample would take
    /// the wait for path delay (seen with gtlsclient after seconds of handshake loss: a 3 s RTT, PTOs of 9 and 18 s,
    /// and an idle timeout).
    /// </summary>
    [Fact]
    public void OneRttPacketsBufferedForKeys_AckDelayIncludesTheWait()
    {
        var recorder = new FrameRecorder();
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), tracers: recorder);
        var pump = new StreamPump(net);
        byte[]? finished = null;
        net.Filter = (toServer, d) =>
        {
            // Hold back the client's first Handshake flight (its Finished): it will arrive after the 1-RTT data.
            if (!toServer || finished is not null || !HasHandshakePacket(d)) return true;
            finished = d;
            return false;
        };

        Assert.True(net.RunUntil(() => net.Client.IsHandshakeComplete, TimeSpan.FromSeconds(10)));
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(3_000, 2);
        pump.Send(net.Client, id, payload);
        long dataArrival = net.Now + net.ToServer.Delay.Ticks;

        // The data reaches the server, which has no 1-RTT keys to read it until the Finished: it waits there. The
        // Finished comes 30 ms later, before the client's PTO would resend it.
        net.RunFor(TimeSpan.FromMilliseconds(40));
        Assert.NotNull(finished);
        Assert.False(net.Server!.IsHandshakeComplete);
        TimeSpan waited = TimeSpan.FromTicks(net.Now - dataArrival);
        net.Deliver(toServer: true, finished);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));

        RecordedFrame ack = recorder.ServerSent.First(f => f.PacketType == PacketType.OneRtt && f.Type is FrameType.Ack or FrameType.AckEcn);
        TimeSpan reported = TimeSpan.FromTicks((long)(ack.AckDelay << net.ServerConfig.AckDelayExponent) * 10);
        output.WriteLine($"1-RTT data waited {waited.TotalMilliseconds:F1} ms for the Finished; ACK Delay {reported.TotalMilliseconds:F1} ms (largest {ack.LargestAcknowledged})");
        Assert.InRange(reported, waited - TimeSpan.FromMilliseconds(1), waited + TimeSpan.FromMilliseconds(1));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
    }

    private static bool HasHandshakePacket(byte[] datagram)
    {
        for (int offset = 0; offset < datagram.Length && PacketHeaderParser.TryParse(datagram.AsSpan(offset), 8, out PacketHeader h); offset += h.PacketLength)
        {
            if (h.Type == PacketType.Handshake) return true;
            if (!h.IsLongHeader) break;
        }

        return false;
    }
}
