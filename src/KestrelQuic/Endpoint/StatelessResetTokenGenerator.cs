using System.Security.Cryptography;

namespace KestrelQuic.Endpoint;

/// <summary>
/// Derives stateless reset tokens from connection IDs with HMAC-SHA256 under a static key (RFC 9000 §10.3.2), so a
/// restarted server, or another instance sharing the key, produces the same token for a CID it no longer knows.
/// </summary>
internal sealed class StatelessResetTokenGenerator
{
    public const int TokenLength = 16;

    private readonly byte[] _key;

    public StatelessResetTokenGenerator(ReadOnlySpan<byte> staticKey)
    {
        // A dedicated subkey: the same static key also protects address validation tokens.
        _key = HKDF.Expand(HashAlgorithmName.SHA256, HKDF.Extract(HashAlgorithmName.SHA256, staticKey.ToArray()), 32, "kestrelquic stateless reset"u8.ToArray());
    }

    /// <summary>The token for a local connection ID (allocates: called once per issued CID).</summary>
    public byte[] Generate(ReadOnlySpan<byte> connectionId)
    {
        var token = new byte[TokenLength];
        Generate(connectionId, token);
        return token;
    }

    /// <summary>Writes the token for <paramref name="connectionId"/> into <paramref name="destination"/> (16 bytes).</summary>
    public void Generate(ReadOnlySpan<byte> connectionId, Span<byte> destination)
    {
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(_key, connectionId, mac);
        mac.Slice(0, TokenLength).CopyTo(destination);
    }
}
