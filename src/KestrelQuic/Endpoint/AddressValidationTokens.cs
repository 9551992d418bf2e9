using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;

namespace KestrelQuic.Endpoint;

/// <summary>What an address validation token was issued for (RFC 9000 §8.1.3).</summary>
internal enum AddressValidationTokenKind : byte
{
    /// <summary>Carried in a Retry packet; bound to the client's address and port and to the original DCID; short-lived.</summary>
    Retry = 0xA1,

    /// <summary>Sent in NEW_TOKEN for a future connection; bound to the client's IP address only (its port will change).</summary>
    NewToken = 0xA2,
}

/// <summary>The content of a token that authenticated and has not expired.</summary>
internal readonly record struct AddressValidationToken(AddressValidationTokenKind Kind, long IssuedAt, byte[]? OriginalDestinationConnectionId, byte[]? RetrySourceConnectionId);

/// <summary>
/// Issues and validates address validation tokens, sealed with AES-GCM under a key derived from the endpoint's static
/// key: a client cannot forge or alter one, and a token works only from the address it was issued to.
/// Layout: kind (1, clear) | nonce (12) | AEAD(issued-at (8) | odcid length (1) | odcid | retry scid length (1) | retry scid) | tag (16).
/// The associated data is the kind and the client address, so a token replayed from elsewhere fails to open.
/// </summary>
internal sealed class AddressValidationTokens : IDisposable
{
    private const int NonceLength = 12;
    private const int TagLength = 16;
    private const int MaxConnectionIdLength = 20;

    private readonly AesGcm _aead;

    public AddressValidationTokens(ReadOnlySpan<byte> staticKey, TimeSpan retryTokenLifetime, TimeSpan newTokenLifetime)
    {
        byte[] key = HKDF.Expand(HashAlgorithmName.SHA256, HKDF.Extract(HashAlgorithmName.SHA256, staticKey.ToArray()), 16, "kestrelquic address validation"u8.ToArray());
        _aead = new AesGcm(key, TagLength);
        CryptographicOperations.ZeroMemory(key);
        RetryTokenLifetime = retryTokenLifetime.Ticks;
        NewTokenLifetime = newTokenLifetime.Ticks;
    }

    public long RetryTokenLifetime { get; }

    public long NewTokenLifetime { get; }

    public byte[] CreateRetryToken(EndPoint client, ReadOnlySpan<byte> originalDestinationConnectionId, ReadOnlySpan<byte> retrySourceConnectionId, long now)
        => Create(AddressValidationTokenKind.Retry, client, originalDestinationConnectionId, retrySourceConnectionId, now);

    public byte[] CreateNewToken(EndPoint client, long now)
        => Create(AddressValidationTokenKind.NewToken, client, default, default, now);

    /// <summary>Opens a token received from <paramref name="client"/>. False when it is not ours, was altered, comes from another address or has expired.</summary>
    public bool TryValidate(ReadOnlySpan<byte> token, EndPoint client, long now, out AddressValidationToken result)
    {
        result = default;
        if (token.Length < 1 + NonceLength + 8 + 2 + TagLength || token.Length > 1 + NonceLength + 8 + 2 + 2 * MaxConnectionIdLength + TagLength) return false;
        var kind = (AddressValidationTokenKind)token[0];
        if (kind is not (AddressValidationTokenKind.Retry or AddressValidationTokenKind.NewToken)) return false;

        int ciphertextLength = token.Length - 1 - NonceLength - TagLength;
        Span<byte> plaintext = stackalloc byte[ciphertextLength];
        Span<byte> aad = stackalloc byte[1 + 16 + 2];
        int aadLength = WriteAssociatedData(aad, kind, client);
        try
        {
            _aead.Decrypt(token.Slice(1, NonceLength), token.Slice(1 + NonceLength, ciphertextLength), token.Slice(token.Length - TagLength), plaintext, aad.Slice(0, aadLength));
        }
        catch (AuthenticationTagMismatchException)
        {
            return false;
        }

        long issuedAt = BinaryPrimitives.ReadInt64BigEndian(plaintext);
        long lifetime = kind == AddressValidationTokenKind.Retry ? RetryTokenLifetime : NewTokenLifetime;
        // Tokens from the future are as suspicious as expired ones (clock jumps aside, a small skew is tolerated).
        if (now - issuedAt > lifetime || issuedAt - now > TimeSpan.TicksPerSecond * 10) return false;

        int p = 8;
        int odcidLength = plaintext[p++];
        if (odcidLength > MaxConnectionIdLength || p + odcidLength + 1 > plaintext.Length) return false;
        byte[]? odcid = kind == AddressValidationTokenKind.Retry ? plaintext.Slice(p, odcidLength).ToArray() : null;
        p += odcidLength;
        int rscidLength = plaintext[p++];
        if (p + rscidLength != plaintext.Length) return false;
        byte[]? rscid = kind == AddressValidationTokenKind.Retry ? plaintext.Slice(p, rscidLength).ToArray() : null;
        result = new AddressValidationToken(kind, issuedAt, odcid, rscid);
        return true;
    }

    public void Dispose() => _aead.Dispose();

    private byte[] Create(AddressValidationTokenKind kind, EndPoint client, ReadOnlySpan<byte> odcid, ReadOnlySpan<byte> rscid, long now)
    {
        int plaintextLength = 8 + 1 + odcid.Length + 1 + rscid.Length;
        var token = new byte[1 + NonceLength + plaintextLength + TagLength];
        token[0] = (byte)kind;
        RandomNumberGenerator.Fill(token.AsSpan(1, NonceLength));
        Span<byte> plaintext = stackalloc byte[plaintextLength];
        BinaryPrimitives.WriteInt64BigEndian(plaintext, now);
        plaintext[8] = (byte)odcid.Length;
        odcid.CopyTo(plaintext.Slice(9));
        plaintext[9 + odcid.Length] = (byte)rscid.Length;
        rscid.CopyTo(plaintext.Slice(10 + odcid.Length));
        Span<byte> aad = stackalloc byte[1 + 16 + 2];
        int aadLength = WriteAssociatedData(aad, kind, client);
        _aead.Encrypt(token.AsSpan(1, NonceLength), plaintext, token.AsSpan(1 + NonceLength, plaintextLength), token.AsSpan(token.Length - TagLength), aad.Slice(0, aadLength));
        return token;
    }

    private static int WriteAssociatedData(Span<byte> aad, AddressValidationTokenKind kind, EndPoint client)
    {
        aad[0] = (byte)kind;
        if (client is not IPEndPoint ip) return 1;
        IPAddress address = ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address;
        address.TryWriteBytes(aad.Slice(1), out int written);
        int length = 1 + written;
        if (kind == AddressValidationTokenKind.Retry)
        {
            BinaryPrimitives.WriteUInt16BigEndian(aad.Slice(length), (ushort)ip.Port);
            length += 2;
        }

        return length;
    }
}
