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
            if (!toServer || dropped >= lostHandshakeDatagrams) return true;
            for (int offset = 0; offset < d.Length && PacketHeaderParser.TryParse(d.AsSpan(offset), 8, out PacketHeader h); offset += h.PacketLength)
            {
                if (h.Type == PacketType.Handshake)
                {
                    dropped++;
                    return false;
                }

                if (!h.IsLongHeader) break;
            }

            return true;
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
}
