using System.Security.Cryptography;
using KestrelQuic.Endpoint;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointPrimitivesTests
{
    [Fact]
    public void ResetTokens_AreHmacOfTheConnectionIdUnderADerivedSubkey()
    {
        var generator = new StatelessResetTokenGenerator(EndpointPair.StaticKey);
        byte[] cid = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];

        byte[] subkey = HKDF.Expand(HashAlgorithmName.SHA256, HKDF.Extract(HashAlgorithmName.SHA256, EndpointPair.StaticKey), 32, "kestrelquic stateless reset"u8.ToArray());
        byte[] expected = HMACSHA256.HashData(subkey, cid).AsSpan(0, 16).ToArray();
        Assert.Equal(expected, generator.Generate(cid));

        Span<byte> destination = stackalloc byte[16];
        generator.Generate(cid, destination);
        Assert.Equal(expected, destination.ToArray());
    }

    [Fact]
    public void ResetTokens_AreStableAcrossInstancesAndDifferPerKeyAndConnectionId()
    {
        byte[] cid = [1, 2, 3, 4, 5, 6, 7, 8];
        byte[] token = new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate(cid);
        Assert.Equal(StatelessResetTokenGenerator.TokenLength, token.Length);
        Assert.Equal(token, new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate(cid));

        byte[] otherKey = (byte[])EndpointPair.StaticKey.Clone();
        otherKey[31] ^= 0x80;
        Assert.NotEqual(token, new StatelessResetTokenGenerator(otherKey).Generate(cid));
        Assert.NotEqual(token, new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate([1, 2, 3, 4, 5, 6, 7, 9]));
        Assert.NotEqual(token, new StatelessResetTokenGenerator(EndpointPair.StaticKey).Generate([1, 2, 3, 4, 5, 6, 7]));

        // The reset key is not the address-token key: the same static key yields unrelated secrets.
        using var tokens = new AddressValidationTokens(EndpointPair.StaticKey, TimeSpan.FromSeconds(10), TimeSpan.FromDays(1));
        Assert.NotEqual(token, tokens.CreateNewToken(EndpointPair.ClientAddress, EndpointPair.StartTime).AsSpan(1, 16).ToArray());
    }

    [Fact]
    public void ConnectionIdComparer_ComparesContentAndLooksUpSpans()
    {
        ConnectionIdComparer comparer = ConnectionIdComparer.Instance;
        byte[] a = [1, 2, 3, 4];
        byte[] b = [1, 2, 3, 4];
        Assert.True(comparer.Equals(a, b));
        Assert.True(comparer.Equals(null, null));
        Assert.False(comparer.Equals(a, null));
        Assert.False(comparer.Equals(null, b));
        Assert.False(comparer.Equals(a, [1, 2, 3]));
        Assert.False(comparer.Equals(a, [1, 2, 3, 5]));
        Assert.Equal(comparer.GetHashCode(a), comparer.GetHashCode(b));
        Assert.Equal(comparer.GetHashCode(a), comparer.GetHashCode((ReadOnlySpan<byte>)b));
        Assert.True(comparer.Equals((ReadOnlySpan<byte>)a, b));
        Assert.Equal(a, comparer.Create(a));
        Assert.NotSame(a, comparer.Create(a));

        var map = new Dictionary<byte[], int>(comparer) { [a] = 7, [new byte[] { 9, 9, 9, 9, 9, 9, 9, 9 }] = 8 };
        Dictionary<byte[], int>.AlternateLookup<ReadOnlySpan<byte>> lookup = map.GetAlternateLookup<ReadOnlySpan<byte>>();
        ReadOnlySpan<byte> datagram = [0x40, 1, 2, 3, 4, 0xff];
        Assert.True(lookup.TryGetValue(datagram.Slice(1, 4), out int value));
        Assert.Equal(7, value);
        Assert.False(lookup.TryGetValue(datagram.Slice(0, 4), out _));
        Assert.True(map.ContainsKey([9, 9, 9, 9, 9, 9, 9, 9]));
    }
}
