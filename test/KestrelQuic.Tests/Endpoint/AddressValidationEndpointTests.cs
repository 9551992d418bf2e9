using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class AddressValidationEndpointTests
{
    private static EndpointSettings RetryAlways(TimeSpan? newTokenLifetime = null) => new()
    {
        ServerConfiguration = SimulationHelpers.ServerConfig(c => c.Retry = RetryMode.Always),
        StaticKey = EndpointPair.StaticKey,
        NewTokenLifetime = newTokenLifetime ?? TimeSpan.FromDays(1),
    };

    [Fact]
    public void RetryAlways_ClientFollowsTheRetryAndTheServerAuthenticatesIt()
    {
        using var pair = new EndpointPair(RetryAlways());
        EndpointConnection client = pair.Connect();
        byte[] odcid = client.Core.OriginalDestinationConnectionId;
        byte[] clientScid = client.Core.LocalTransportParameters.InitialSourceConnectionId!;

        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(1, pair.Server.Statistics.RetrySent);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Equal(0, pair.Server.Statistics.InvalidTokens);
        EndpointConnection server = Assert.Single(pair.Accepted);

        // The server's first answer is the Retry: to the client's SCID, from a fresh SCID, with a token and a valid tag.
        byte[] retry = pair.SentFrom(EndpointPair.ServerAddress)[0].Data;
        PacketHeader rh = EndpointPackets.Header(retry);
        Assert.Equal(PacketType.Retry, rh.Type);
        Assert.Equal(QuicVersion.Version1, rh.Version);
        Assert.Equal(clientScid, retry.AsSpan(rh.DestinationConnectionIdOffset, rh.DestinationConnectionIdLength).ToArray());
        byte[] retryScid = retry.AsSpan(rh.SourceConnectionIdOffset, rh.SourceConnectionIdLength).ToArray();
        Assert.Equal(8, retryScid.Length);
        Assert.NotEqual(odcid, retryScid);
        byte[] retryToken = retry.AsSpan(rh.TokenOffset, rh.TokenLength).ToArray();
        Assert.Equal(0xA1, retryToken[0]);
        Assert.True(RetryIntegrity.Verify(QuicVersion.Version1, odcid, retry));
        Assert.False(RetryIntegrity.Verify(QuicVersion.Version1, retryScid, retry));

        // The client's first Initial carries no token; its second goes to the Retry's SCID with the token.
        List<SimDatagram> fromClient = pair.SentFrom(EndpointPair.ClientAddress);
        OpenedPacket first = EndpointPackets.Open(fromClient[0].Data, odcid, sentByServer: false)[0];
        Assert.Equal(odcid, first.Dcid);
        Assert.Empty(first.Token);
        OpenedPacket second = EndpointPackets.Open(fromClient[1].Data, retryScid, sentByServer: false)[0];
        Assert.Equal(PacketType.Initial, second.Type);
        Assert.Equal(retryScid, second.Dcid);
        Assert.Equal(retryToken, second.Token);
        Assert.NotNull(second.Frames); // protected with the keys of the Retry's SCID
        Assert.Contains(second.Frames!, f => f.Type == FrameType.Crypto && f.Offset == 0);

        // RFC 9000 §7.3: the server authenticates both connection IDs; the client checked them.
        Assert.Equal(retryScid, server.Core.LocalTransportParameters.RetrySourceConnectionId);
        Assert.Equal(odcid, server.Core.LocalTransportParameters.OriginalDestinationConnectionId);
        Assert.Equal(retryScid, client.Core.PeerTransportParameters!.RetrySourceConnectionId);
        Assert.Equal(odcid, client.Core.PeerTransportParameters.OriginalDestinationConnectionId);

    }

    [Theory]
    [InlineData(RetryMode.Always)]
    [InlineData(RetryMode.Never)]
    public void RetryToken_ValidatesTheAddressAndLiftsTheAmplificationLimit(RetryMode mode)
    {
        // The client falls silent after the Initial that creates the server connection (its second with Retry, its
        // first without). Unvalidated, the server may send at most 3x the 1200 bytes it received (RFC 9000 §8.1);
        // validated by the Retry token, its probes are not limited.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = mode));
        int allowed = mode == RetryMode.Always ? 2 : 1;
        int sent = 0;
        pair.Filter = d => !d.From.Equals(EndpointPair.ClientAddress) || ++sent <= allowed;
        EndpointConnection client = pair.Connect();
        pair.RunFor(TimeSpan.FromSeconds(10));

        EndpointConnection server = Assert.Single(pair.Accepted);
        Assert.Equal(ConnectionState.Handshake, server.Core.State);
        Assert.Equal(mode == RetryMode.Always ? 1 : 0, pair.Server.Statistics.RetrySent);
        Assert.Equal(allowed, pair.Server.Statistics.DatagramsReceived);
        List<SimDatagram> fromServer = pair.SentFrom(EndpointPair.ServerAddress);
        long connectionBytes = fromServer.Skip(mode == RetryMode.Always ? 1 : 0).Sum(d => (long)d.Data.Length);
        Assert.True(fromServer.Count >= 3, $"{fromServer.Count} datagrams");
        if (mode == RetryMode.Always)
        {
            Assert.Equal(retryScidOf(fromServer[0].Data), server.Core.LocalTransportParameters.RetrySourceConnectionId);
            Assert.True(connectionBytes > 3 * 1200, $"validated server sent only {connectionBytes} bytes");
        }
        else
        {
            Assert.Null(server.Core.LocalTransportParameters.RetrySourceConnectionId);
            Assert.InRange(connectionBytes, 1200, 3 * 1200);
        }

        Assert.False(client.Core.IsHandshakeConfirmed);

        static byte[] retryScidOf(byte[] retry)
        {
            PacketHeader h = EndpointPackets.Header(retry);
            Assert.Equal(PacketType.Retry, h.Type);
            return retry.AsSpan(h.SourceConnectionIdOffset, h.SourceConnectionIdLength).ToArray();
        }
    }

    [Fact]
    public void NewToken_LetsTheNextConnectionSkipRetry()
    {
        using var pair = new EndpointPair(RetryAlways());
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntilEstablished(first));
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.NewTokenReceived), TimeSpan.FromSeconds(1)));
        pair.RunFor(TimeSpan.FromSeconds(1));
        ConnectionEvent tokenEvent = Assert.Single(pair.EventsOf(first), e => e.Kind == ConnectionEventKind.NewTokenReceived);
        byte[] token = tokenEvent.Data!;
        Assert.Equal(0xA2, token[0]);
        Assert.True(pair.Server.AddressTokens.TryValidate(token, EndpointPair.ClientAddress, pair.Now, out AddressValidationToken t));
        Assert.Equal(AddressValidationTokenKind.NewToken, t.Kind);
        Assert.Equal(1, pair.Server.Statistics.RetrySent);

        EndpointConnection second = pair.Connect(token: token);
        Assert.True(pair.RunUntilEstablished(second));
        Assert.Equal(1, pair.Server.Statistics.RetrySent);
        Assert.Equal(0, pair.Server.Statistics.InvalidTokens);
        Assert.Equal(2, pair.Server.Statistics.ConnectionsAccepted);
        EndpointConnection server = pair.ServerSideOf(second)!;
        Assert.Null(server.Core.LocalTransportParameters.RetrySourceConnectionId);
        Assert.Equal(second.Core.OriginalDestinationConnectionId, server.Core.LocalTransportParameters.OriginalDestinationConnectionId);

        OpenedPacket initial = EndpointPackets.Open(pair.Sent.First(d => d.From.Equals(EndpointPair.ClientAddress) && EndpointPackets.Header(d.Data) is { IsLongHeader: true } h && d.Data.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength).SequenceEqual(second.Core.OriginalDestinationConnectionId)).Data, second.Core.OriginalDestinationConnectionId, false)[0];
        Assert.Equal(token, initial.Token);

        // A NEW_TOKEN token is bound to the IP address only: a new port (the usual case) is fine.
        QuicEndpointCore samePortless = pair.AddEndpoint(new IPEndPoint(EndpointPair.ClientAddress.Address, 40001), new EndpointSettings());
        EndpointConnection third = pair.Connect(token: token, from: samePortless);
        Assert.True(pair.RunUntilEstablished(third));
        Assert.Equal(1, pair.Server.Statistics.RetrySent);
        Assert.Equal(3, pair.Server.Statistics.ConnectionsAccepted);
    }

    [Fact]
    public void NewToken_FromAnotherAddressIsIgnoredAndTheServerRetries()
    {
        using var pair = new EndpointPair(RetryAlways());
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntilEstablished(first));
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.NewTokenReceived), TimeSpan.FromSeconds(1)));
        byte[] token = pair.EventsOf(first).First(e => e.Kind == ConnectionEventKind.NewTokenReceived).Data!;

        QuicEndpointCore elsewhere = pair.AddEndpoint(new IPEndPoint(IPAddress.Parse("10.0.0.3"), 40000), new EndpointSettings());
        EndpointConnection other = pair.Connect(token: token, from: elsewhere);
        Assert.True(pair.RunUntilEstablished(other));
        Assert.Equal(2, pair.Server.Statistics.RetrySent);
        Assert.Equal(1, pair.Server.Statistics.InvalidTokens);
        Assert.NotNull(pair.ServerSideOf(other)!.Core.LocalTransportParameters.RetrySourceConnectionId);
    }

    [Fact]
    public void NewToken_PastItsLifetimeIsIgnoredAndTheServerRetries()
    {
        using var pair = new EndpointPair(RetryAlways(newTokenLifetime: TimeSpan.FromMinutes(1)));
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntilEstablished(first));
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.NewTokenReceived), TimeSpan.FromSeconds(1)));
        byte[] token = pair.EventsOf(first).First(e => e.Kind == ConnectionEventKind.NewTokenReceived).Data!;
        Assert.True(pair.Server.AddressTokens.TryValidate(token, EndpointPair.ClientAddress, pair.Now, out AddressValidationToken t));

        pair.RunUntil(() => false, TimeSpan.FromTicks(t.IssuedAt + TimeSpan.FromMinutes(1).Ticks + 1 - pair.Now));
        Assert.Equal(t.IssuedAt + TimeSpan.FromMinutes(1).Ticks + 1, pair.Now);
        EndpointConnection late = pair.Connect(token: token);
        Assert.True(pair.RunUntilEstablished(late));
        Assert.Equal(2, pair.Server.Statistics.RetrySent);
        Assert.Equal(1, pair.Server.Statistics.InvalidTokens);
    }

    [Fact]
    public void ForgedRetryToken_IsAnsweredWithInvalidToken()
    {
        var forged = new byte[60];
        new Random(3).NextBytes(forged);
        forged[0] = 0xA1;
        AssertInvalidTokenClose(forged, expectInvalidTokens: 1);
    }

    [Fact]
    public void GenuineRetryTokenForAnotherConnectionId_IsAnsweredWithInvalidToken()
    {
        // Authentic and fresh, but the client's DCID is not the SCID the token was issued with (RFC 9000 §7.3).
        AssertInvalidTokenClose(null, expectInvalidTokens: 1);
    }

    private static void AssertInvalidTokenClose(byte[]? token, int expectInvalidTokens)
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Never));
        token ??= pair.Server.AddressTokens.CreateRetryToken(EndpointPair.ClientAddress, [1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1], pair.Now);
        EndpointConnection client = pair.Connect(token: token);
        byte[] odcid = client.Core.OriginalDestinationConnectionId;

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(5)));
        QuicCloseReason reason = client.Core.CloseReason!;
        Assert.Equal((ulong)TransportErrorCode.InvalidToken, reason.ErrorCode);
        Assert.Equal(0x0bUL, reason.ErrorCode);
        Assert.True(reason.ClosedByPeer);
        Assert.False(reason.IsApplicationError);
        Assert.False(client.Core.IsHandshakeComplete);
        Assert.Contains(pair.EndpointEventsOf(pair.Client), e => e.Kind == EndpointEventKind.ConnectionRemoved && e.Connection == client);

        EndpointStatistics s = pair.Server.Statistics;
        Assert.Equal(expectInvalidTokens, s.InvalidTokens);
        Assert.Equal(0, s.ConnectionsAccepted);
        Assert.Equal(0, s.RetrySent);
        Assert.Equal(0, pair.Server.ConnectionCount);
        Assert.Empty(pair.Accepted);

        // Exactly one answer: an Initial to the client's SCID, protected with the client's DCID, carrying CONNECTION_CLOSE 0x1c.
        SimDatagram answer = Assert.Single(pair.SentFrom(EndpointPair.ServerAddress));
        OpenedPacket packet = Assert.Single(EndpointPackets.Open(answer.Data, odcid, sentByServer: true));
        Assert.Equal(PacketType.Initial, packet.Type);
        Assert.Equal(client.Core.LocalTransportParameters.InitialSourceConnectionId, packet.Dcid);
        Assert.NotNull(packet.Frames);
        OpenedFrame close = Assert.Single(packet.Frames!, f => f.Type != FrameType.Padding);
        Assert.Equal(FrameType.ConnectionClose, close.Type);
        Assert.Equal(0x0bUL, close.ErrorCode);
    }
}
