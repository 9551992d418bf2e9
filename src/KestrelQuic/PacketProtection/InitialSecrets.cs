using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;

namespace KestrelQuic.PacketProtection;

/// <summary>Initial packet secrets derived from the client's first Destination Connection ID (RFC 9001 §5.2, RFC 9369 §3.3.1).</summary>
internal static class InitialSecrets
{
    /// <summary>Initial packets always use AEAD_AES_128_GCM with SHA-256 (RFC 9001 §5.2).</summary>
    public const CipherSuite Suite = CipherSuite.Aes128GcmSha256;

    private const int SecretLength = 32;

    // RFC 9001 §5.2.
    private static ReadOnlySpan<byte> Version1Salt =>
    [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
        0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];

    // RFC 9369 §3.3.1.
    private static ReadOnlySpan<byte> Version2Salt =>
    [
        0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
        0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
    ];

    /// <summary>The initial_salt for <paramref name="version"/>.</summary>
    public static ReadOnlySpan<byte> GetSalt(uint version) => version switch
    {
        QuicVersion.Version1 => Version1Salt,
        QuicVersion.Version2 => Version2Salt,
        _ => throw new ArgumentOutOfRangeException(nameof(version), version, "No Initial salt is defined for this QUIC version."),
    };

    /// <summary>
    /// initial_secret = HKDF-Extract(initial_salt, client_dst_connection_id);
    /// client/server_initial_secret = HKDF-Expand-Label(initial_secret, "client in"/"server in", "", 32).
    /// The "client in"/"server in" labels are the same in version 2.
    /// </summary>
    public static void Derive(uint version, ReadOnlySpan<byte> clientDestinationConnectionId, out byte[] clientSecret, out byte[] serverSecret)
    {
        Span<byte> initialSecret = stackalloc byte[SecretLength];
        HKDF.Extract(HashAlgorithmName.SHA256, clientDestinationConnectionId, GetSalt(version), initialSecret);
        clientSecret = HkdfLabel.Expand(HashAlgorithmName.SHA256, initialSecret, "client in"u8, default, SecretLength);
        serverSecret = HkdfLabel.Expand(HashAlgorithmName.SHA256, initialSecret, "server in"u8, default, SecretLength);
        CryptographicOperations.ZeroMemory(initialSecret);
    }

    /// <summary>Derives both directions' Initial packet protection keys.</summary>
    public static void CreateKeys(uint version, ReadOnlySpan<byte> clientDestinationConnectionId, out PacketProtectionKeys clientKeys, out PacketProtectionKeys serverKeys)
    {
        Derive(version, clientDestinationConnectionId, out byte[] clientSecret, out byte[] serverSecret);
        clientKeys = PacketProtectionKeys.FromSecret(Suite, clientSecret, version);
        serverKeys = PacketProtectionKeys.FromSecret(Suite, serverSecret, version);
    }
}
