using KestrelQuic.Connection;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// Protocol efficiency in simulated time (deterministic, not wall-clock): congestion control, pacing, ACK
/// frequency and window auto-tuning together must fill a clean link.
/// </summary>
public sealed class ThroughputSimulationTests
{
    private readonly ITestOutputHelper _output;

    public ThroughputSimulationTests(ITestOutputHelper output) => _output = output;

    [Theory]
    [InlineData(KestrelQuic.Recovery.CongestionControlAlgorithm.Cubic)]
    [InlineData(KestrelQuic.Recovery.CongestionControlAlgorithm.NewReno)]
    public void CleanLink_TransferUsesMostOfTheCapacity(KestrelQuic.Recovery.CongestionControlAlgorithm algorithm)
    {
        const long linkBytesPerSecond = 12_500_000; // 100 Mbit/s
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.CongestionControl = algorithm),
            SimulationHelpers.ServerConfig(c => c.CongestionControl = algorithm));
        foreach (LinkConditions link in new[] { net.ToServer, net.ToClient })
        {
            link.Delay = TimeSpan.FromMilliseconds(10);
            link.BytesPerSecond = linkBytesPerSecond;
        }

        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        byte[] payload = SimulationHelpers.Payload(10 * 1024 * 1024, 11);
        Assert.True(net.Server!.TryOpenStream(true, out ulong id));
        long start = net.Now;
        pump.Send(net.Server, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Client, id)), TimeSpan.FromMinutes(5)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Client, id));

        double seconds = TimeSpan.FromTicks(net.Now - start).TotalSeconds;
        double utilisation = payload.Length / seconds / linkBytesPerSecond;
        _output.WriteLine($"{algorithm}: 10 MB in {seconds:F2} simulated s, {utilisation:P0} of the link, cwnd {net.Server.Congestion.CongestionWindow}, lost {net.Server.Statistics.PacketsLost}");
        Assert.True(utilisation > 0.6, $"only {utilisation:P0} of the link used ({seconds:F2} s)");
    }
}
