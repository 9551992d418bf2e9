using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointHandshakeTests
{
    [Fact]
    public void Handshake_ThroughEndpoints_AcceptsAndCarriesStreamDataBothWays()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.Equal(1, pair.Client.ConnectionCount);
        Assert.Equal(1, pair.Client.HandshakesInProgress);

        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = Assert.Single(pair.Accepted);
        Assert.Equal([EndpointEventKind.ConnectionAccepted], pair.EndpointEventsOf(pair.Server).Select(e => e.Kind));
        Assert.Same(server, pair.EndpointEventsOf(pair.Server)[0].Connection);
        Assert.Empty(pair.EndpointEventsOf(pair.Client));
        Assert.True(client.Core.IsHandshakeComplete);
        Assert.True(server.Core.IsHandshakeComplete);
        Assert.Equal(ConnectionState.Established, client.Core.State);
        Assert.Equal(ConnectionState.Established, server.Core.State);
        Assert.Equal(EndpointPair.ClientAddress, server.Core.RemoteAddress);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(0, pair.Server.Statistics.RetrySent);
        Assert.Equal(0, pair.Server.HandshakesInProgress);
        Assert.Equal(0, pair.Client.HandshakesInProgress);
        Assert.Equal(1, client.Id);
        Assert.Equal(1, server.Id);

        byte[] up = SimulationHelpers.Payload(100 * 1024, 1);
        byte[] down = SimulationHelpers.Payload(100 * 1024, 2);
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        pair.SendStream(client, streamId, up);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, streamId)), TimeSpan.FromSeconds(10)));
        pair.SendStream(server, streamId, down);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((client, streamId)), TimeSpan.FromSeconds(10)));

        Assert.Equal(up, pair.ReceivedBytes(server, streamId));
        Assert.Equal(down, pair.ReceivedBytes(client, streamId));
        Assert.Equal(1, pair.Server.ConnectionCount);
        Assert.Equal(1, pair.Client.ConnectionCount);

        // Nothing reached the endpoints that they had to drop.
        foreach (QuicEndpointCore endpoint in new[] { pair.Client, pair.Server })
        {
            EndpointStatistics s = endpoint.Statistics;
            Assert.Equal(0, s.DroppedMalformed + s.DroppedNoConnection + s.DroppedTooShort + s.DroppedUnsupportedVersion + s.StatelessResetsSent);
        }

        Assert.Equal(pair.Sent.Count(d => d.To.Equals(EndpointPair.ServerAddress)), pair.Server.Statistics.DatagramsReceived + pair.InFlightTo(EndpointPair.ServerAddress));
        Assert.Equal(pair.Sent.Count(d => d.To.Equals(EndpointPair.ClientAddress)), pair.Client.Statistics.DatagramsReceived + pair.InFlightTo(EndpointPair.ClientAddress));
    }
}
