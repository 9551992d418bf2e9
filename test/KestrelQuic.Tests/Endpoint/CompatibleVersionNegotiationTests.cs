using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>
/// Compatible version negotiation between QUIC versions 1 and 2 (RFC 9368 §2.3, RFC 9369 §4) and the downgrade
/// protection of version_information (RFC 9368 §4), through the endpoint on the simulated network.
/// </summary>
public sealed class CompatibleVersionNegotiationTests
{
    private const uint V1 = QuicVersion.Version1;
    private const uint V2 = QuicVersion.Version2;

    private static List<OpenedPacket> LongHeaderPackets(EndpointPair pair, System.Net.IPEndPoint from, EndpointConnection client)
        => pair.SentFrom(from)
            .SelectMany(d => EndpointPackets.Open(d.Data, client.Core.OriginalDestinationConnectionId, sentByServer: from.Equals(EndpointPair.ServerAddress)))
            .Where(p => p.Type is PacketType.Initial or PacketType.Handshake or PacketType.ZeroRtt)
            .ToList();

    private static void AssertStreamWorks(EndpointPair pair, EndpointConnection client)
    {
        Assert.True(client.Core.TryOpenStream(true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(50_000, 7);
        pair.SendStream(client, id, payload);
        Assert.True(pair.RunUntil(() => pair.ServerSideOf(client) is { } s && pair.Finished.Contains((s, id)), TimeSpan.FromSeconds(10)));
        Assert.Equal(payload, pair.ReceivedBytes(pair.ServerSideOf(client)!, id));
    }

    [Fact]
    public void ClientStartingInV1OfferingV2_ServerPreferringV2_HandshakeCompletesInV2()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [V2, V1]));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig()); // default: version 1, then 2
        Assert.Equal(V1, client.Core.Version);

        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.Equal(V2, client.Core.Version);
        Assert.Equal(V2, server.Core.Version);
        Assert.Equal(0, pair.Server.Statistics.VersionNegotiationSent); // no round trip spent

        // The client offered v1 (Chosen) and v2; the server chose v2 and told the client so.
        VersionInformation clientInfo = server.Core.PeerTransportParameters!.VersionInformation!;
        Assert.Equal(V1, clientInfo.ChosenVersion);
        Assert.Equal([V1, V2], clientInfo.AvailableVersions);
        Assert.Equal(V2, client.Core.PeerTransportParameters!.VersionInformation!.ChosenVersion);
        Assert.Equal(V2, server.Core.LocalTransportParameters.VersionInformation!.ChosenVersion);

        // Wire: the client's first flight is v1; every long-header packet of the server, and every one the client
        // sends once it saw the server's, is v2 (Initial keys of v2 from the client's original DCID: the Initials open).
        List<SimDatagram> fromClient = pair.SentFrom(EndpointPair.ClientAddress);
        Assert.All(EndpointPackets.Open(fromClient[0].Data, client.Core.OriginalDestinationConnectionId, sentByServer: false), p => Assert.Equal(V1, p.Version));
        List<OpenedPacket> serverPackets = LongHeaderPackets(pair, EndpointPair.ServerAddress, client);
        Assert.Contains(serverPackets, p => p.Type == PacketType.Handshake);
        Assert.All(serverPackets, p => Assert.Equal(V2, p.Version));
        Assert.All(serverPackets.Where(p => p.Type == PacketType.Initial), p => Assert.NotNull(p.Frames));
        List<OpenedPacket> laterClientPackets = fromClient.Skip(1)
            .SelectMany(d => EndpointPackets.Open(d.Data, client.Core.OriginalDestinationConnectionId, sentByServer: false))
            .Where(p => p.Type is PacketType.Initial or PacketType.Handshake).ToList();
        Assert.Contains(laterClientPackets, p => p.Type == PacketType.Handshake);
        Assert.All(laterClientPackets, p => Assert.Equal(V2, p.Version));

        AssertStreamWorks(pair, client);
        Assert.Null(client.Core.CloseReason);
    }

    [Fact]
    public void ServerPreferringV1_ClientOfferingV2_StaysInV1()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings()); // default preference: version 1, then 2
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig());

        Assert.True(pair.RunUntilEstablished(client));
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.Equal(V1, client.Core.Version);
        Assert.Equal(V1, server.Core.Version);
        Assert.Equal(V1, client.Core.PeerTransportParameters!.VersionInformation!.ChosenVersion);
        Assert.All(LongHeaderPackets(pair, EndpointPair.ServerAddress, client), p => Assert.Equal(V1, p.Version));
        AssertStreamWorks(pair, client);
    }

    [Fact]
    public void ClientStartingInV2_ServerPreferringV1_SwitchesToV1()
    {
        // The other direction: version 2 is compatible with version 1 too (RFC 9369 §4).
        using var pair = new EndpointPair(EndpointPair.ServerSettings());
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [V2, V1]));
        Assert.Equal(V2, client.Core.Version);

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(V1, client.Core.Version);
        Assert.Equal(V1, pair.ServerSideOf(client)!.Core.Version);
        Assert.Equal(V2, EndpointPackets.Header(pair.SentFrom(EndpointPair.ClientAddress)[0].Data).Version);
        Assert.All(LongHeaderPackets(pair, EndpointPair.ServerAddress, client), p => Assert.Equal(V1, p.Version));
        AssertStreamWorks(pair, client);
    }

    [Fact]
    public void ClientOfferingOnlyV1_ServerPreferringV2_StaysInV1()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [V2, V1]));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [V1]));

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(V1, client.Core.Version);
        Assert.Equal(V1, pair.ServerSideOf(client)!.Core.Version);
        Assert.All(LongHeaderPackets(pair, EndpointPair.ServerAddress, client), p => Assert.Equal(V1, p.Version));
    }

    [Fact]
    public void CompatibleSwitch_AfterRetry_CompletesInV2()
    {
        // RFC 9369 §4.1: the Retry is in the original version; the switch happens on the Initial that carries the token.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c =>
        {
            c.SupportedVersions = [V2, V1];
            c.Retry = RetryMode.Always;
        }));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig());

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(1, pair.Server.Statistics.RetrySent);
        Assert.Equal(V2, client.Core.Version);
        Assert.Equal(V2, pair.ServerSideOf(client)!.Core.Version);
        OpenedPacket retry = pair.SentFrom(EndpointPair.ServerAddress).SelectMany(d => EndpointPackets.Open(d.Data, client.Core.OriginalDestinationConnectionId, true)).First();
        Assert.Equal(PacketType.Retry, retry.Type);
        Assert.Equal(V1, retry.Version);
        AssertStreamWorks(pair, client);
    }

    private static readonly byte[] s_ticketKey = Enumerable.Range(3, 32).Select(i => (byte)i).ToArray();

    private static EndpointSettings TicketServer(uint[] versions) => EndpointPair.ServerSettings(c =>
    {
        c.SupportedVersions = versions;
        c.EnableEarlyData = true;
        c.SessionTicketKey = s_ticketKey;
    });

    private static byte[] ObtainTicket(EndpointPair pair)
    {
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(5)));
        return pair.EventsOf(first).First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;
    }

    [Fact]
    public void ResumedClientWithZeroRtt_ServerSwitchesToV2_EarlyDataStillAccepted()
    {
        // A ticket from a v1 connection starts a v1 connection (RFC 9369 §5); the server, now preferring v2, switches
        // it. 0-RTT stays in the original version (§4.1): the server reads it with v1 0-RTT keys after switching.
        using var pair = new EndpointPair(TicketServer([V1, V2]));
        byte[] ticket = ObtainTicket(pair);
        pair.ReplaceServer(TicketServer([V2, V1]));

        int sentBefore = pair.Sent.Count;
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
        }));
        Assert.Equal(V1, client.Core.Version);
        Assert.True(client.Core.TryOpenStream(true, out ulong id));
        pair.SendStream(client, id, "early"u8.ToArray());
        Assert.True(pair.RunUntil(() => pair.ServerSideOf(client) is { } s && pair.Finished.Contains((s, id)), TimeSpan.FromSeconds(5)));
        Assert.True(pair.RunUntilEstablished(client));

        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.Equal(V2, client.Core.Version);
        Assert.Equal(V2, server.Core.Version);
        Assert.True(server.Core.Tls.IsResumed);
        Assert.Equal(EarlyDataStatus.Accepted, client.Core.Tls.EarlyData);
        Assert.True(server.Core.GetStream(id)!.ReceivedEarlyData);
        Assert.Equal("early"u8.ToArray(), pair.ReceivedBytes(server, id));
        List<OpenedPacket> zeroRtt = pair.Sent.Skip(sentBefore).Where(d => d.From.Equals(EndpointPair.ClientAddress))
            .SelectMany(d => EndpointPackets.Open(d.Data, client.Core.OriginalDestinationConnectionId, false))
            .Where(p => p.Type == PacketType.ZeroRtt).ToList();
        Assert.NotEmpty(zeroRtt);
        Assert.All(zeroRtt, p => Assert.Equal(V1, p.Version));
    }

    [Fact]
    public void TicketFromAV2Connection_ClientResumesInV2()
    {
        // The client starts in v1 by default, but a ticket issued by a connection that was switched to v2 may only
        // start a v2 connection (RFC 9369 §5): the resuming client opens in v2, and resumes.
        using var pair = new EndpointPair(TicketServer([V2, V1]));
        byte[] ticket = ObtainTicket(pair);
        Assert.True(TlsSessionTicket.TryDeserialize(ticket, out TlsSessionTicket? t));
        Assert.Equal(V2, TransportParametersOf(t!).VersionInformation!.ChosenVersion);

        int sentBefore = pair.Sent.Count;
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SessionTicket = ticket));
        Assert.Equal(V2, client.Core.Version);
        Assert.True(pair.RunUntilEstablished(client));
        Assert.True(client.Core.Tls.IsResumed);
        Assert.Equal(V2, EndpointPackets.Header(pair.Sent.Skip(sentBefore).First(d => d.From.Equals(EndpointPair.ClientAddress)).Data).Version);
    }

    [Fact]
    public void TicketFromAnotherVersion_ServerRefusesIt_FullHandshake()
    {
        // The client's copy of the ticket says v2 (so it starts in v2), but the server sealed v1 into it: the server
        // does not resume a v2 connection from a v1 ticket (RFC 9369 §5).
        using var pair = new EndpointPair(TicketServer([V1, V2]));
        byte[] ticket = ObtainTicket(pair);
        Assert.True(TlsSessionTicket.TryDeserialize(ticket, out TlsSessionTicket? t));
        TransportParameters remembered = TransportParametersOf(t!);
        Assert.Equal(V1, remembered.VersionInformation!.ChosenVersion);
        remembered.VersionInformation.ChosenVersion = V2;
        t!.QuicData = remembered.Encode();

        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SessionTicket = t.Serialize()));
        Assert.Equal(V2, client.Core.Version);
        Assert.True(pair.RunUntilEstablished(client));
        Assert.False(client.Core.Tls.IsResumed);
        Assert.False(pair.ServerSideOf(client)!.Core.Tls.IsResumed);
        Assert.Null(client.Core.CloseReason);
    }

    private static TransportParameters TransportParametersOf(TlsSessionTicket ticket)
    {
        Assert.True(TransportParameters.TryDecode(ticket.QuicData, sentByServer: true, out TransportParameters? p, out _));
        return p!;
    }

    [Fact]
    public void ClientChosenVersionDifferentFromItsPackets_ServerClosesWithVersionNegotiationError()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [V2, V1]));
        // The client's Initial is v1, but its (authenticated) version_information claims it chose v2.
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.LocalTransportParametersTestHook = (p, isServer) =>
        {
            if (!isServer) p.VersionInformation = new VersionInformation { ChosenVersion = V2, AvailableVersions = [V2, V1] };
        }));

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(10)));
        EndpointConnection server = Assert.Single(pair.Accepted);
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, server.Core.CloseReason!.ErrorCode);
        Assert.False(server.Core.CloseReason.ClosedByPeer);
        Assert.Equal(V1, server.Core.Version); // no switch on such an offer
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, client.Core.CloseReason!.ErrorCode);
        Assert.True(client.Core.CloseReason.ClosedByPeer);
        Assert.False(client.Core.IsHandshakeComplete);
    }

    [Fact]
    public void ServerChosenVersionDifferentFromTheNegotiatedOne_ClientClosesWithVersionNegotiationError()
    {
        // The server speaks v1 on the wire but its version_information claims v2: a forged long-header version
        // could do that; the client must not accept it (RFC 9368 §4).
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.LocalTransportParametersTestHook = (p, isServer) =>
        {
            if (isServer) p.VersionInformation!.ChosenVersion = V2;
        }));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig());

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(10)));
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, client.Core.CloseReason!.ErrorCode);
        Assert.False(client.Core.CloseReason.ClosedByPeer);
        Assert.False(client.Core.IsHandshakeComplete);
        EndpointConnection server = Assert.Single(pair.Accepted);
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, server.Core.CloseReason!.ErrorCode);
        Assert.True(server.Core.CloseReason.ClosedByPeer);
    }

    /// <summary>Drops the client's v2 Initials and answers the first with a forged Version Negotiation listing <paramref name="offered"/>.</summary>
    private static void ForgeVersionNegotiation(EndpointPair pair, EndpointConnection client, uint[] offered)
    {
        pair.Filter = d => !(d.From.Equals(EndpointPair.ClientAddress) && EndpointPackets.Header(d.Data) is { IsLongHeader: true, Version: V2 });
        pair.RunFor(TimeSpan.FromMilliseconds(1));
        Assert.Equal(V2, EndpointPackets.Header(Assert.Single(pair.SentFrom(EndpointPair.ClientAddress)).Data).Version);
        Assert.Equal(0, pair.Server.ConnectionCount);
        var vn = new byte[128];
        int n = VersionNegotiationPacket.Write(vn, client.Core.LocalTransportParameters.InitialSourceConnectionId, client.Core.OriginalDestinationConnectionId, offered, 0x15);
        pair.DeliverNow(EndpointPair.ServerAddress, EndpointPair.ClientAddress, vn.AsSpan(0, n).ToArray());
        Assert.Equal(V1, client.Core.Version); // restarted with the only version offered
    }

    [Fact]
    public void ForgedVersionNegotiation_DowngradeToV1_ClientClosesWithVersionNegotiationError()
    {
        // The server supports (and would accept) v2, the client prefers v2; an attacker answers the client's v2
        // Initial with a Version Negotiation packet offering only v1. The server's Available Versions expose it.
        using var pair = new EndpointPair(EndpointPair.ServerSettings());
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [V2, V1]));
        ForgeVersionNegotiation(pair, client, [V1]);

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(10)));
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, client.Core.CloseReason!.ErrorCode);
        Assert.False(client.Core.CloseReason.ClosedByPeer);
        Assert.Contains("downgrade", client.Core.CloseReason.Reason, StringComparison.Ordinal);
        Assert.False(client.Core.IsHandshakeComplete);
        EndpointConnection server = Assert.Single(pair.Accepted);
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, server.Core.CloseReason!.ErrorCode);
        Assert.True(server.Core.CloseReason.ClosedByPeer);

        // The restarted first flight was a new ClientHello naming v1 as its Chosen Version.
        Assert.Equal(V1, server.Core.PeerTransportParameters!.VersionInformation!.ChosenVersion);
    }

    [Fact]
    public void GenuineVersionNegotiation_ServerOnlyV1_ClientAcceptsV1()
    {
        // The counterpart: a server that really supports only v1 lists only v1 in its Available Versions.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [V1]));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [V2, V1]));
        ForgeVersionNegotiation(pair, client, [V1]);

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(V1, client.Core.Version);
        Assert.Equal(V1, pair.ServerSideOf(client)!.Core.Version);
        Assert.Null(client.Core.CloseReason);
        AssertStreamWorks(pair, client);
    }

    [Fact]
    public void VersionNegotiation_ThenV1ServerWithoutVersionInformation_Completes()
    {
        // RFC 9368 §8: after Version Negotiation, a missing version_information is read as "version 1 only".
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c =>
        {
            c.SupportedVersions = [V1];
            c.LocalTransportParametersTestHook = (p, isServer) => p.VersionInformation = null;
        }));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [V2, V1]));
        ForgeVersionNegotiation(pair, client, [V1]);
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(V1, client.Core.Version);
    }
}
