using System.Buffers.Binary;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class VersionNegotiationEndpointTests
{
    private const long Now = EndpointPair.StartTime;
    private static readonly IPEndPoint Sender = new(IPAddress.Parse("192.0.2.1"), 5555);
    private static readonly byte[] Dcid = [1, 2, 3, 4, 5, 6, 7, 8];
    private static readonly byte[] Scid = [0xa1, 0xa2, 0xa3, 0xa4, 0xa5];

    private static QuicEndpointCore Server(Action<QuicConfiguration>? configure = null)
        => new(new EndpointSettings { ServerConfiguration = SimulationHelpers.ServerConfig(configure), StaticKey = EndpointPair.StaticKey });

    private static uint[] ReadVersions(byte[] packet)
    {
        PacketHeader h = EndpointPackets.Header(packet);
        Assert.Equal(PacketType.VersionNegotiation, h.Type);
        var versions = new uint[16];
        Assert.True(VersionNegotiationPacket.TryReadVersions(packet, in h, versions, out int count));
        return versions.AsSpan(0, count).ToArray();
    }

    [Fact]
    public void UnknownVersion_In1200ByteDatagram_GetsExactlyOneVersionNegotiation()
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.LongHeader(0x1a2a3a4a, Dcid, Scid, 1200), Sender, Now);

        (byte[] vn, EndPoint to) = Assert.Single(EndpointPair.PollAll(server, Now));
        Assert.Equal(Sender, to);
        Assert.Equal(0x80, vn[0] & 0x80);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(vn.AsSpan(1)));
        // RFC 9000 §17.2.1: the connection IDs are echoed swapped.
        Assert.Equal(Scid.Length, vn[5]);
        Assert.Equal(Scid, vn.AsSpan(6, Scid.Length).ToArray());
        Assert.Equal(Dcid.Length, vn[6 + Scid.Length]);
        Assert.Equal(Dcid, vn.AsSpan(7 + Scid.Length, Dcid.Length).ToArray());
        Assert.Equal(7 + Scid.Length + Dcid.Length + 3 * 4, vn.Length);

        uint[] versions = ReadVersions(vn);
        Assert.Equal(3, versions.Length);
        Assert.Equal(QuicVersion.Version1, versions[0]);
        Assert.Equal(QuicVersion.Version2, versions[1]);
        Assert.Equal(0x6b3343cfu, versions[1]);
        Assert.True(QuicVersion.IsReserved(versions[2]), $"0x{versions[2]:x8} is a greasing version");
        Assert.DoesNotContain(0x1a2a3a4au, versions.AsSpan(0, 2).ToArray());

        Assert.Equal(1, server.Statistics.VersionNegotiationSent);
        Assert.Equal(1, server.Statistics.DatagramsReceived);
        Assert.Equal(0, server.Statistics.DroppedUnsupportedVersion);
        Assert.Equal(0, server.ConnectionCount);
        Assert.False(server.TryDequeueEvent(out _));
        Assert.Equal(long.MaxValue, server.NextTimeout);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(1199)]
    public void UnknownVersion_InShortDatagram_IsDroppedSilently(int length)
    {
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.LongHeader(0x1a2a3a4a, Dcid, Scid, length), Sender, Now);

        Assert.Empty(EndpointPair.PollAll(server, Now));
        Assert.Equal(1, server.Statistics.DroppedUnsupportedVersion);
        Assert.Equal(0, server.Statistics.VersionNegotiationSent);
    }

    [Fact]
    public void UnknownVersion_WithLongConnectionIds_EchoesThemWhole()
    {
        // RFC 8999 §5.1: under an unknown version connection IDs may be up to 255 bytes; the echo must not cut them.
        byte[] dcid = Enumerable.Range(0, 40).Select(i => (byte)i).ToArray();
        byte[] scid = Enumerable.Range(100, 30).Select(i => (byte)i).ToArray();
        using QuicEndpointCore server = Server();
        server.ReceiveDatagram(EndpointPackets.LongHeader(0xff00aa55, dcid, scid, 1252), Sender, Now);

        (byte[] vn, _) = Assert.Single(EndpointPair.PollAll(server, Now));
        Assert.Equal(scid.Length, vn[5]);
        Assert.Equal(scid, vn.AsSpan(6, scid.Length).ToArray());
        Assert.Equal(dcid.Length, vn[6 + scid.Length]);
        Assert.Equal(dcid, vn.AsSpan(7 + scid.Length, dcid.Length).ToArray());
        Assert.Contains(QuicVersion.Version1, ReadVersions(vn));
    }

    [Fact]
    public void KnownVersionTheServerDisabled_IsNegotiatedAway()
    {
        using QuicEndpointCore server = Server(c => c.SupportedVersions = [QuicVersion.Version1]);
        byte[] initial = EndpointPackets.FakeInitial(QuicVersion.Version2, Dcid, Scid, 1200);
        Assert.Equal(PacketType.Initial, EndpointPackets.Header(initial).Type);
        server.ReceiveDatagram(initial, Sender, Now);

        (byte[] vn, _) = Assert.Single(EndpointPair.PollAll(server, Now));
        uint[] versions = ReadVersions(vn);
        Assert.Equal(2, versions.Length);
        Assert.Equal(QuicVersion.Version1, versions[0]);
        Assert.True(QuicVersion.IsReserved(versions[1]));
        Assert.Equal(0, server.ConnectionCount);
    }

    [Fact]
    public void VersionNegotiationPackets_AreNeverAnswered()
    {
        using QuicEndpointCore server = Server();
        var vn = new byte[1200];
        int n = VersionNegotiationPacket.Write(vn, Dcid, Scid, [QuicVersion.Version1], 0x12);
        server.ReceiveDatagram(vn.AsSpan(0, n).ToArray(), Sender, Now);
        server.ReceiveDatagram(vn, Sender, Now);

        Assert.Empty(EndpointPair.PollAll(server, Now));
        Assert.Equal(2, server.Statistics.DroppedNoConnection);
        Assert.Equal(0, server.Statistics.VersionNegotiationSent);
    }

    [Fact]
    public void ClientEndpoint_NeverSendsVersionNegotiation()
    {
        using var client = new QuicEndpointCore(new EndpointSettings());
        Assert.False(client.IsServer);
        client.ReceiveDatagram(EndpointPackets.LongHeader(0x1a2a3a4a, Dcid, Scid, 1200), Sender, Now);
        client.ReceiveDatagram(EndpointPackets.FakeInitial(QuicVersion.Version1, Dcid, Scid, 1200), Sender, Now);

        Assert.Empty(EndpointPair.PollAll(client, Now));
        Assert.Equal(2, client.Statistics.DroppedNoConnection);
        Assert.Equal(0, client.ConnectionCount);
    }

    [Fact]
    public void Client_PreferringADisabledVersion_SwitchesAfterVersionNegotiation()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [QuicVersion.Version1]));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [QuicVersion.Version2, QuicVersion.Version1]));
        Assert.Equal(QuicVersion.Version2, client.Core.Version);

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(1, pair.Server.Statistics.VersionNegotiationSent);
        Assert.Equal(QuicVersion.Version1, client.Core.Version);
        Assert.Equal(QuicVersion.Version1, pair.ServerSideOf(client)!.Core.Version);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);

        List<SimDatagram> fromClient = pair.SentFrom(EndpointPair.ClientAddress);
        Assert.Equal(QuicVersion.Version2, EndpointPackets.Header(fromClient[0].Data).Version);
        Assert.Equal(QuicVersion.Version1, EndpointPackets.Header(fromClient[1].Data).Version);
        Assert.Equal(PacketType.VersionNegotiation, EndpointPackets.Header(pair.SentFrom(EndpointPair.ServerAddress)[0].Data).Type);
    }

    [Fact]
    public void Client_WithNoCommonVersion_EndsWithVersionNegotiationError()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.SupportedVersions = [QuicVersion.Version1]));
        EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c => c.SupportedVersions = [QuicVersion.Version2]));

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(5)));
        Assert.Equal((ulong)TransportErrorCode.VersionNegotiationError, client.Core.CloseReason!.ErrorCode);
        Assert.Equal(1, pair.Server.Statistics.VersionNegotiationSent);
        Assert.Equal(0, pair.Server.ConnectionCount);
        // The client sent its one Initial and nothing after the Version Negotiation packet.
        Assert.Single(pair.SentFrom(EndpointPair.ClientAddress));
    }

    [Fact]
    public void Client_CannotBeConfiguredToStartWithAReservedVersion()
    {
        // A client cannot open with a greasing version (0x?a?a?a?a): configuration validation rejects it.
        QuicConfiguration config = SimulationHelpers.ClientConfig(c => c.SupportedVersions = [0x0a0a0a0a, QuicVersion.Version1]);
        Assert.Contains(config.Validate(), e => e.Contains("0x0a0a0a0a", StringComparison.Ordinal));
        using var client = new QuicEndpointCore(new EndpointSettings());
        Assert.Throws<ArgumentException>(() => client.Connect(config, EndpointPair.ServerAddress, Now));
        Assert.Equal(0, client.ConnectionCount);
    }
}
