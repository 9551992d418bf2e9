using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointLimitTests
{
    private static readonly IPEndPoint SecondClientAddress = new(IPAddress.Parse("10.0.0.3"), 40000);

    private static void AssertRefused(EndpointPair pair, EndpointConnection client)
    {
        Assert.True(client.Removed);
        QuicCloseReason reason = client.Core.CloseReason!;
        Assert.Equal((ulong)TransportErrorCode.ConnectionRefused, reason.ErrorCode);
        Assert.Equal(0x02UL, reason.ErrorCode);
        Assert.True(reason.ClosedByPeer);
        Assert.False(reason.IsApplicationError);
        Assert.Null(pair.ServerSideOf(client));

        // The refusal is an Initial carrying CONNECTION_CLOSE, protected with the client's original DCID.
        byte[] odcid = client.Core.OriginalDestinationConnectionId;
        OpenedPacket close = pair.SentFrom(EndpointPair.ServerAddress)
            .SelectMany(d => EndpointPackets.Open(d.Data, odcid, sentByServer: true))
            .Single(p => p.Frames is not null && p.Dcid.AsSpan().SequenceEqual(client.Core.LocalTransportParameters.InitialSourceConnectionId));
        OpenedFrame frame = Assert.Single(close.Frames!, f => f.Type != FrameType.Padding);
        Assert.Equal(FrameType.ConnectionClose, frame.Type);
        Assert.Equal(0x02UL, frame.ErrorCode);
    }

    [Fact]
    public void MaxConnections_RefusesTheConnectionBeyondTheLimit()
    {
        using var pair = new EndpointPair(new EndpointSettings
        {
            ServerConfiguration = SimulationHelpers.ServerConfig(),
            StaticKey = EndpointPair.StaticKey,
            MaxConnections = 1,
        });
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntilEstablished(first));

        EndpointConnection second = pair.Connect();
        Assert.True(pair.RunUntil(() => second.Removed, TimeSpan.FromSeconds(5)));
        AssertRefused(pair, second);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsRefused);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(1, pair.Server.ConnectionCount);

        // The admitted connection is untouched.
        Assert.Equal(ConnectionState.Established, first.Core.State);
        Assert.True(first.Core.TryOpenStream(bidirectional: true, out ulong id));
        byte[] data = SimulationHelpers.Payload(5000, 4);
        pair.SendStream(first, id, data);
        EndpointConnection server = pair.ServerSideOf(first)!;
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, id)), TimeSpan.FromSeconds(5)));
        Assert.Equal(data, pair.ReceivedBytes(server, id));
    }

    [Fact]
    public void RefuseNewConnections_RefusesUntilCleared()
    {
        using var pair = new EndpointPair();
        pair.Server.RefuseNewConnections = true;
        EndpointConnection refused = pair.Connect();
        Assert.True(pair.RunUntil(() => refused.Removed, TimeSpan.FromSeconds(5)));
        AssertRefused(pair, refused);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsRefused);
        Assert.Equal(0, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(0, pair.Server.ConnectionCount);
        Assert.Empty(pair.Accepted);

        pair.Server.RefuseNewConnections = false;
        EndpointConnection accepted = pair.Connect();
        Assert.True(pair.RunUntilEstablished(accepted));
        Assert.Equal(1, pair.Server.Statistics.ConnectionsRefused);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
    }

    [Fact]
    public void RetryUnderLoad_RetriesOnlyWhileHandshakesAreInProgress()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c =>
        {
            c.Retry = RetryMode.UnderLoad;
            c.RetryHandshakeThreshold = 1;
        }));
        QuicEndpointCore secondClient = pair.AddEndpoint(SecondClientAddress, new EndpointSettings());

        // The first client's second flight never arrives: its server connection stays in the handshake.
        int fromFirst = 0;
        pair.Filter = d => !d.From.Equals(EndpointPair.ClientAddress) || ++fromFirst == 1;
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntil(() => pair.Accepted.Count == 1 && pair.SentFrom(EndpointPair.ServerAddress).Count > 0, TimeSpan.FromSeconds(1)));
        pair.RunFor(TimeSpan.FromMilliseconds(100));
        Assert.Equal(0, pair.Server.Statistics.RetrySent);
        Assert.Equal(1, pair.Server.HandshakesInProgress);
        Assert.False(PacketTypeOfFirstAnswer(pair) == PacketType.Retry);

        EndpointConnection second = pair.Connect(from: secondClient);
        Assert.True(pair.RunUntilEstablished(second));
        Assert.Equal(1, pair.Server.Statistics.RetrySent);
        Assert.Equal(2, pair.Server.Statistics.ConnectionsAccepted);
        Assert.NotNull(pair.ServerSideOf(second)!.Core.LocalTransportParameters.RetrySourceConnectionId);
        Assert.Null(pair.ServerSideOf(first)!.Core.LocalTransportParameters.RetrySourceConnectionId);
        Assert.False(pair.ServerSideOf(first)!.Core.IsHandshakeComplete);
        Assert.Equal(1, pair.Server.HandshakesInProgress);
        Assert.Equal(PacketType.Retry, EndpointPackets.Header(pair.Sent.First(d => d.To.Equals(SecondClientAddress)).Data).Type);
    }

    [Fact]
    public void MaxHandshakes_RefusesWhileTheHandshakeSlotsAreTaken_AndFreesThemOnRemoval()
    {
        using var pair = new EndpointPair(new EndpointSettings
        {
            ServerConfiguration = SimulationHelpers.ServerConfig(c =>
            {
                c.Retry = RetryMode.Never;
                c.IdleTimeout = TimeSpan.FromSeconds(2);
            }),
            StaticKey = EndpointPair.StaticKey,
            MaxHandshakes = 1,
        });
        QuicEndpointCore secondClient = pair.AddEndpoint(SecondClientAddress, new EndpointSettings());
        int fromFirst = 0;
        pair.Filter = d => !d.From.Equals(EndpointPair.ClientAddress) || ++fromFirst == 1;
        EndpointConnection first = pair.Connect(SimulationHelpers.ClientConfig(c => c.IdleTimeout = TimeSpan.FromSeconds(2)));
        Assert.True(pair.RunUntil(() => pair.Server.HandshakesInProgress == 1, TimeSpan.FromSeconds(1)));

        EndpointConnection refused = pair.Connect(from: secondClient);
        Assert.True(pair.RunUntil(() => refused.Core.CloseReason is not null, TimeSpan.FromSeconds(1)));
        Assert.Equal(ConnectionState.Draining, refused.Core.State);
        Assert.Equal((ulong)TransportErrorCode.ConnectionRefused, refused.Core.CloseReason!.ErrorCode);
        Assert.Equal(1, pair.Server.HandshakesInProgress);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsRefused);

        // The stuck handshake idles out; its slot is free again.
        EndpointConnection stuck = pair.ServerSideOf(first)!;
        Assert.True(pair.RunUntil(() => stuck.Removed, TimeSpan.FromSeconds(10)));
        Assert.True(stuck.Core.CloseReason!.IdleTimeout);
        Assert.Equal(0, pair.Server.HandshakesInProgress);
        Assert.True(pair.RunUntil(() => refused.Removed, TimeSpan.FromSeconds(10)));
        Assert.Equal(0, secondClient.ConnectionCount);
        EndpointConnection third = pair.Connect(from: secondClient);
        Assert.True(pair.RunUntilEstablished(third));
        Assert.Equal(1, pair.Server.Statistics.ConnectionsRefused);
        Assert.Equal(2, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(0, pair.Server.HandshakesInProgress);
    }

    private static PacketType PacketTypeOfFirstAnswer(EndpointPair pair)
        => EndpointPackets.Header(pair.Sent.First(d => d.To.Equals(EndpointPair.ClientAddress)).Data).Type;
}
