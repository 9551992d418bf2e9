using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KestrelQuic.Crypto;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// Header protection (RFC 9001 §5.4): a 5-byte mask computed from a 16-byte ciphertext sample hides the low bits of
/// the first byte and the packet number. One instance serves every key phase of a direction (RFC 9001 §6.1).
/// Allocation-free per packet.
/// </summary>
internal abstract class HeaderProtection
{
    /// <summary>Length of the ciphertext sample (RFC 9001 §5.4.2).</summary>
    public const int SampleLength = 16;

    /// <summary>Length of the mask actually applied: 1 byte for the first byte plus up to 4 packet number bytes.</summary>
    public const int MaskLength = 5;

    /// <summary>The sample starts 4 bytes after the start of the Packet Number field (RFC 9001 §5.4.2).</summary>
    public const int SampleOffsetFromPacketNumber = 4;

    /// <summary>Creates header protection for <paramref name="suite"/> with the "quic hp" key.</summary>
    public static HeaderProtection Create(CipherSuite suite, ReadOnlySpan<byte> hpKey) => Create(suite, hpKey, allowHardwareIntrinsics: true);

    /// <summary>Creates header protection; <paramref name="allowHardwareIntrinsics"/> = false forces the software AES path (tests).</summary>
    internal static HeaderProtection Create(CipherSuite suite, ReadOnlySpan<byte> hpKey, bool allowHardwareIntrinsics)
    {
        if (hpKey.Length != CipherSuiteInfo.KeyLength(suite))
        {
            throw new ArgumentException($"Header protection key for {suite} must be {CipherSuiteInfo.KeyLength(suite)} bytes.", nameof(hpKey));
        }

        return suite switch
        {
            CipherSuite.Aes128GcmSha256 or CipherSuite.Aes256GcmSha384 => allowHardwareIntrinsics && AesNiBlockCipher.IsSupported
                ? new AesNiHeaderProtection(new AesNiBlockCipher(hpKey))
                : new AesHeaderProtection(new SoftwareAesBlockCipher(hpKey)),
            CipherSuite.ChaCha20Poly1305Sha256 => new ChaCha20HeaderProtection(hpKey),
            _ => throw new ArgumentOutOfRangeException(nameof(suite), suite, "Unsupported cipher suite."),
        };
    }

    /// <summary>True when the mask is computed with hardware AES instructions.</summary>
    internal virtual bool IsHardwareAccelerated => false;

    /// <summary>Computes the 5-byte mask for a 16-byte sample (RFC 9001 §5.4.3, §5.4.4).</summary>
    public void ComputeMask(ReadOnlySpan<byte> sample16, Span<byte> mask5)
    {
        if (sample16.Length < SampleLength) throw new ArgumentException("The sample must be 16 bytes.", nameof(sample16));
        if (mask5.Length < MaskLength) throw new ArgumentException("The mask must hold 5 bytes.", nameof(mask5));
        ulong mask = ComputeMask8(sample16);
        for (int i = 0; i < MaskLength; i++)
        {
            mask5[i] = (byte)(mask >> (8 * i));
        }
    }

    /// <summary>The first 8 mask bytes, little-endian (byte 0 in the low bits). <paramref name="sample"/> holds at least 16 bytes.</summary>
    internal abstract ulong ComputeMask8(ReadOnlySpan<byte> sample);

    /// <summary>
    /// Applies header protection to a packet whose payload is already sealed: masks the low 4 (long header) or 5 (short
    /// header) bits of the first byte and the <paramref name="packetNumberLength"/> packet number bytes (RFC 9001 §5.4.1).
    /// <paramref name="packet"/> must reach at least the end of the sample.
    /// </summary>
    public void Protect(Span<byte> packet, int packetNumberOffset, int packetNumberLength)
    {
        if ((uint)packetNumberLength - 1 > 3) throw new ArgumentOutOfRangeException(nameof(packetNumberLength));
        if (packetNumberOffset < 1) throw new ArgumentOutOfRangeException(nameof(packetNumberOffset));
        if (packet.Length < packetNumberOffset + SampleOffsetFromPacketNumber + SampleLength)
        {
            throw new ArgumentException("The packet is too short to hold a header protection sample; pad the payload.", nameof(packet));
        }

        ulong mask = ComputeMask8(packet.Slice(packetNumberOffset + SampleOffsetFromPacketNumber, SampleLength));
        packet[0] ^= (byte)(mask & FirstByteMask(packet[0]));
        Span<byte> pn = packet.Slice(packetNumberOffset, packetNumberLength);
        for (int i = 0; i < pn.Length; i++)
        {
            pn[i] ^= (byte)(mask >> (8 * (i + 1)));
        }
    }

