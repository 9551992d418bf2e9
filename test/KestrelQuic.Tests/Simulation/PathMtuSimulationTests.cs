using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

/// <summary>DPLPMTUD (RFC 9000 §14.3): the datagram size follows what the path carries.</summary>
public sealed class PathMtuSimulationTests
{
    [Fact]
    public void PathCarriesUpperBound_DatagramSizeRisesAndDataUsesIt()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.PathMtuDiscoveryUpperBound = 1452),
            SimulationHelpers.ServerConfig(c => c.PathMtuDiscoveryUpperBound = 1452));
        int largestToServer = 0;
        net.Filter = (toServer, d) =>
        {
            if (toServer) largestToServer = Math.Max(largestToServer, d.Length);
            return true;
        };
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => net.Client.PathMaxDatagramSize == 1452 && net.Server!.PathMaxDatagramSize == 1452, TimeSpan.FromSeconds(5)));

        var pump = new StreamPump(net);
        Assert.True(net.Client.TryOpenStream(bidirectional: false, out ulong id));
        byte[] payload = SimulationHelpers.Payload(200_000, 7);
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        Assert.Equal(1452, largestToServer);
        Assert.True(net.Client.Statistics.PathMtuUpdates >= 1);
    }

    [Fact]
    public void PathDropsLargeDatagrams_SizeSettlesBelowTheLimitWithoutLoss()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.PathMtuDiscoveryUpperBound = 1500),
            SimulationHelpers.ServerConfig(c => c.PathMtuDiscoveryUpperBound = 1500));
        const int PathLimit = 1350;
        int droppedLarge = 0;
        net.Filter = (_, d) =>
        {
            if (d.Length <= PathLimit) return true;
            droppedLarge++;
            return false;
        };
        Assert.True(net.RunUntilHandshakeComplete());

        var pump = new StreamPump(net);
        Assert.True(net.Client.TryOpenStream(bidirectional: false, out ulong id));
        byte[] payload = SimulationHelpers.Payload(2_000_000, 8);
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(30)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));

        // The search converged inside [limit - precision, limit]: probes above it were lost, data never was.
        Assert.InRange(net.Client.PathMaxDatagramSize, PathLimit - 20, PathLimit);
        Assert.True(droppedLarge > 0);
        Assert.Equal(0, net.Client.Statistics.PacketsLost);
    }

    [Fact]
    public void Disabled_StaysAtBaseSize()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.PathMtuDiscoveryUpperBound = 0),
            SimulationHelpers.ServerConfig(c => c.PathMtuDiscoveryUpperBound = 0));
        int largest = 0;
        net.Filter = (_, d) =>
        {
            largest = Math.Max(largest, d.Length);
            return true;
        };
        Assert.True(net.RunUntilHandshakeComplete());
        net.RunFor(TimeSpan.FromSeconds(2));
        Assert.Equal(1200, net.Client.PathMaxDatagramSize);
        Assert.Equal(1200, largest);
    }

    [Fact]
    public void PeerMaxUdpPayloadSize_CapsTheSearch()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.PathMtuDiscoveryUpperBound = 1452),
            SimulationHelpers.ServerConfig(c => { c.PathMtuDiscoveryUpperBound = 1452; c.MaxUdpPayloadSize = 1300; }));
        Assert.True(net.RunUntilHandshakeComplete());
        net.RunFor(TimeSpan.FromSeconds(3));
        Assert.Equal(1300, net.Client.PathMaxDatagramSize);
    }
}
