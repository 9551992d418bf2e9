using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Endpoint;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>
/// Address validation tokens that are forged, altered, expired, replayed from another address or of the wrong kind
/// (RFC 9000 §8.1.2-§8.1.4): a failing Retry token closes the attempt with INVALID_TOKEN; a failing NEW_TOKEN token
/// counts as no token (Retry when required). Every rejection is counted in <see cref="EndpointStatistics.InvalidTokens"/>.
/// </summary>
public sealed class TokenRejectionEndpointTests
{
    private static readonly IPEndPoint s_otherAddress = new(IPAddress.Parse("10.0.0.66"), 40000);
    private static readonly byte[] s_odcid = [1, 2, 3, 4, 5, 6, 7, 8];
    private static readonly byte[] s_retryScid = [8, 7, 6, 5, 4, 3, 2, 1];

    /// <summary>A Retry token the server issued to the client, captured from the Retry packet of a real exchange.</summary>
    private static byte[] CaptureRetryToken(EndpointPair pair)
    {
        EndpointConnection c = pair.Connect();
        Assert.True(pair.RunUntilEstablished(c));
        byte[] retry = pair.SentFrom(EndpointPair.ServerAddress).First(d => EndpointPackets.Header(d.Data).Type == PacketType.Retry).Data;
        PacketHeader h = EndpointPackets.Header(retry);
        return retry.AsSpan(h.TokenOffset, h.TokenLength).ToArray();
    }

    /// <summary>Connects with <paramref name="token"/> and asserts the server answered only with an Initial CONNECTION_CLOSE(INVALID_TOKEN).</summary>
    private static void AssertInvalidToken(EndpointPair pair, byte[] token, QuicEndpointCore? from = null, string reason = "invalid retry token")
    {
        long invalidBefore = pair.Server.Statistics.InvalidTokens;
        long acceptedBefore = pair.Server.Statistics.ConnectionsAccepted;
        long retriesBefore = pair.Server.Statistics.RetrySent;
        int answersBefore = pair.SentFrom(EndpointPair.ServerAddress).Count;
        EndpointConnection client = pair.Connect(token: token, from: from);

        Assert.True(pair.RunUntil(() => client.Removed, TimeSpan.FromSeconds(5)));
        QuicCloseReason close = client.Core.CloseReason!;
        Assert.Equal((ulong)TransportErrorCode.InvalidToken, close.ErrorCode);
        Assert.True(close.ClosedByPeer);
        Assert.Equal(reason, close.Reason);
        Assert.False(client.Core.IsHandshakeComplete);

        EndpointStatistics s = pair.Server.Statistics;
        Assert.Equal(invalidBefore + 1, s.InvalidTokens);
        Assert.Equal(acceptedBefore, s.ConnectionsAccepted); // no state was created
        Assert.Equal(retriesBefore, s.RetrySent);            // the client would not accept a second Retry
        // Exactly one answer to this client (other traffic belongs to the connection that obtained the token).
        byte[] scid = client.Core.LocalTransportParameters.InitialSourceConnectionId!;
        SimDatagram answer = Assert.Single(pair.SentFrom(EndpointPair.ServerAddress).Skip(answersBefore), d =>
            EndpointPackets.Header(d.Data) is { IsLongHeader: true } h && d.Data.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength).SequenceEqual(scid));
        OpenedPacket packet = Assert.Single(EndpointPackets.Open(answer.Data, client.Core.OriginalDestinationConnectionId, sentByServer: true));
        Assert.Equal(PacketType.Initial, packet.Type);
        OpenedFrame frame = Assert.Single(packet.Frames!, f => f.Type != FrameType.Padding);
        Assert.Equal(FrameType.ConnectionClose, frame.Type);
        Assert.Equal(0x0bUL, frame.ErrorCode);
    }

    [Theory]
    [InlineData(1)]   // nonce
    [InlineData(20)]  // ciphertext
    [InlineData(-1)]  // tag
    public void RetryToken_BitFlipped_InvalidToken(int position)
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Always));
        byte[] token = CaptureRetryToken(pair);
        token[position < 0 ? token.Length + position : position] ^= 0x10;
        AssertInvalidToken(pair, token);
    }

    [Fact]
    public void RetryToken_Expired_InvalidToken()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Never));
        long issued = pair.Now - pair.Server.AddressTokens.RetryTokenLifetime - 1;
        AssertInvalidToken(pair, pair.Server.AddressTokens.CreateRetryToken(EndpointPair.ClientAddress, s_odcid, s_retryScid, issued));
    }

    [Fact]
    public void RetryToken_FromAnotherAddressOrPort_InvalidToken()
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Always));
        byte[] token = CaptureRetryToken(pair);
        // Replayed by someone else (another host), and by the same host from another port (RFC 9000 §8.1.4: Retry
        // tokens are bound to the full address).
        AssertInvalidToken(pair, token, from: pair.AddEndpoint(s_otherAddress, new EndpointSettings()));
        AssertInvalidToken(pair, token, from: pair.AddEndpoint(new IPEndPoint(EndpointPair.ClientAddress.Address, 40002), new EndpointSettings()));
    }

    [Fact]
    public void RetryToken_GenuineButForAnotherConnection_InvalidToken()
    {
        // Authentic, fresh and from the right address, but the client's DCID is not the SCID of the Retry that carried it.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Always));
        byte[] token = CaptureRetryToken(pair);
        AssertInvalidToken(pair, token, reason: "retry token mismatch");
    }

    [Fact]
    public void NewTokenRelabeledAsRetry_InvalidToken()
    {
        // The kind is authenticated: a NEW_TOKEN token presented as a Retry token does not open.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Never));
        byte[] token = pair.Server.AddressTokens.CreateNewToken(EndpointPair.ClientAddress, pair.Now);
        token[0] = (byte)AddressValidationTokenKind.Retry;
        AssertInvalidToken(pair, token);
    }

    public static TheoryData<string> NewTokenCases() => new() { "bitflip", "expired", "other-address", "retry-relabeled", "garbage" };

    /// <summary>A NEW_TOKEN token that cannot be used is ignored: with Retry required the server sends one, and the connection succeeds.</summary>
    [Theory]
    [MemberData(nameof(NewTokenCases))]
    public void NewToken_Unusable_TreatedAsNoTokenAndRetried(string kind)
    {
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Always));
        AddressValidationTokens tokens = pair.Server.AddressTokens;
        byte[] token;
        switch (kind)
        {
            case "bitflip":
                token = tokens.CreateNewToken(EndpointPair.ClientAddress, pair.Now);
                token[token.Length / 2] ^= 0x01;
                break;
            case "expired":
                token = tokens.CreateNewToken(EndpointPair.ClientAddress, pair.Now - tokens.NewTokenLifetime - 1);
                break;
            case "other-address":
                token = tokens.CreateNewToken(s_otherAddress, pair.Now);
                break;
            case "retry-relabeled":
                // A Retry token presented as a NEW_TOKEN token: the kind byte is authenticated.
                token = tokens.CreateRetryToken(EndpointPair.ClientAddress, s_odcid, s_retryScid, pair.Now);
                token[0] = (byte)AddressValidationTokenKind.NewToken;
                break;
            default:
                token = new byte[48];
                new Random(7).NextBytes(token);
                token[0] = 0x42;
                break;
        }

        EndpointConnection client = pair.Connect(token: token);
        Assert.True(pair.RunUntilEstablished(client));
        EndpointStatistics s = pair.Server.Statistics;
        Assert.Equal(1, s.InvalidTokens);
        Assert.Equal(1, s.RetrySent);
        Assert.Equal(1, s.ConnectionsAccepted);
        Assert.NotNull(pair.ServerSideOf(client)!.Core.LocalTransportParameters.RetrySourceConnectionId);
    }

    [Fact]
    public void NewToken_Unusable_WithoutRetry_ConnectionProceedsUnvalidated()
    {
        // Retry not required: the server proceeds as if there were no token (RFC 9000 §8.1.3), still within the
        // anti-amplification limit until the handshake validates the address.
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.Retry = RetryMode.Never));
        byte[] token = pair.Server.AddressTokens.CreateNewToken(s_otherAddress, pair.Now);
        int sent = 0;
        pair.Filter = d => !d.From.Equals(EndpointPair.ClientAddress) || ++sent <= 1; // the client falls silent after its first Initial
        EndpointConnection client = pair.Connect(token: token);
        pair.RunFor(TimeSpan.FromSeconds(10));

        Assert.Equal(1, pair.Server.Statistics.InvalidTokens);
        Assert.Equal(0, pair.Server.Statistics.RetrySent);
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
        long bytes = pair.SentFrom(EndpointPair.ServerAddress).Sum(d => (long)d.Data.Length);
        Assert.InRange(bytes, 1200, 3 * 1200);
    }
}

