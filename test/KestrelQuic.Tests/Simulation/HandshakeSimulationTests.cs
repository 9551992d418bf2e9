using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Crypto;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Simulation;

public sealed class HandshakeSimulationTests
{
    [Theory]
    [InlineData(CipherSuite.Aes128GcmSha256)]
    [InlineData(CipherSuite.Aes256GcmSha384)]
    [InlineData(CipherSuite.ChaCha20Poly1305Sha256)]
    public void Handshake_CompletesWithEachCipherSuite(CipherSuite suite)
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.CipherSuites = new List<CipherSuite> { suite }),
            SimulationHelpers.ServerConfig());

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.Equal(suite, net.Client.Tls.NegotiatedCipherSuite);
        Assert.Equal(suite, net.Server!.Tls.NegotiatedCipherSuite);
        Assert.Equal(SimulationHelpers.Alpn, net.Client.Tls.NegotiatedApplicationProtocol);
        Assert.Equal(ConnectionState.Established, net.Client.State);
        Assert.Equal(ConnectionState.Established, net.Server.State);
        Assert.Contains(net.ClientEvents, e => e.Kind == ConnectionEventKind.HandshakeCompleted);
        Assert.Contains(net.ServerEvents, e => e.Kind == ConnectionEventKind.HandshakeConfirmed);

        // The peers saw each other's transport parameters.
        Assert.Equal((ulong)net.ServerConfig.MaxData, net.Client.PeerTransportParameters!.InitialMaxData);
        Assert.Equal(net.Client.OriginalDestinationConnectionId, net.Client.PeerTransportParameters.OriginalDestinationConnectionId);
    }

    [Theory]
    [InlineData(KeyExchangeGroup.X25519)]
    [InlineData(KeyExchangeGroup.Secp256r1)]
    [InlineData(KeyExchangeGroup.Secp384r1)]
    public void Handshake_CompletesWithEachGroup(KeyExchangeGroup group)
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.KeyExchangeGroups = new List<KeyExchangeGroup> { group }),
            SimulationHelpers.ServerConfig(c => c.KeyExchangeGroups = new List<KeyExchangeGroup> { group }));

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.Equal((ushort)group, (ushort)net.Server!.Tls.NegotiatedGroup!.Value);
        Assert.False(net.Server.Tls.HelloRetryRequestUsed);
    }

    [Fact]
    public void Handshake_HelloRetryRequestWhenServerLacksClientsFirstGroup()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.KeyExchangeGroups = new List<KeyExchangeGroup> { KeyExchangeGroup.X25519, KeyExchangeGroup.Secp256r1 }),
            SimulationHelpers.ServerConfig(c => c.KeyExchangeGroups = new List<KeyExchangeGroup> { KeyExchangeGroup.Secp256r1 }));

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.Tls.HelloRetryRequestUsed);
        Assert.Equal((ushort)KeyExchangeGroup.Secp256r1, (ushort)net.Client.Tls.NegotiatedGroup!.Value);
    }

    [Fact]
    public void Handshake_SurvivesLossReorderingAndDuplication()
    {
        for (int seed = 1; seed <= 10; seed++)
        {
            using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), seed);
            foreach (LinkConditions link in new[] { net.ToServer, net.ToClient })
            {
                link.LossRate = 0.3;
                link.ReorderRate = 0.2;
                link.DuplicateRate = 0.1;
            }

            Assert.True(net.RunUntilHandshakeComplete(TimeSpan.FromSeconds(120)), $"seed {seed}");
        }
    }

    [Fact]
    public void Handshake_ClientInitialsPaddedTo1200_InitialAndHandshakeKeysDiscardedOnceConfirmed()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.False(net.Client.IsSpaceDiscarded(PacketNumberSpace.Initial));
        var clientInitials = new List<byte[]>();
        var serverLongHeaders = new List<byte[]>();
        net.Filter = (toServer, datagram) =>
        {
            Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader header));
            if (toServer && header.Type == PacketType.Initial) clientInitials.Add((byte[])datagram.Clone());
            if (!toServer && header.IsLongHeader) serverLongHeaders.Add((byte[])datagram.Clone());
            return true;
        };

        Assert.True(net.RunUntilHandshakeComplete());
        net.Filter = null;

        // RFC 9000 §14.1: every datagram carrying a client Initial is at least 1200 bytes.
        Assert.NotEmpty(clientInitials);
        Assert.All(clientInitials, d => Assert.True(d.Length >= 1200, $"client Initial datagram of {d.Length} bytes"));
        Assert.Contains(serverLongHeaders, ContainsHandshakePacket);

        // RFC 9001 §4.9: once the handshake is confirmed both sides have dropped their Initial and Handshake keys,
        // and replayed Initial and Handshake packets are discarded without being processed.
        foreach (QuicConnectionCore side in new[] { net.Client, net.Server! })
        {
            Assert.True(side.IsSpaceDiscarded(PacketNumberSpace.Initial), $"{(side.IsClient ? "client" : "server")} kept its Initial keys");
            Assert.True(side.IsSpaceDiscarded(PacketNumberSpace.Handshake), $"{(side.IsClient ? "client" : "server")} kept its Handshake keys");
        }

        long serverReceived = net.Server!.Statistics.PacketsReceived;
        long serverDropped = net.Server.Statistics.PacketsDropped;
        foreach (byte[] d in clientInitials) net.Server.ReceiveDatagram((byte[])d.Clone(), SimulatedNetwork.ClientAddress, net.Now);
        Assert.Equal(serverReceived, net.Server.Statistics.PacketsReceived);
        Assert.True(net.Server.Statistics.PacketsDropped >= serverDropped + clientInitials.Count);

        long clientReceived = net.Client.Statistics.PacketsReceived;
        long clientDropped = net.Client.Statistics.PacketsDropped;
        foreach (byte[] d in serverLongHeaders) net.Client.ReceiveDatagram((byte[])d.Clone(), SimulatedNetwork.ServerAddress, net.Now);
        Assert.Equal(clientReceived, net.Client.Statistics.PacketsReceived);
        Assert.True(net.Client.Statistics.PacketsDropped >= clientDropped + serverLongHeaders.Count);

        net.RunFor(TimeSpan.FromMilliseconds(100));
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server.CloseReason);
    }

    /// <summary>Whether a datagram holds a Handshake packet (first or coalesced).</summary>
    private static bool ContainsHandshakePacket(byte[] datagram)
    {
        int offset = 0;
        while (offset < datagram.Length && PacketHeaderParser.TryParse(datagram.AsSpan(offset), 8, out PacketHeader h) && h.IsLongHeader)
        {
            if (h.Type == PacketType.Handshake) return true;
            if (h.PacketLength <= 0) return false;
            offset += h.PacketLength;
        }

        return false;
    }

    [Fact]
    public void Handshake_ServerStaysWithinAmplificationLimit()
    {
        // Drop everything the client sends after its first datagram: the server may send at most 3x what it received.
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        int clientDatagrams = 0;
        net.Filter = (toServer, _) => !toServer || ++clientDatagrams == 1;
        net.RunFor(TimeSpan.FromSeconds(10));
        Assert.NotNull(net.Server);
        Assert.True(net.BytesToClient <= 3 * 1200, $"server sent {net.BytesToClient} bytes for one 1200-byte datagram");
        Assert.True(net.BytesToClient > 0);
    }

    [Fact]
    public void Handshake_NoCommonAlpn_ClosesWithCryptoError120()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.ApplicationProtocols = new List<string> { "other" }),
            SimulationHelpers.ServerConfig());
        net.RunUntil(() => net.Client.State == ConnectionState.Closed || net.Client.State == ConnectionState.Draining, TimeSpan.FromSeconds(10));
        Assert.NotNull(net.Client.CloseReason);
        Assert.True(net.Client.CloseReason!.ClosedByPeer);
        Assert.Equal(0x100UL + 120, net.Client.CloseReason.ErrorCode);
    }

    [Fact]
    public void Handshake_UntrustedCertificate_ClientClosesWithBadCertificateAlert()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.TrustedCertificateAuthorities = null),
            SimulationHelpers.ServerConfig());
        net.RunUntil(() => net.Server?.CloseReason is not null, TimeSpan.FromSeconds(10));
        Assert.NotNull(net.Client.CloseReason);
        Assert.False(net.Client.CloseReason!.ClosedByPeer);
        Assert.True(net.Client.CloseReason.ErrorCode is >= 0x100 and <= 0x1ff);
        Assert.True(net.Server!.CloseReason!.ClosedByPeer);
    }

    [Fact]
    public void IdleTimeout_ClosesBothSidesWithoutTraffic()
    {
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.IdleTimeout = TimeSpan.FromSeconds(5)),
            SimulationHelpers.ServerConfig(c => c.IdleTimeout = TimeSpan.FromSeconds(10)));
        Assert.True(net.RunUntilHandshakeComplete());
        long start = net.Now;
        Assert.True(net.RunUntil(() => net.Client.State == ConnectionState.Closed && net.Server!.State == ConnectionState.Closed, TimeSpan.FromSeconds(60)));
        Assert.True(net.Client.CloseReason!.IdleTimeout);
        Assert.True(net.Server!.CloseReason!.IdleTimeout);
        // The smaller of the two advertised timeouts applies (RFC 9000 §10.1).
        double elapsed = TimeSpan.FromTicks(net.Now - start).TotalSeconds;
        Assert.InRange(elapsed, 4.5, 7);
    }

    [Fact]
    public void Close_ApplicationErrorReachesPeer()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        net.Client.Close(0x1234, "bye", net.Now);
        Assert.True(net.RunUntil(() => net.Server!.CloseReason is not null, TimeSpan.FromSeconds(5)));
        Assert.True(net.Server!.CloseReason!.IsApplicationError);
        Assert.Equal(0x1234UL, net.Server.CloseReason.ErrorCode);
        Assert.Equal("bye", net.Server.CloseReason.Reason);
        Assert.True(net.RunUntil(() => net.Client.State == ConnectionState.Closed && net.Server.State == ConnectionState.Closed, TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public void Version2_HandshakeCompletes()
    {
        // Both sides prefer version 2 (a server preferring version 1 would switch the connection to it: RFC 9368).
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.SupportedVersions = new List<uint> { QuicVersion.Version2, QuicVersion.Version1 }),
            SimulationHelpers.ServerConfig(c => c.SupportedVersions = new List<uint> { QuicVersion.Version2, QuicVersion.Version1 }));
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.Equal(QuicVersion.Version2, net.Client.Version);
        Assert.Equal(QuicVersion.Version2, net.Server!.Version);
    }
}

public sealed class NewTokenSimulationTests
{
    [Fact]
    public void ServerNewToken_ReachesClientDespiteLoss()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), seed: 3);
        Assert.True(net.RunUntilHandshakeComplete());
        net.ToClient.LossRate = 0.5;
        byte[] token = { 1, 2, 3, 4, 5 };
        net.Server!.SendNewToken(token);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.NewTokenReceived), TimeSpan.FromSeconds(30)));
        Assert.Equal(token, net.ClientEvents.First(e => e.Kind == ConnectionEventKind.NewTokenReceived).Data);
        Assert.Throws<InvalidOperationException>(() => net.Client.SendNewToken(token));
    }
}
