using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointRoutingTests
{
    [Fact]
    public void ManyConnectionsFromOneEndpoint_EachGetsItsOwnData()
    {
        using var pair = new EndpointPair();
        const int Count = 10;
        EndpointConnection[] clients = Enumerable.Range(0, Count).Select(_ => pair.Connect()).ToArray();
        Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), clients.Select(c => c.Id));
        Assert.True(pair.RunUntil(() => clients.All(c => c.Core.IsHandshakeConfirmed && pair.ServerSideOf(c) is { Core.IsHandshakeConfirmed: true }), TimeSpan.FromSeconds(10)));
        Assert.Equal(Count, pair.Server.ConnectionCount);
        Assert.Equal(Count, pair.Client.ConnectionCount);
        Assert.Equal(Count, pair.Accepted.Select(a => a.Id).Distinct().Count());

        var streams = new ulong[Count];
        for (int i = 0; i < Count; i++)
        {
            Assert.True(clients[i].Core.TryOpenStream(bidirectional: true, out streams[i]));
            pair.SendStream(clients[i], streams[i], SimulationHelpers.Payload(10_000 + i, 100 + i));
        }

        Assert.True(pair.RunUntil(() => clients.Select((c, i) => pair.Finished.Contains((pair.ServerSideOf(c)!, streams[i]))).All(f => f), TimeSpan.FromSeconds(10)));
        for (int i = 0; i < Count; i++)
        {
            EndpointConnection server = pair.ServerSideOf(clients[i])!;
            Assert.Equal(SimulationHelpers.Payload(10_000 + i, 100 + i), pair.ReceivedBytes(server, streams[i]));
            Assert.Single(pair.Received.Keys, k => k.Item1 == server);
        }
    }

    [Fact]
    public void RetiredConnectionId_StopsRouting_WhileTheNewOneRoutes()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));
        EndpointConnection server = pair.ServerSideOf(client)!;
        byte[] oldCid = client.Core.ConnectionIds.ActivePeer!.ConnectionId;
        Assert.Contains(server.Core.ConnectionIds.LocalIds, e => e.ConnectionId.AsSpan().SequenceEqual(oldCid));

        Assert.True(client.Core.ChangeConnectionId());
        byte[] newCid = client.Core.ConnectionIds.ActivePeer!.ConnectionId;
        Assert.NotEqual(oldCid, newCid);
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong id));
        byte[] data = SimulationHelpers.Payload(3000, 1);
        pair.SendStream(client, id, data);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, id)) && !server.Core.ConnectionIds.LocalIds.Any(e => e.ConnectionId.AsSpan().SequenceEqual(oldCid)), TimeSpan.FromSeconds(5)));
        Assert.Equal(data, pair.ReceivedBytes(server, id));
        Assert.Equal(0, pair.Server.Statistics.DroppedNoConnection);

        // The retired ID draws a stateless reset; the new one reaches the connection (which drops the junk).
        pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, EndpointPackets.ShortHeader(oldCid, 50));
        Assert.Equal(1, pair.Server.Statistics.DroppedNoConnection);
        (byte[] reset, _) = Assert.Single(EndpointPair.PollAll(pair.Server, pair.Now));
        Assert.Equal(pair.Server.ResetTokens.Generate(oldCid), reset.AsSpan(reset.Length - 16).ToArray());

        long dropped = server.Core.Statistics.PacketsDropped;
        pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, EndpointPackets.ShortHeader(newCid, 50));
        Assert.Equal(1, pair.Server.Statistics.DroppedNoConnection);
        Assert.Equal(dropped + 1, server.Core.Statistics.PacketsDropped);
        Assert.Equal(ConnectionState.Established, server.Core.State);
    }

    [Fact]
    public void ReplayedFirstInitial_IsRoutedToTheExistingConnection()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        byte[] firstInitial = pair.SentFrom(EndpointPair.ClientAddress)[0].Data;
        EndpointConnection server = pair.ServerSideOf(client)!;
        long received = server.Core.Statistics.DatagramsReceived;

        pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, firstInitial);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(1, pair.Server.ConnectionCount);
        Assert.Equal(received + 1, server.Core.Statistics.DatagramsReceived);
        Assert.Equal(ConnectionState.Established, server.Core.State);
    }

    [Fact]
    public void ConnectionIdLength_MustMatchTheEndpoints()
    {
        // Short headers carry no CID length: every connection on an endpoint must use the endpoint's.
        Assert.Throws<ArgumentException>(() => new QuicEndpointCore(new EndpointSettings
        {
            ServerConfiguration = SimulationHelpers.ServerConfig(c => c.ConnectionIdLength = 12),
        }));

        using var client = new QuicEndpointCore(new EndpointSettings { ConnectionIdLength = 12 });
        Assert.Throws<ArgumentException>(() => client.Connect(SimulationHelpers.ClientConfig(), EndpointPair.ServerAddress, EndpointPair.StartTime));
        Assert.Equal(0, client.ConnectionCount);
        EndpointConnection c = client.Connect(SimulationHelpers.ClientConfig(c => c.ConnectionIdLength = 12), EndpointPair.ServerAddress, EndpointPair.StartTime);
        Assert.Equal(12, c.Core.LocalTransportParameters.InitialSourceConnectionId!.Length);
        Assert.Equal(1, client.ConnectionCount);
    }

    [Fact]
    public void LongConnectionIds_RouteEndToEnd()
    {
        using var pair = new EndpointPair(
            new EndpointSettings { ServerConfiguration = SimulationHelpers.ServerConfig(c => c.ConnectionIdLength = 20), ConnectionIdLength = 20, StaticKey = EndpointPair.StaticKey },
            new EndpointSettings { ConnectionIdLength = 4 });
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.ConnectionIdLength = 4));
        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.Equal(20, client.Core.ConnectionIds.ActivePeer!.ConnectionId.Length);
        Assert.Equal(4, server.Core.ConnectionIds.ActivePeer!.ConnectionId.Length);

        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong id));
        byte[] data = SimulationHelpers.Payload(20_000, 2);
        pair.SendStream(client, id, data);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, id)), TimeSpan.FromSeconds(5)));
        Assert.Equal(data, pair.ReceivedBytes(server, id));
        Assert.Equal(0, pair.Server.Statistics.DroppedNoConnection + pair.Client.Statistics.DroppedNoConnection);
    }
}
