using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Endpoint;

public sealed class DeferredConfigurationTests
{
    private static EndpointSettings Deferred(Action<QuicConfiguration>? configure = null) => new()
    {
        ServerConfiguration = SimulationHelpers.ServerConfig(configure),
        StaticKey = EndpointPair.StaticKey,
        DeferServerConfiguration = true,
    };

    /// <summary>Starts a connection and runs until the server connection waits at the ClientHello.</summary>
    private static (EndpointConnection Client, EndpointConnection Server) StartAndWait(EndpointPair pair, QuicConfiguration? clientConfig = null)
    {
        EndpointConnection client = pair.Connect(clientConfig);
        Assert.True(pair.RunUntil(() => pair.Accepted.Count == 1 && pair.Accepted[0].Core.IsAwaitingConfiguration, TimeSpan.FromSeconds(1)));
        return (client, pair.Accepted[0]);
    }

    private static void Resume(EndpointPair pair, EndpointConnection server, QuicConfiguration config)
    {
        server.Core.ResumeHandshake(config, pair.Now);
        pair.Server.OnApplicationOperation(server, pair.Now);
    }

    [Fact]
    public void ClientHello_IsReportedAndNothingButAcksIsSentUntilTheConfigurationArrives()
    {
        using var pair = new EndpointPair(Deferred());
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);

        Assert.Single(pair.EventsOf(server), e => e.Kind == ConnectionEventKind.ClientHelloReceived);
        Assert.Equal("localhost", server.Core.ClientHello!.ServerName);
        Assert.Equal([SimulationHelpers.Alpn], server.Core.ClientHello.ApplicationProtocols);
        Assert.Equal(1, pair.Server.HandshakesInProgress);

        // Let the client retransmit its Initial a few times while the layer above "thinks".
        pair.RunFor(TimeSpan.FromSeconds(3));
        Assert.True(server.Core.IsAwaitingConfiguration);
        Assert.Equal(ConnectionState.Handshake, server.Core.State);
        Assert.False(client.Core.IsHandshakeComplete);
        Assert.Null(client.Core.PeerTransportParameters);
        Assert.Single(pair.EventsOf(server), e => e.Kind == ConnectionEventKind.ClientHelloReceived);
        Assert.True(pair.SentFrom(EndpointPair.ClientAddress).Count >= 2, "the client retransmitted");

        byte[] odcid = client.Core.OriginalDestinationConnectionId;
        List<SimDatagram> fromServer = pair.SentFrom(EndpointPair.ServerAddress);
        Assert.NotEmpty(fromServer);
        int acks = 0;
        foreach (SimDatagram d in fromServer)
        {
            foreach (OpenedPacket p in EndpointPackets.Open(d.Data, odcid, sentByServer: true))
            {
                Assert.Equal(PacketType.Initial, p.Type);
                Assert.NotNull(p.Frames);
                Assert.All(p.Frames!, f => Assert.True(f.Type is FrameType.Ack or FrameType.Padding, $"{f.Type} sent before the configuration"));
                acks += p.Frames!.Count(f => f.Type == FrameType.Ack);
            }
        }

        Assert.True(acks >= 1);

        Resume(pair, server, SimulationHelpers.ServerConfig(c => c.MaxBidirectionalStreams = 7));
        Assert.False(server.Core.IsAwaitingConfiguration);
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(7UL, client.Core.PeerTransportParameters!.InitialMaxStreamsBidi);
        Assert.Equal(7UL, server.Core.LocalTransportParameters.InitialMaxStreamsBidi);
        Assert.Equal(SimulationHelpers.Alpn, client.Core.Tls.NegotiatedApplicationProtocol);
        Assert.Equal(0, pair.Server.HandshakesInProgress);

        // The limit from the per-connection configuration is enforced.
        for (int i = 0; i < 7; i++) Assert.True(client.Core.TryOpenStream(bidirectional: true, out _));
        Assert.False(client.Core.TryOpenStream(bidirectional: true, out _));