    /// <summary>
    /// Removes header protection in place: unmasks the first byte, reads the packet number length from it, then unmasks
    /// the packet number bytes. Returns false (packet untouched) when the packet is too short to hold a sample.
    /// </summary>
    public bool TryUnprotect(Span<byte> packet, int packetNumberOffset, out int packetNumberLength)
    {
        if (packetNumberOffset < 1) throw new ArgumentOutOfRangeException(nameof(packetNumberOffset));
        if (packet.Length - SampleOffsetFromPacketNumber - SampleLength < packetNumberOffset)
        {
            packetNumberLength = 0;
            return false;
        }

        ulong mask = ComputeMask8(packet.Slice(packetNumberOffset + SampleOffsetFromPacketNumber, SampleLength));
        packet[0] ^= (byte)(mask & FirstByteMask(packet[0]));
        packetNumberLength = (packet[0] & 0x03) + 1;
        Span<byte> pn = packet.Slice(packetNumberOffset, packetNumberLength);
        for (int i = 0; i < pn.Length; i++)
        {
            pn[i] ^= (byte)(mask >> (8 * (i + 1)));
        }

        return true;
    }

    // Long header: 4 bits (reserved + PN length); short header: 5 bits (reserved + key phase + PN length). The header
    // form bit is never protected, so it can be read from the masked byte.
    private static ulong FirstByteMask(byte firstByte) => (firstByte & 0x80) != 0 ? 0x0fUL : 0x1fUL;
}

/// <summary>AES header protection with AES-NI: mask = AES-ECB(hp_key, sample) (RFC 9001 §5.4.3).</summary>
internal sealed class AesNiHeaderProtection : HeaderProtection
{
    private readonly AesNiBlockCipher _cipher;

    public AesNiHeaderProtection(AesNiBlockCipher cipher) => _cipher = cipher;

    internal override bool IsHardwareAccelerated => true;

    internal override ulong ComputeMask8(ReadOnlySpan<byte> sample) =>
        _cipher.Encrypt(MemoryMarshal.Read<Vector128<byte>>(sample)).AsUInt64().ToScalar();
}

/// <summary>AES header protection through the portable <see cref="AesBlockCipher"/> (RFC 9001 §5.4.3).</summary>
internal sealed class AesHeaderProtection : HeaderProtection
{
    private readonly AesBlockCipher _cipher;

    public AesHeaderProtection(AesBlockCipher cipher) => _cipher = cipher;

    internal override bool IsHardwareAccelerated => _cipher.IsHardwareAccelerated;

    internal override ulong ComputeMask8(ReadOnlySpan<byte> sample)
    {
        Span<byte> block = stackalloc byte[AesBlockCipher.BlockSize];
        _cipher.EncryptBlock(sample, block);
        return BinaryPrimitives.ReadUInt64LittleEndian(block);
    }
}

/// <summary>
/// ChaCha20 header protection: mask = ChaCha20(hp_key, counter = sample[0..4] LE, nonce = sample[4..16], {0,0,0,0,0})
/// (RFC 9001 §5.4.4), i.e. the first keystream bytes.
/// </summary>
internal sealed class ChaCha20HeaderProtection : HeaderProtection
{
    private readonly ChaCha20Block _block;

    public ChaCha20HeaderProtection(ReadOnlySpan<byte> key) => _block = new ChaCha20Block(key);

    internal override ulong ComputeMask8(ReadOnlySpan<byte> sample) => _block.ComputeFirst8Bytes(sample);
}
