using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Bad input never kills anything: random and mutated datagrams hit both ends; the connection survives and still works.</summary>
public sealed class GarbageDatagramTests
{
    [Fact]
    public void RandomAndMutatedDatagrams_AreDroppedAndTheConnectionKeepsWorking()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        var captured = new List<byte[]>();
        net.Filter = (_, d) =>
        {
            if (captured.Count < 200) captured.Add((byte[])d.Clone());
            return true;
        };
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.TryOpenStream(true, out ulong warmup));
        pump.Send(net.Client, warmup, SimulationHelpers.Payload(50_000, 1));
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, warmup)), TimeSpan.FromSeconds(10)));

        var random = new Random(77);
        QuicConnectionCore[] targets = { net.Client, net.Server! };
        for (int i = 0; i < 20_000; i++)
        {
            byte[] datagram;
            switch (random.Next(4))
            {
                case 0: // pure garbage
                    datagram = new byte[random.Next(1, 1500)];
                    random.NextBytes(datagram);
                    break;
                case 1: // a real datagram with a few bytes flipped (authentication must reject it)
                    datagram = (byte[])captured[random.Next(captured.Count)].Clone();
                    for (int m = 0; m < 1 + random.Next(4); m++) datagram[random.Next(datagram.Length)] ^= (byte)(1 + random.Next(255));
                    break;
                case 2: // a real datagram truncated anywhere
                    byte[] source = captured[random.Next(captured.Count)];
                    datagram = source.AsSpan(0, random.Next(1, source.Length)).ToArray();
                    break;
                default: // replay of a real datagram (duplicate packet numbers, old keys)
                    datagram = (byte[])captured[random.Next(captured.Count)].Clone();
                    break;
            }

            QuicConnectionCore target = targets[random.Next(2)];
            target.ReceiveDatagram(datagram, target == net.Client ? SimulatedNetwork.ServerAddress : SimulatedNetwork.ClientAddress, net.Now);
        }

        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server!.CloseReason);

        net.Filter = null;
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(200_000, 2);
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server, id)), TimeSpan.FromSeconds(30)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server, id));
        Assert.True(net.Server.Statistics.PacketsDropped + net.Client.Statistics.PacketsDropped > 1000);
    }
}
