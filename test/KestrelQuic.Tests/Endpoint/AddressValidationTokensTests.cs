using System.Net;
using KestrelQuic.Endpoint;

namespace KestrelQuic.Tests.Endpoint;

public sealed class AddressValidationTokensTests
{
    private const long Now = EndpointPair.StartTime;
    private static readonly IPEndPoint Client = new(IPAddress.Parse("192.0.2.10"), 50000);
    private static readonly byte[] Odcid = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    private static readonly byte[] Rscid = [0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x10, 0x11];

    private static AddressValidationTokens Create(byte[]? key = null)
        => new(key ?? EndpointPair.StaticKey, TimeSpan.FromSeconds(10), TimeSpan.FromHours(1));

    [Fact]
    public void RetryToken_RoundTripsItsContent()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateRetryToken(Client, Odcid, Rscid, Now);

        // kind | nonce (12) | issued-at (8) | odcid length | odcid | rscid length | rscid | tag (16)
        Assert.Equal(1 + 12 + 8 + 1 + Odcid.Length + 1 + Rscid.Length + 16, token.Length);
        Assert.Equal(0xA1, token[0]);
        Assert.True(tokens.TryValidate(token, Client, Now + 1, out AddressValidationToken t));
        Assert.Equal(AddressValidationTokenKind.Retry, t.Kind);
        Assert.Equal(Now, t.IssuedAt);
        Assert.Equal(Odcid, t.OriginalDestinationConnectionId);
        Assert.Equal(Rscid, t.RetrySourceConnectionId);
    }

    [Fact]
    public void NewToken_RoundTripsWithoutConnectionIds()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateNewToken(Client, Now);

        Assert.Equal(1 + 12 + 8 + 1 + 1 + 16, token.Length);
        Assert.Equal(0xA2, token[0]);
        Assert.True(tokens.TryValidate(token, Client, Now, out AddressValidationToken t));
        Assert.Equal(AddressValidationTokenKind.NewToken, t.Kind);
        Assert.Equal(Now, t.IssuedAt);
        Assert.Null(t.OriginalDestinationConnectionId);
        Assert.Null(t.RetrySourceConnectionId);
    }

    [Fact]
    public void Tokens_AreFreshlyRandomizedAndSurviveARestartWithTheSameKey()
    {
        using AddressValidationTokens tokens = Create();
        byte[] a = tokens.CreateNewToken(Client, Now);
        byte[] b = tokens.CreateNewToken(Client, Now);
        Assert.NotEqual(a, b);

        using AddressValidationTokens restarted = Create();
        Assert.True(restarted.TryValidate(a, Client, Now, out _));
        Assert.True(restarted.TryValidate(b, Client, Now, out _));

        byte[] otherKey = (byte[])EndpointPair.StaticKey.Clone();
        otherKey[0] ^= 1;
        using AddressValidationTokens other = Create(otherKey);
        Assert.False(other.TryValidate(a, Client, Now, out _));
    }

    [Fact]
    public void TamperedToken_IsRejectedWhateverByteChanges()
    {
        using AddressValidationTokens tokens = Create();
        foreach (byte[] original in new[] { tokens.CreateRetryToken(Client, Odcid, Rscid, Now), tokens.CreateNewToken(Client, Now) })
        {
            for (int i = 0; i < original.Length; i++)
            {
                foreach (byte mask in new byte[] { 0x01, 0x80, 0xff })
                {
                    byte[] token = (byte[])original.Clone();
                    token[i] ^= mask;
                    Assert.False(tokens.TryValidate(token, Client, Now, out AddressValidationToken t), $"byte {i} ^ {mask:x2}");
                    Assert.Equal(default, t);
                }
            }

            Assert.True(tokens.TryValidate(original, Client, Now, out _));
        }
    }

    [Fact]
    public void TruncatedExtendedOrForgedToken_IsRejected()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateRetryToken(Client, Odcid, Rscid, Now);
        for (int length = 0; length < token.Length; length++)
        {
            Assert.False(tokens.TryValidate(token.AsSpan(0, length), Client, Now, out _), $"length {length}");
        }

        Assert.False(tokens.TryValidate([.. token, 0], Client, Now, out _));

        var random = new Random(5);
        for (int i = 0; i < 200; i++)
        {
            var forged = new byte[random.Next(0, 120)];
            random.NextBytes(forged);
            if (forged.Length > 0) forged[0] = (byte)(i % 2 == 0 ? 0xA1 : 0xA2);
            Assert.False(tokens.TryValidate(forged, Client, Now, out _));
        }
    }

    [Fact]
    public void RetryToken_IsBoundToAddressAndPort()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateRetryToken(Client, Odcid, Rscid, Now);

        Assert.False(tokens.TryValidate(token, new IPEndPoint(IPAddress.Parse("192.0.2.11"), Client.Port), Now, out _));
        Assert.False(tokens.TryValidate(token, new IPEndPoint(Client.Address, Client.Port + 1), Now, out _));
        Assert.False(tokens.TryValidate(token, new IPEndPoint(IPAddress.Parse("2001:db8::10"), Client.Port), Now, out _));
        // The same client seen through a dual-stack socket (IPv4-mapped IPv6) is the same address.
        Assert.True(tokens.TryValidate(token, new IPEndPoint(Client.Address.MapToIPv6(), Client.Port), Now, out _));
        Assert.True(tokens.TryValidate(token, Client, Now, out _));
    }

    [Fact]
    public void NewToken_IsBoundToTheAddressButNotThePort()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateNewToken(Client, Now);

        Assert.True(tokens.TryValidate(token, new IPEndPoint(Client.Address, 1234), Now, out AddressValidationToken t));
        Assert.Equal(AddressValidationTokenKind.NewToken, t.Kind);
        Assert.False(tokens.TryValidate(token, new IPEndPoint(IPAddress.Parse("192.0.2.11"), Client.Port), Now, out _));
        Assert.False(tokens.TryValidate(token, new IPEndPoint(IPAddress.Parse("198.51.100.10"), 1234), Now, out _));
    }

    [Fact]
    public void Tokens_ExpireAfterTheirLifetimeAndAreRejectedFromTheFuture()
    {
        using AddressValidationTokens tokens = Create();
        Assert.Equal(TimeSpan.FromSeconds(10).Ticks, tokens.RetryTokenLifetime);
        Assert.Equal(TimeSpan.FromHours(1).Ticks, tokens.NewTokenLifetime);
        byte[] retry = tokens.CreateRetryToken(Client, Odcid, Rscid, Now);
        byte[] newToken = tokens.CreateNewToken(Client, Now);

        Assert.True(tokens.TryValidate(retry, Client, Now + tokens.RetryTokenLifetime, out _));
        Assert.False(tokens.TryValidate(retry, Client, Now + tokens.RetryTokenLifetime + 1, out _));
        Assert.True(tokens.TryValidate(newToken, Client, Now + tokens.RetryTokenLifetime + 1, out _));
        Assert.True(tokens.TryValidate(newToken, Client, Now + tokens.NewTokenLifetime, out _));
        Assert.False(tokens.TryValidate(newToken, Client, Now + tokens.NewTokenLifetime + 1, out _));

        // Issued "in the future" of the validating clock: a little skew is tolerated, more is not.
        Assert.True(tokens.TryValidate(newToken, Client, Now - TimeSpan.FromSeconds(10).Ticks, out _));
        Assert.False(tokens.TryValidate(newToken, Client, Now - TimeSpan.FromSeconds(10).Ticks - 1, out _));
    }

    [Fact]
    public void TokenKinds_AreNotInterchangeable()
    {
        using AddressValidationTokens tokens = Create();
        byte[] token = tokens.CreateNewToken(Client, Now);
        token[0] = 0xA1; // relabel a NEW_TOKEN token as a Retry token: the kind is authenticated
        Assert.False(tokens.TryValidate(token, Client, Now, out _));

        byte[] retry = tokens.CreateRetryToken(Client, [], [], Now);
        retry[0] = 0xA2;
        Assert.False(tokens.TryValidate(retry, Client, Now, out _));
    }
}
