using KestrelQuic.Crypto;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// Packet protection keys for one direction and one key phase (RFC 9001 §5.1): the AEAD (from "quic key"/"quic iv")
/// and header protection (from "quic hp"), plus the secret so the next key phase can be derived (RFC 9001 §6.1).
/// </summary>
internal sealed class PacketProtectionKeys : IDisposable
{
    private PacketProtectionKeys(CipherSuite suite, uint version, byte[] secret, PacketAead aead, HeaderProtection headerProtection)
    {
        Suite = suite;
        Version = version;
        Secret = secret;
        Aead = aead;
        HeaderProtection = headerProtection;
    }

    public CipherSuite Suite { get; }

    public uint Version { get; }

    /// <summary>The traffic secret these keys were derived from.</summary>
    public byte[] Secret { get; }

    public PacketAead Aead { get; }

    /// <summary>Header protection; shared by all key phases of this direction (RFC 9001 §6.1).</summary>
    public HeaderProtection HeaderProtection { get; }

    /// <summary>Gives back the platform AEAD context while the connection is idle (rebuilt on the next packet).</summary>
    public void ReleaseAeadContext() => Aead.ReleaseContext();

    /// <summary>Packets sealed with this key phase.</summary>
    public long EncryptedPackets => Aead.EncryptedPackets;

    /// <summary>Packets that failed authentication with this key phase (the integrity limit counts across all keys).</summary>
    public long FailedDecryptions => Aead.FailedDecryptions;

    /// <summary>Derives key, IV and header protection key from a traffic secret with the version's labels (RFC 9001 §5.1).</summary>
    public static PacketProtectionKeys FromSecret(CipherSuite suite, ReadOnlySpan<byte> secret, uint version) =>
        FromSecret(suite, secret, version, allowHardwareIntrinsics: true);

    /// <summary>As <see cref="FromSecret(CipherSuite, ReadOnlySpan{byte}, uint)"/>; false forces software AES header protection.</summary>
    internal static PacketProtectionKeys FromSecret(CipherSuite suite, ReadOnlySpan<byte> secret, uint version, bool allowHardwareIntrinsics)
    {
        ValidateSecret(suite, secret);
        PacketProtectionLabels labels = PacketProtectionLabels.For(version);
        Span<byte> hpKey = stackalloc byte[32];
        hpKey = hpKey.Slice(0, CipherSuiteInfo.KeyLength(suite));
        HkdfLabel.Expand(CipherSuiteInfo.Hash(suite), secret, labels.Hp, default, hpKey);
        HeaderProtection hp = HeaderProtection.Create(suite, hpKey, allowHardwareIntrinsics);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(hpKey);
        return Create(suite, secret, version, labels, hp);
    }

    /// <summary>
    /// The keys of the next key phase: secret_&lt;n+1&gt; = HKDF-Expand-Label(secret_&lt;n&gt;, "quic ku", "", Hash.length);
    /// header protection is NOT updated (RFC 9001 §6.1, RFC 9369 §3.3.2).
    /// </summary>
    public PacketProtectionKeys NextKeyPhase()
    {
        PacketProtectionLabels labels = PacketProtectionLabels.For(Version);
        byte[] nextSecret = HkdfLabel.Expand(CipherSuiteInfo.Hash(Suite), Secret, labels.Ku, default, CipherSuiteInfo.HashLength(Suite));
        return Create(Suite, nextSecret, Version, labels, HeaderProtection);
    }

    /// <summary>Confidentiality limit: packets that may be sealed with one key (RFC 9001 §6.6).</summary>
    public static long ConfidentialityLimit(CipherSuite suite) => suite switch
    {
        CipherSuite.Aes128GcmSha256 or CipherSuite.Aes256GcmSha384 => 1L << 23,
        // Greater than the number of possible packets (2^62): effectively unlimited.
        CipherSuite.ChaCha20Poly1305Sha256 => long.MaxValue,
        _ => throw new ArgumentOutOfRangeException(nameof(suite), suite, "Unsupported cipher suite."),
    };

    /// <summary>Integrity limit: packets failing authentication across all keys of a connection (RFC 9001 §6.6).</summary>
    public static long IntegrityLimit(CipherSuite suite) => suite switch
    {
        CipherSuite.Aes128GcmSha256 or CipherSuite.Aes256GcmSha384 => 1L << 52,
        CipherSuite.ChaCha20Poly1305Sha256 => 1L << 36,
        _ => throw new ArgumentOutOfRangeException(nameof(suite), suite, "Unsupported cipher suite."),
    };

    /// <summary>Derives the raw key, IV and header protection key (RFC 9001 §5.1); spans sized by the suite.</summary>
    internal static void DeriveKeyMaterial(CipherSuite suite, ReadOnlySpan<byte> secret, uint version, Span<byte> key, Span<byte> iv, Span<byte> hpKey)
    {
        ValidateSecret(suite, secret);
        PacketProtectionLabels labels = PacketProtectionLabels.For(version);
        System.Security.Cryptography.HashAlgorithmName hash = CipherSuiteInfo.Hash(suite);
        HkdfLabel.Expand(hash, secret, labels.Key, default, key.Slice(0, CipherSuiteInfo.KeyLength(suite)));
        HkdfLabel.Expand(hash, secret, labels.Iv, default, iv.Slice(0, CipherSuiteInfo.IvLength));
        HkdfLabel.Expand(hash, secret, labels.Hp, default, hpKey.Slice(0, CipherSuiteInfo.KeyLength(suite)));
    }

    /// <summary>Releases the AEAD and clears the secret. The shared header protection holds no native resources.</summary>
    public void Dispose()
    {
        Aead.Dispose();
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(Secret);
    }

    private static PacketProtectionKeys Create(CipherSuite suite, ReadOnlySpan<byte> secret, uint version, PacketProtectionLabels labels, HeaderProtection hp)
    {
        System.Security.Cryptography.HashAlgorithmName hash = CipherSuiteInfo.Hash(suite);
        Span<byte> key = stackalloc byte[32];
        key = key.Slice(0, CipherSuiteInfo.KeyLength(suite));
        Span<byte> iv = stackalloc byte[CipherSuiteInfo.IvLength];
        HkdfLabel.Expand(hash, secret, labels.Key, default, key);
        HkdfLabel.Expand(hash, secret, labels.Iv, default, iv);
        PacketAead aead = PacketAead.Create(suite, key, iv);
        System.Security.Cryptography.CryptographicOperations.ZeroMemory(key);
        return new PacketProtectionKeys(suite, version, secret.ToArray(), aead, hp);
    }

    private static void ValidateSecret(CipherSuite suite, ReadOnlySpan<byte> secret)
    {
        if (secret.Length != CipherSuiteInfo.HashLength(suite))
        {
            throw new ArgumentException($"The traffic secret for {suite} must be {CipherSuiteInfo.HashLength(suite)} bytes.", nameof(secret));
        }
    }
}