        // A second resume is ignored.
        Resume(pair, server, SimulationHelpers.ServerConfig(c => c.MaxBidirectionalStreams = 1));
        Assert.Equal(7UL, server.Core.LocalTransportParameters.InitialMaxStreamsBidi);
        Assert.Equal(ConnectionState.Established, server.Core.State);
    }

    [Fact]
    public void ResumeHandshake_CanPickTheCertificateAndProtocolPerConnection()
    {
        using var pair = new EndpointPair(Deferred(c => c.ApplicationProtocols = ["placeholder"]));
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair, SimulationHelpers.ClientConfig(c => c.ApplicationProtocols = ["h3", SimulationHelpers.Alpn]));
        Assert.Equal(["h3", SimulationHelpers.Alpn], server.Core.ClientHello!.ApplicationProtocols);

        Resume(pair, server, SimulationHelpers.ServerConfig(c => c.ApplicationProtocols = [SimulationHelpers.Alpn]));
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(SimulationHelpers.Alpn, client.Core.Tls.NegotiatedApplicationProtocol);
        Assert.Equal(SimulationHelpers.Alpn, server.Core.Tls.NegotiatedApplicationProtocol);
    }

    [Fact]
    public void DeferredConfiguration_WorksAfterRetry()
    {
        using var pair = new EndpointPair(Deferred(c => c.Retry = RetryMode.Always));
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);
        Assert.Equal(1, pair.Server.Statistics.RetrySent);

        Resume(pair, server, SimulationHelpers.ServerConfig());
        Assert.True(pair.RunUntilEstablished(client));
        Assert.NotNull(server.Core.LocalTransportParameters.RetrySourceConnectionId);
        Assert.Equal(server.Core.LocalTransportParameters.RetrySourceConnectionId, client.Core.PeerTransportParameters!.RetrySourceConnectionId);
        Assert.Equal(client.Core.OriginalDestinationConnectionId, client.Core.PeerTransportParameters.OriginalDestinationConnectionId);
    }

    [Theory]
    [InlineData(12, 4)]
    [InlineData(8, 8)]
    [InlineData(8, 2)]
    public void ResumeHandshake_WithOtherConnectionIdSettings_KeepsTheConnectionWorking(int cidLength, int activeLimit)
    {
        // The endpoint-wide connection ID length stays whatever the per-connection configuration says, and the
        // active_connection_id_limit advertised is the one enforced.
        using var pair = new EndpointPair(Deferred());
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);
        Resume(pair, server, SimulationHelpers.ServerConfig(c =>
        {
            c.ConnectionIdLength = cidLength;
            c.ActiveConnectionIdLimit = activeLimit;
        }));
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromSeconds(1));
        Assert.Equal((ulong)activeLimit, client.Core.PeerTransportParameters!.ActiveConnectionIdLimit);

        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong id), $"client {client.Core.CloseReason}");
        byte[] data = SimulationHelpers.Payload(20_000, 3);
        pair.SendStream(client, id, data);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, id)), TimeSpan.FromSeconds(5)), $"server dropped {server.Core.Statistics.PacketsDropped} packets");
        Assert.Equal(data, pair.ReceivedBytes(server, id));
        Assert.Null(server.Core.CloseReason);
        Assert.Null(client.Core.CloseReason);
        Assert.All(server.Core.ConnectionIds.LocalIds, e => Assert.Equal(8, e.ConnectionId.Length));
    }

    [Fact]
    public void ResumeHandshake_KeepsTheEndpointsVersions()
    {
        using var pair = new EndpointPair(Deferred());
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);
        Resume(pair, server, SimulationHelpers.ServerConfig(c => c.SupportedVersions = [QuicVersion.Version2]));
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(QuicVersion.Version1, server.Core.Version);
        KestrelQuic.Parameters.VersionInformation info = server.Core.LocalTransportParameters.VersionInformation!;
        Assert.Equal(QuicVersion.Version1, info.ChosenVersion);
        Assert.Equal([QuicVersion.Version1, QuicVersion.Version2], info.AvailableVersions);
    }

    [Fact]
    public void EndpointPreferringV2_DeferredHandshake_SwitchesAfterTheAcksSentInV1()
    {
        // While waiting, the server acknowledges in the client's version (RFC 9369 §4.1: before it has processed the
        // transport parameters); once resumed, it negotiates v2 and the client follows.
        using var pair = new EndpointPair(Deferred(c => c.SupportedVersions = [QuicVersion.Version2, QuicVersion.Version1]));
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);
        pair.RunFor(TimeSpan.FromMilliseconds(300));
        int sentWhileWaiting = pair.SentFrom(EndpointPair.ServerAddress).Count;
        Assert.True(sentWhileWaiting > 0);
        Assert.All(pair.SentFrom(EndpointPair.ServerAddress), d => Assert.Equal(QuicVersion.Version1, EndpointPackets.Header(d.Data).Version));

        Resume(pair, server, SimulationHelpers.ServerConfig());
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(QuicVersion.Version2, server.Core.Version);
        Assert.Equal(QuicVersion.Version2, client.Core.Version);
        Assert.Equal(QuicVersion.Version2, EndpointPackets.Header(pair.SentFrom(EndpointPair.ServerAddress)[sentWhileWaiting].Data).Version);
    }

    [Fact]
    public void RefuseHandshake_EndsTheClientWithHandshakeFailure()
    {
        using var pair = new EndpointPair(Deferred());
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair);

        server.Core.RefuseHandshake("no certificate for that name", pair.Now);
        pair.Server.OnApplicationOperation(server, pair.Now);
        Assert.True(pair.RunUntil(() => client.Core.CloseReason is not null, TimeSpan.FromSeconds(2)));

        QuicCloseReason reason = client.Core.CloseReason!;
        Assert.Equal(0x128UL, reason.ErrorCode); // CRYPTO_ERROR: 0x100 + handshake_failure (40)
        Assert.True(reason.ClosedByPeer);
        Assert.False(reason.IsApplicationError);
        Assert.Equal(0x128UL, server.Core.CloseReason!.ErrorCode);
        Assert.False(server.Core.CloseReason.ClosedByPeer);
        Assert.Equal(0, pair.Server.HandshakesInProgress);

        Assert.True(pair.RunUntil(() => client.Removed && server.Removed, TimeSpan.FromSeconds(10)));
        Assert.Equal(0, pair.Server.ConnectionCount);
        Assert.Equal(0, pair.Client.ConnectionCount);
    }

    [Fact]
    public void UnansweredClientHello_IsBoundedByTheIdleTimeout()
    {
        using var pair = new EndpointPair(Deferred(c => c.IdleTimeout = TimeSpan.FromSeconds(3)));
        (_, EndpointConnection server) = StartAndWait(pair);

        Assert.True(pair.RunUntil(() => server.Removed, TimeSpan.FromSeconds(30)));
        Assert.True(server.Core.CloseReason!.IdleTimeout);
        Assert.False(server.Core.IsHandshakeComplete);
        // Each retransmitted client Initial restarts the idle timer; the connection goes 3 s after the last one.
        long removedAt = Assert.Single(pair.EndpointEvents, e => e.Endpoint == pair.Server && e.Event.Kind == EndpointEventKind.ConnectionRemoved).Time;
        Assert.InRange(removedAt - pair.LastDelivery[pair.Server], TimeSpan.FromSeconds(3).Ticks, TimeSpan.FromSeconds(4).Ticks);
        Assert.Equal(0, pair.Server.HandshakesInProgress);
        Assert.Equal(0, pair.Server.ConnectionCount);
    }

    [Fact]
    public void ClientHelloSpanningSeveralInitialPackets_IsReassembledAndParsed()
    {
        string[] protocols = Enumerable.Range(0, 200).Select(i => $"protocol-{i:D3}-" + new string((char)('a' + (i % 26)), 30)).ToArray();
        using var pair = new EndpointPair(Deferred());
        QuicConfiguration clientConfig = SimulationHelpers.ClientConfig(c => c.ApplicationProtocols = protocols.ToList());
        (EndpointConnection client, EndpointConnection server) = StartAndWait(pair, clientConfig);

        // The ClientHello needed several datagrams (each padded to 1200 bytes), all sent before any answer.
        List<SimDatagram> first = pair.SentFrom(EndpointPair.ClientAddress).Where(d => d.SentAt == EndpointPair.StartTime).ToList();
        Assert.True(first.Count >= 2, $"{first.Count} datagrams");
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);

        ClientHelloInfo hello = server.Core.ClientHello!;
        Assert.Equal(protocols, hello.ApplicationProtocols);
        Assert.Equal("localhost", hello.ServerName);

        Resume(pair, server, SimulationHelpers.ServerConfig(c => c.ApplicationProtocols = [protocols[150]]));
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(protocols[150], client.Core.Tls.NegotiatedApplicationProtocol);
    }

    private static readonly byte[] ForgedDcid = [0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58];
    private static readonly byte[] ForgedScid = [0x61, 0x62, 0x63, 0x64];

    /// <summary>Feeds hand-made client Initials to a deferred server endpoint and returns it with what it sent.</summary>
    private static (QuicEndpointCore Server, List<OpenedFrame> Frames) FeedDeferred(params byte[][] datagrams)
    {
        var server = new QuicEndpointCore(Deferred());
        var frames = new List<OpenedFrame>();
        foreach (byte[] d in datagrams)
        {
            server.ReceiveDatagram(d, EndpointPair.ClientAddress, EndpointPair.StartTime);
            foreach ((byte[] data, _) in EndpointPair.PollAll(server, EndpointPair.StartTime))
            {
                foreach (OpenedPacket p in EndpointPackets.Open(data, ForgedDcid, sentByServer: true))
                {
                    Assert.Equal(ForgedScid, p.Dcid);
                    frames.AddRange(p.Frames ?? []);
                }
            }
        }

        return (server, frames);
    }

    private static byte[] RealClientHello()
    {
        using var client = new QuicEndpointCore(new EndpointSettings());
        EndpointConnection c = client.Connect(SimulationHelpers.ClientConfig(), EndpointPair.ServerAddress, EndpointPair.StartTime);
        (byte[] datagram, _) = EndpointPair.PollAll(client, EndpointPair.StartTime)[0];
        OpenedPacket initial = EndpointPackets.Open(datagram, c.Core.OriginalDestinationConnectionId, sentByServer: false)[0];
        return initial.Frames!.Single(f => f.Type == FrameType.Crypto).Data;
    }

    [Theory]
    [InlineData(new byte[] { 2, 0, 0, 4, 1, 2, 3, 4 }, 0x10aUL)] // a ServerHello: unexpected_message
    [InlineData(new byte[] { 1, 0, 0, 4, 3, 3, 0, 0 }, 0x132UL)] // a ClientHello too short to hold its fields: decode_error
    public void MalformedFirstMessage_ClosesWithACryptoError(byte[] crypto, ulong expectedCode)
    {
        (QuicEndpointCore server, List<OpenedFrame> frames) = FeedDeferred(EndpointPackets.ClientInitial(ForgedDcid, ForgedScid, 0, 0, crypto));
        using (server)
        {
            OpenedFrame close = Assert.Single(frames, f => f.Type == FrameType.ConnectionClose);
            Assert.Equal(expectedCode, close.ErrorCode);
            EndpointConnection connection = Assert.Single(server.Connections);
            Assert.Equal(expectedCode, connection.Core.CloseReason!.ErrorCode);
            Assert.Null(connection.Core.ClientHello);
            Assert.False(connection.Core.IsAwaitingConfiguration);
            Assert.Equal(0, server.HandshakesInProgress);
        }
    }

    [Fact]
    public void ClientHelloArrivingOutOfOrder_IsReassembledBeforeItIsParsed()
    {
        byte[] hello = RealClientHello();
        int half = hello.Length / 2;
        (QuicEndpointCore server, List<OpenedFrame> frames) = FeedDeferred(
            EndpointPackets.ClientInitial(ForgedDcid, ForgedScid, 1, (ulong)half, hello.AsSpan(half)),
            EndpointPackets.ClientInitial(ForgedDcid, ForgedScid, 0, 0, hello.AsSpan(0, half)));
        using (server)
        {
            EndpointConnection connection = Assert.Single(server.Connections);
            Assert.True(connection.Core.IsAwaitingConfiguration);
            Assert.Equal("localhost", connection.Core.ClientHello!.ServerName);
            Assert.Equal([SimulationHelpers.Alpn], connection.Core.ClientHello.ApplicationProtocols);
            Assert.DoesNotContain(frames, f => f.Type is FrameType.ConnectionClose or FrameType.Crypto);
            Assert.Contains(frames, f => f.Type == FrameType.Ack);
            var events = new List<ConnectionEventKind>();
            while (connection.Core.TryDequeueEvent(out ConnectionEvent e)) events.Add(e.Kind);
            Assert.Single(events, k => k == ConnectionEventKind.ClientHelloReceived);
        }
    }

    [Fact]
    public void DataAfterTheClientHello_IsAProtocolError()
    {
        // Nothing may follow the ClientHello at the Initial level before the server replies.
        byte[] hello = RealClientHello();
        (QuicEndpointCore server, List<OpenedFrame> frames) = FeedDeferred(
            EndpointPackets.ClientInitial(ForgedDcid, ForgedScid, 0, 0, hello),
            EndpointPackets.ClientInitial(ForgedDcid, ForgedScid, 1, (ulong)hello.Length, [1, 0, 0, 0]));
        using (server)
        {
            OpenedFrame close = Assert.Single(frames, f => f.Type == FrameType.ConnectionClose);
            Assert.Equal(0x10aUL, close.ErrorCode);
            Assert.NotNull(Assert.Single(server.Connections).Core.ClientHello);
        }
    }
}
