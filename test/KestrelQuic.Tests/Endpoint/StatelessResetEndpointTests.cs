using System.Net;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class StatelessResetEndpointTests
{
    private const long Now = EndpointPair.StartTime;
    private static readonly IPEndPoint Sender = new(IPAddress.Parse("192.0.2.7"), 6000);
    private static readonly byte[] UnknownCid = [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04];

    private static QuicEndpointCore Server(int resetsPerSecond = 100) => new(new EndpointSettings
    {
        ServerConfiguration = SimulationHelpers.ServerConfig(),
        StaticKey = EndpointPair.StaticKey,
        StatelessResetsPerSecond = resetsPerSecond,
    });

    [Theory]
    [InlineData(60, 43)]
    [InlineData(22, 21)]
    [InlineData(40, 39)]
    [InlineData(1200, 43)]
    public void UnknownConnectionId_IsAnsweredWithASmallerStatelessReset(int triggerLength, int expectedLength)
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, triggerLength), Sender, Now);

        (byte[] reset, EndPoint to) = Assert.Single(EndpointPair.PollAll(server, Now));
        Assert.Equal(Sender, to);
        Assert.Equal(expectedLength, reset.Length);
        Assert.True(reset.Length < triggerLength);
        Assert.True(reset.Length >= 21);
        Assert.Equal(0x40, reset[0] & 0xc0); // short header form, fixed bit set
        byte[] expectedToken = new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate(UnknownCid);
        Assert.Equal(expectedToken, reset.AsSpan(reset.Length - 16).ToArray());
        Assert.Equal(1, server.Statistics.StatelessResetsSent);
        Assert.Equal(1, server.Statistics.DroppedNoConnection);
        Assert.Equal(0, server.ConnectionCount);
    }

    [Fact]
    public void StatelessResets_AreNotPredictableBeyondTheToken()
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, 60, seed: 1), Sender, Now);
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, 60, seed: 2), Sender, Now);
        List<(byte[] Data, EndPoint Destination)> resets = EndpointPair.PollAll(server, Now);
        Assert.Equal(2, resets.Count);
        Assert.Equal(resets[0].Data.AsSpan(27).ToArray(), resets[1].Data.AsSpan(27).ToArray());
        Assert.NotEqual(resets[0].Data.AsSpan(1, 26).ToArray(), resets[1].Data.AsSpan(1, 26).ToArray());
    }

    [Theory]
    [InlineData(10)]
    [InlineData(21)]
    public void TriggerTooSmallForASmallerReset_GetsNoAnswer(int length)
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, length), Sender, Now);

        Assert.Empty(EndpointPair.PollAll(server, Now));
        Assert.Equal(1, server.Statistics.DroppedNoConnection);
        Assert.Equal(0, server.Statistics.StatelessResetsSent);
        Assert.Equal(0, server.Statistics.StatelessResetsRateLimited);
    }

    [Fact]
    public void ShortHeaderTooShortForAConnectionId_IsMalformed()
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, 9), Sender, Now);
        Assert.Empty(EndpointPair.PollAll(server, Now));
        Assert.Equal(1, server.Statistics.DroppedMalformed);
        Assert.Equal(0, server.Statistics.DroppedNoConnection);
    }

    [Fact]
    public void StatelessResets_AreRateLimited()
    {
        using QuicEndpointCore server = Server(resetsPerSecond: 5);
        int Burst(long at, int count)
        {
            for (int i = 0; i < count; i++) server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, 60, seed: i), Sender, at);
            return EndpointPair.PollAll(server, at).Count;
        }

        Assert.Equal(5, Burst(Now, 10));
        Assert.Equal(5, server.Statistics.StatelessResetsSent);
        Assert.Equal(5, server.Statistics.StatelessResetsRateLimited);

        // The budget refills at the configured rate: one per 200 ms, never more than one second's worth.
        Assert.Equal(1, Burst(Now + TimeSpan.FromMilliseconds(200).Ticks, 3));
        Assert.Equal(0, Burst(Now + TimeSpan.FromMilliseconds(300).Ticks, 3));
        Assert.Equal(5, Burst(Now + TimeSpan.FromSeconds(60).Ticks, 10));
        Assert.Equal(11, server.Statistics.StatelessResetsSent);
        Assert.Equal(5 + 2 + 3 + 5, server.Statistics.StatelessResetsRateLimited);
        Assert.Equal(26, server.Statistics.DroppedNoConnection);
    }

    [Fact]
    public void StatelessResets_CanBeDisabled()
    {
        using QuicEndpointCore server = Server(resetsPerSecond: 0);
        server.ReceiveDatagram(EndpointPackets.ShortHeader(UnknownCid, 60), Sender, Now);
        Assert.Empty(EndpointPair.PollAll(server, Now));
        Assert.Equal(1, server.Statistics.StatelessResetsRateLimited);
    }

    [Fact]
    public void ServerConnectionIds_CarryResetTokensDerivedFromTheStaticKey()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));
        EndpointConnection server = pair.ServerSideOf(client)!;
        var generator = new StatelessResetTokenGenerator(EndpointPair.StaticKey);

        // Every CID the server issued (the handshake one and those sent in NEW_CONNECTION_ID) has the derived token.
        Assert.True(server.Core.ConnectionIds.LocalIds.Count >= 2);
        foreach (ConnectionIdEntry entry in server.Core.ConnectionIds.LocalIds)
        {
            Assert.Equal(generator.Generate(entry.ConnectionId), entry.StatelessResetToken);
        }

        byte[] handshakeCid = server.Core.LocalTransportParameters.InitialSourceConnectionId!;
        Assert.Equal(generator.Generate(handshakeCid), server.Core.LocalTransportParameters.StatelessResetToken);
        Assert.Equal(generator.Generate(handshakeCid), client.Core.PeerTransportParameters!.StatelessResetToken);

        // Client connections have no static key: their tokens are random, not derived from the server's key.
        ConnectionIdEntry clientId = client.Core.ConnectionIds.LocalIds[^1];
        Assert.NotEqual(generator.Generate(clientId.ConnectionId), clientId.StatelessResetToken);
    }

    [Fact]
    public void RestartedServerWithTheSameKey_ResetsTheClientsConnection()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));
        byte[] serverCid = client.Core.ConnectionIds.ActivePeer!.ConnectionId;

        QuicEndpointCore restarted = pair.ReplaceServer(EndpointPair.ServerSettings());
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        pair.SendStream(client, streamId, SimulationHelpers.Payload(100, 9));
        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(5)));

        QuicCloseReason reason = client.Core.CloseReason!;
        Assert.True(reason.StatelessReset);
        Assert.True(reason.ClosedByPeer);
        Assert.False(reason.IdleTimeout);
        Assert.Equal(ConnectionState.Closed, client.Core.State);
        Assert.Single(pair.EventsOf(client), e => e.Kind == ConnectionEventKind.Terminated);
        (_, EndpointEvent removed, _) = Assert.Single(pair.EndpointEvents, e => e.Endpoint == pair.Client && e.Event.Kind == EndpointEventKind.ConnectionRemoved);
        Assert.Same(client, removed.Connection);
        Assert.Equal(0, pair.Client.ConnectionCount);
        Assert.Equal(long.MaxValue, pair.Client.NextTimeout);

        // The new server knew nothing of the connection and answered its first packet with a reset for the client's DCID.
        Assert.Equal(0, restarted.ConnectionCount);
        Assert.Equal(1, restarted.Statistics.StatelessResetsSent);
        SimDatagram reset = Assert.Single(pair.Sent, d => d.From.Equals(EndpointPair.ServerAddress) && d.SentAt > pair.Sent.Last(s => s.From.Equals(EndpointPair.ClientAddress)).SentAt - 1 && d.Data.Length <= 43);
        Assert.Equal(new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate(serverCid), reset.Data.AsSpan(reset.Data.Length - 16).ToArray());

        // The client recognised the reset and did not answer it with one of its own.
        Assert.Equal(1, pair.Client.Statistics.StatelessResetsReceived);
        Assert.Equal(0, pair.Client.Statistics.StatelessResetsSent);
        Assert.Equal(0, pair.Client.Statistics.DroppedNoConnection);
    }

    [Fact]
    public void RestartedServerWithAnotherKey_CannotResetTheConnection()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));

        byte[] otherKey = (byte[])EndpointPair.StaticKey.Clone();
        otherKey[0] ^= 0xff;
        QuicEndpointCore restarted = pair.ReplaceServer(new EndpointSettings { ServerConfiguration = SimulationHelpers.ServerConfig(), StaticKey = otherKey });
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        pair.SendStream(client, streamId, SimulationHelpers.Payload(100, 9));
        pair.RunFor(TimeSpan.FromSeconds(1));

        Assert.True(restarted.Statistics.StatelessResetsSent >= 1);
        Assert.False(client.Removed);
        Assert.Null(client.Core.CloseReason);
        Assert.Equal(0, pair.Client.Statistics.StatelessResetsReceived);
        Assert.True(pair.Client.Statistics.DroppedNoConnection >= 1);
    }
}
