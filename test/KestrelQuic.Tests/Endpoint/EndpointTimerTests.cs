using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Packets;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointTimerTests
{
    [Fact]
    public async Task HandleTimeout_ReturnsWhileAConnectionStillHasAnAckToSend()
    {
        // The ACK-delay deadline of a connection stays due until the ACK is polled; HandleTimeout must not spin on it
        // (it did: the connection was re-queued with the same due time and handled again, forever).
        Task run = Task.Run(AckDeadlineScenario);
        Task first = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(first == run, "HandleTimeout did not return");
        await run;
    }

    private static void AckDeadlineScenario()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));

        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        Assert.Equal(10, client.Core.WriteStream(streamId, new byte[10]));
        pair.Client.OnApplicationOperation(client, pair.Now);
        List<(byte[] Data, System.Net.EndPoint Destination)> toServer = EndpointPair.PollAll(pair.Client, pair.Now);
        Assert.NotEmpty(toServer);
        foreach ((byte[] data, _) in toServer) pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, data);

        long due = pair.Server.NextTimeout;
        Assert.True(due > pair.Now && due <= pair.Now + TimeSpan.FromMilliseconds(25).Ticks, $"ack deadline {due - pair.Now}");
        pair.Server.HandleTimeout(due);

        // The ACK goes out on the next poll, after which the deadline is gone.
        List<(byte[] Data, System.Net.EndPoint Destination)> acks = EndpointPair.PollAll(pair.Server, due);
        Assert.NotEmpty(acks);
        Assert.True(pair.Server.NextTimeout > due);
    }

    [Fact]
    public void IdleTimeout_RemovesTheConnectionFromBothEndpoints()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.IdleTimeout = TimeSpan.FromSeconds(2)));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.IdleTimeout = TimeSpan.FromSeconds(2)));
        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = Assert.Single(pair.Accepted);
        byte[][] serverIds = server.Core.ConnectionIds.LocalIds.Where(e => !e.Retired).Select(e => e.ConnectionId).ToArray();
        Assert.NotEmpty(serverIds);

        Assert.True(pair.RunUntil(() => pair.Server.ConnectionCount == 0 && pair.Client.ConnectionCount == 0, TimeSpan.FromSeconds(10)));

        foreach ((QuicEndpointCore endpoint, EndpointConnection connection) in new[] { (pair.Client, client), (pair.Server, server) })
        {
            (QuicEndpointCore _, EndpointEvent removed, long at) = Assert.Single(pair.EndpointEvents, e => e.Endpoint == endpoint && e.Event.Kind == EndpointEventKind.ConnectionRemoved);
            Assert.Same(connection, removed.Connection);
            Assert.True(connection.Removed);
            Assert.Equal(ConnectionState.Closed, connection.Core.State);
            Assert.True(connection.Core.CloseReason!.IdleTimeout);
            Assert.Contains(ConnectionEventKind.Terminated, pair.EventsOf(connection).Select(e => e.Kind));

            // Removed after 2 s of silence (the idle timer restarts on every received packet), not much later.
            long silence = at - pair.LastDelivery[endpoint];
            Assert.InRange(silence, TimeSpan.FromSeconds(2).Ticks, TimeSpan.FromSeconds(2.5).Ticks);
            Assert.Equal(long.MaxValue, endpoint.NextTimeout);
            Assert.Equal(0, endpoint.HandshakesInProgress);
            Assert.Empty(endpoint.Connections);
        }

        // The server's connection IDs no longer route: a short header to one of them draws a stateless reset.
        foreach (byte[] id in serverIds)
        {
            long dropped = pair.Server.Statistics.DroppedNoConnection;
            pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, EndpointPackets.ShortHeader(id, 60));
            Assert.Equal(dropped + 1, pair.Server.Statistics.DroppedNoConnection);
            (byte[] reset, System.Net.EndPoint to) = Assert.Single(EndpointPair.PollAll(pair.Server, pair.Now));
            Assert.Equal(EndpointPair.ClientAddress, to);
            Assert.Equal(pair.Server.ResetTokens.Generate(id), reset.AsSpan(reset.Length - 16).ToArray());
        }

        Assert.Equal(serverIds.Length, pair.Server.Statistics.StatelessResetsSent);
    }

    [Fact]
    public void ApplicationClose_RemovesBothSidesAfterTheirClosingAndDrainingPeriods()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = pair.ServerSideOf(client)!;

        client.Core.Close(0x42, "bye", pair.Now);
        pair.Client.OnApplicationOperation(client, pair.Now);
        long closedAt = pair.Now;
        Assert.Equal(ConnectionState.Closing, client.Core.State);
        Assert.False(client.Removed);

        Assert.True(pair.RunUntil(() => server.Core.CloseReason is not null, TimeSpan.FromSeconds(1)));
        Assert.Equal(0x42UL, server.Core.CloseReason!.ErrorCode);
        Assert.True(server.Core.CloseReason.IsApplicationError);
        Assert.True(server.Core.CloseReason.ClosedByPeer);
        Assert.Equal("bye", server.Core.CloseReason.Reason);
        Assert.Equal(ConnectionState.Draining, server.Core.State);

        Assert.True(pair.RunUntil(() => client.Removed && server.Removed, TimeSpan.FromSeconds(10)));
        foreach (QuicEndpointCore endpoint in new[] { pair.Client, pair.Server })
        {
            (_, _, long removedAt) = Assert.Single(pair.EndpointEvents, e => e.Endpoint == endpoint && e.Event.Kind == EndpointEventKind.ConnectionRemoved);
            Assert.True(removedAt > closedAt, "kept through the closing/draining period");
            Assert.Equal(0, endpoint.ConnectionCount);
            Assert.Equal(long.MaxValue, endpoint.NextTimeout);
        }

        // Operations on a removed connection are ignored.
        pair.Client.OnApplicationOperation(client, pair.Now);
        Assert.Empty(EndpointPair.PollAll(pair.Client, pair.Now));
        Assert.False(pair.Client.TryDequeueActive(out _));
    }
}
