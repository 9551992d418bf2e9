using System.Net;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>The endpoint's anti-replay register spans its connections: a captured 0-RTT flight replayed later is refused.</summary>
public sealed class ZeroRttReplayEndpointTests
{
    [Fact]
    public void ReplayedZeroRttFlight_AfterTheConnectionEnded_EarlyDataRejected()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c =>
        {
            c.EnableEarlyData = true;
            c.IdleTimeout = TimeSpan.FromSeconds(2);
        }));
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(5)));
        byte[] ticket = pair.EventsOf(first).First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;

        // The resuming client sends its request in 0-RTT; its first flight is captured.
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
            c.IdleTimeout = TimeSpan.FromSeconds(2);
        }));
        long sentAt = pair.Now;
        int sentBefore = pair.Sent.Count;
        Assert.True(client.Core.TryOpenStream(true, out ulong id));
        pair.SendStream(client, id, "POST /order"u8.ToArray());
        Assert.True(pair.RunUntil(() => pair.ServerSideOf(client) is { } s && pair.Finished.Contains((s, id)), TimeSpan.FromSeconds(5)));
        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.Equal(EarlyDataStatus.Accepted, client.Core.Tls.EarlyData);
        Assert.Equal(EarlyDataRejection.None, server.Core.Tls.EarlyDataRejection);
        Assert.True(server.Core.EarlyDataAccepted);
        Assert.True(server.Core.GetStream(id)!.ReceivedEarlyData);
        List<byte[]> flight = pair.Sent.Skip(sentBefore).Where(d => d.From.Equals(EndpointPair.ClientAddress) && d.SentAt == sentAt).Select(d => d.Data).ToList();
        Assert.NotEmpty(flight); // the Initial with the 0-RTT packet coalesced or following

        // Both connections time out and are forgotten; then the attacker replays the flight from its own address.
        Assert.True(pair.RunUntil(() => pair.Server.ConnectionCount == 0, TimeSpan.FromSeconds(30)));
        var attacker = new IPEndPoint(IPAddress.Parse("10.6.6.6"), 6666);
        int acceptedBefore = pair.Accepted.Count;
        foreach (byte[] d in flight) pair.DeliverNow(attacker, EndpointPair.ServerAddress, d);
        pair.Flush();

        EndpointConnection replayed = Assert.Single(pair.Accepted.Skip(acceptedBefore));
        Assert.False(replayed.Core.EarlyDataAccepted);
        Assert.Equal(EarlyDataRejection.Replay, replayed.Core.Tls.EarlyDataRejection);
        Assert.Equal(0, replayed.Core.StreamCount);
        Assert.Equal(1, pair.Server.AntiReplay!.ReplaysRejected);
        Assert.Equal(1, pair.Server.AntiReplay.Accepted);
    }
}
