using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

public sealed class PingSimulationTests
{
    [Fact]
    public void Ping_RequestedBeforeHandshakeConfirmed_IsAcknowledged()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        // Ask as soon as the client's handshake completes: the next packets are still Handshake ones, whose space is
        // discarded once HANDSHAKE_DONE arrives; the ping must ride where an acknowledgement can come back.
        Assert.True(net.RunUntil(() => net.Client.IsHandshakeComplete, TimeSpan.FromSeconds(5)));
        Assert.False(net.Client.IsHandshakeConfirmed);
        net.Client.Ping();
        Assert.True(net.RunUntil(() => net.ClientEvents.Exists(e => e.Kind == ConnectionEventKind.PingAcknowledged), TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public void Ping_LostPacket_IsRetriedUntilAcknowledged()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        net.RunFor(TimeSpan.FromMilliseconds(200));
        int dropped = 0;
        net.Filter = (toServer, _) => !(toServer && dropped++ < 3); // the packets carrying the ping are lost
        net.Client.Ping();
        Assert.True(net.RunUntil(() => net.ClientEvents.Exists(e => e.Kind == ConnectionEventKind.PingAcknowledged), TimeSpan.FromSeconds(10)));
        Assert.True(dropped >= 3);
    }
}
