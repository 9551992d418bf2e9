using System.Buffers;
using System.Security.Cryptography;
using KestrelQuic.Protocol;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// The Retry Integrity Tag: AEAD_AES_128_GCM over the Retry Pseudo-Packet with a fixed key and nonce and an empty
/// plaintext (RFC 9001 §5.8; RFC 9369 §3.3.3 for version 2).
/// </summary>
internal static class RetryIntegrity
{
    public const int TagLength = 16;

    private const int MaxConnectionIdLength = 20;
    private const int StackPseudoPacketLimit = 512;

    // RFC 9001 §5.8.
    private static ReadOnlySpan<byte> Version1Key => [0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3, 0x68, 0xc8, 0x4e];

    private static ReadOnlySpan<byte> Version1Nonce => [0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb];

    // RFC 9369 §3.3.3.
    private static ReadOnlySpan<byte> Version2Key => [0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2, 0x60, 0xfb, 0xcb, 0xce, 0xad, 0x7c, 0xcc, 0x92];

    private static ReadOnlySpan<byte> Version2Nonce => [0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c, 0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a];

    // Retry is rare and AesGcm instances are not safe for concurrent use, so one cached instance per version behind a lock.
    private static readonly Lazy<AesGcm> s_version1 = new(() => new AesGcm(Version1Key, TagLength));
    private static readonly Lazy<AesGcm> s_version2 = new(() => new AesGcm(Version2Key, TagLength));

    /// <summary>Computes the tag for <paramref name="retryPacketWithoutTag"/> (the Retry packet up to the tag).</summary>
    public static void ComputeTag(uint version, ReadOnlySpan<byte> originalDestinationConnectionId, ReadOnlySpan<byte> retryPacketWithoutTag, Span<byte> tag16)
    {
        if (originalDestinationConnectionId.Length > MaxConnectionIdLength) throw new ArgumentException("Connection IDs are at most 20 bytes.", nameof(originalDestinationConnectionId));
        if (tag16.Length < TagLength) throw new ArgumentException("The tag must hold 16 bytes.", nameof(tag16));

        AesGcm aead;
        ReadOnlySpan<byte> nonce;
        switch (version)
        {
            case QuicVersion.Version1:
                aead = s_version1.Value;
                nonce = Version1Nonce;
                break;
            case QuicVersion.Version2:
                aead = s_version2.Value;
                nonce = Version2Nonce;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(version), version, "No Retry integrity key is defined for this QUIC version.");
        }

        // Retry Pseudo-Packet: ODCID Length (8) || ODCID || the Retry packet without its tag (RFC 9001 §5.8, Figure 8).
        int pseudoLength = 1 + originalDestinationConnectionId.Length + retryPacketWithoutTag.Length;
        byte[]? rented = null;
        Span<byte> pseudo = pseudoLength <= StackPseudoPacketLimit
            ? stackalloc byte[StackPseudoPacketLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(pseudoLength));
        pseudo = pseudo.Slice(0, pseudoLength);
        pseudo[0] = (byte)originalDestinationConnectionId.Length;
        originalDestinationConnectionId.CopyTo(pseudo.Slice(1));
        retryPacketWithoutTag.CopyTo(pseudo.Slice(1 + originalDestinationConnectionId.Length));

        lock (aead)
        {
            aead.Encrypt(nonce, ReadOnlySpan<byte>.Empty, Span<byte>.Empty, tag16.Slice(0, TagLength), pseudo);
        }

        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>True when the last 16 bytes of <paramref name="retryPacket"/> are its valid integrity tag.</summary>
    public static bool Verify(uint version, ReadOnlySpan<byte> originalDestinationConnectionId, ReadOnlySpan<byte> retryPacket)
    {
        if (retryPacket.Length < TagLength) return false;
        Span<byte> expected = stackalloc byte[TagLength];
        ComputeTag(version, originalDestinationConnectionId, retryPacket.Slice(0, retryPacket.Length - TagLength), expected);
        return CryptographicOperations.FixedTimeEquals(expected, retryPacket.Slice(retryPacket.Length - TagLength));
    }
}