/// <summary>Rejected tokens over real UDP: the client's stored NEW_TOKEN token is forged; the connection still succeeds and the rejection is counted.</summary>
public sealed class TokenRejectionLoopbackTests
{
    private sealed class ForgedTokenStore : IQuicSessionStore
    {
        public byte[]? TakeSessionTicket(string serverName) => null;

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
        }

        public byte[]? TakeToken(string serverName)
        {
            var token = new byte[40];
            new Random(5).NextBytes(token);
            token[0] = (byte)AddressValidationTokenKind.NewToken;
            return token;
        }

        public void StoreToken(string serverName, byte[] token)
        {
        }
    }

    [Fact]
    public async Task ForgedNewToken_ServerRetriesAndCountsIt()
    {
        using var recorder = new Diagnostics.MetricsTests.MetricRecorder();
        long rejectedBefore = recorder.Observe("kestrelquic.tokens.rejected");
        long retriesBefore = recorder.Observe("kestrelquic.retries_sent");
        await using QuicListener listener = await QuicListener.ListenAsync(Api.LoopbackTests.ListenerOptions(c => c.Retry = RetryMode.Always));
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        QuicClientConnectionOptions options = Api.LoopbackTests.ClientOptions(listener.LocalEndPoint);
        options.SessionStore = new ForgedTokenStore();
        await using QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        await using QuicConnection server = await accept.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(recorder.Observe("kestrelquic.tokens.rejected") - rejectedBefore >= 1);
        Assert.True(recorder.Observe("kestrelquic.retries_sent") - retriesBefore >= 1);
    }
}
