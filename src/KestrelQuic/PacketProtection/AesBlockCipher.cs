using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Org.BouncyCastle.Crypto.Engines;
using Org.BouncyCastle.Crypto.Parameters;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// Single-block AES-128/AES-256 encryption with a key schedule expanded once. Header protection needs one raw
/// AES block per packet (RFC 9001 §5.4.3); <c>Aes.EncryptEcb</c> costs ~1.2 µs per call, so we avoid it.
/// </summary>
internal abstract class AesBlockCipher
{
    public const int BlockSize = 16;

    /// <summary>Creates a cipher for a 16- or 32-byte key, using AES-NI when available and allowed.</summary>
    public static AesBlockCipher Create(ReadOnlySpan<byte> key, bool allowHardwareIntrinsics = true)
    {
        if (key.Length is not (16 or 32)) throw new ArgumentException("AES key must be 16 or 32 bytes.", nameof(key));
        return allowHardwareIntrinsics && AesNiBlockCipher.IsSupported
            ? new AesNiBlockCipher(key)
            : new SoftwareAesBlockCipher(key);
    }

    /// <summary>True when this instance uses hardware AES instructions.</summary>
    public abstract bool IsHardwareAccelerated { get; }

    /// <summary>Encrypts one 16-byte block; <paramref name="input"/> and <paramref name="output"/> may be the same.</summary>
    public abstract void EncryptBlock(ReadOnlySpan<byte> input, Span<byte> output);
}

/// <summary>AES using the x86 AES-NI instructions; the key schedule is expanded with <c>AESKEYGENASSIST</c> (constant time).</summary>
internal sealed class AesNiBlockCipher : AesBlockCipher
{
    // Nr + 1 round keys: 11 for AES-128, 15 for AES-256 (FIPS 197 §5).
    private readonly Vector128<byte>[] _roundKeys;

    public AesNiBlockCipher(ReadOnlySpan<byte> key)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("AES-NI is not supported on this processor.");
        _roundKeys = key.Length switch
        {
            16 => ExpandKey128(key),
            32 => ExpandKey256(key),
            _ => throw new ArgumentException("AES key must be 16 or 32 bytes.", nameof(key)),
        };
    }

    public static bool IsSupported => X86Aes.IsSupported && Sse2.IsSupported;

    /// <summary>The Nr + 1 round keys of a 16- or 32-byte key (for the other AES-NI users, e.g. AES-GCM).</summary>
    internal static Vector128<byte>[] ExpandKey(ReadOnlySpan<byte> key) => key.Length switch
    {
        16 => ExpandKey128(key),
        32 => ExpandKey256(key),
        _ => throw new ArgumentException("AES key must be 16 or 32 bytes.", nameof(key)),
    };

    public override bool IsHardwareAccelerated => true;

    public override void EncryptBlock(ReadOnlySpan<byte> input, Span<byte> output)
    {
        if (input.Length < BlockSize) throw new ArgumentException("Input must hold a 16-byte block.", nameof(input));
        if (output.Length < BlockSize) throw new ArgumentException("Output must hold a 16-byte block.", nameof(output));
        Vector128<byte> result = Encrypt(MemoryMarshal.Read<Vector128<byte>>(input));
        MemoryMarshal.Write(output, in result);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vector128<byte> Encrypt(Vector128<byte> block)
    {
        Vector128<byte>[] roundKeys = _roundKeys;
        int last = roundKeys.Length - 1;
        Vector128<byte> state = Sse2.Xor(block, roundKeys[0]);
        for (int i = 1; i < last; i++)
        {
            state = X86Aes.Encrypt(state, roundKeys[i]);
        }

        return X86Aes.EncryptLast(state, roundKeys[last]);
    }

    private static Vector128<byte>[] ExpandKey128(ReadOnlySpan<byte> key)
    {
        var rk = new Vector128<byte>[11];
        rk[0] = MemoryMarshal.Read<Vector128<byte>>(key);
        // Round constants (FIPS 197 §5.2) must be immediates for AESKEYGENASSIST, hence the unrolling.
        rk[1] = NextKey(rk[0], X86Aes.KeygenAssist(rk[0], 0x01));
        rk[2] = NextKey(rk[1], X86Aes.KeygenAssist(rk[1], 0x02));
        rk[3] = NextKey(rk[2], X86Aes.KeygenAssist(rk[2], 0x04));
        rk[4] = NextKey(rk[3], X86Aes.KeygenAssist(rk[3], 0x08));
        rk[5] = NextKey(rk[4], X86Aes.KeygenAssist(rk[4], 0x10));
        rk[6] = NextKey(rk[5], X86Aes.KeygenAssist(rk[5], 0x20));
        rk[7] = NextKey(rk[6], X86Aes.KeygenAssist(rk[6], 0x40));
        rk[8] = NextKey(rk[7], X86Aes.KeygenAssist(rk[7], 0x80));
        rk[9] = NextKey(rk[8], X86Aes.KeygenAssist(rk[8], 0x1b));
        rk[10] = NextKey(rk[9], X86Aes.KeygenAssist(rk[9], 0x36));
        return rk;
    }

    private static Vector128<byte>[] ExpandKey256(ReadOnlySpan<byte> key)
    {
        var rk = new Vector128<byte>[15];
        rk[0] = MemoryMarshal.Read<Vector128<byte>>(key);
        rk[1] = MemoryMarshal.Read<Vector128<byte>>(key.Slice(16));
        // Even round keys use RotWord(SubWord(w)) ^ Rcon; odd ones use SubWord(w) only (FIPS 197 §5.2, Nk = 8).
        rk[2] = NextKey(rk[0], X86Aes.KeygenAssist(rk[1], 0x01));
        rk[3] = NextKeyNoRotate(rk[1], X86Aes.KeygenAssist(rk[2], 0x00));
        rk[4] = NextKey(rk[2], X86Aes.KeygenAssist(rk[3], 0x02));
        rk[5] = NextKeyNoRotate(rk[3], X86Aes.KeygenAssist(rk[4], 0x00));
        rk[6] = NextKey(rk[4], X86Aes.KeygenAssist(rk[5], 0x04));
        rk[7] = NextKeyNoRotate(rk[5], X86Aes.KeygenAssist(rk[6], 0x00));
        rk[8] = NextKey(rk[6], X86Aes.KeygenAssist(rk[7], 0x08));
        rk[9] = NextKeyNoRotate(rk[7], X86Aes.KeygenAssist(rk[8], 0x00));
        rk[10] = NextKey(rk[8], X86Aes.KeygenAssist(rk[9], 0x10));
        rk[11] = NextKeyNoRotate(rk[9], X86Aes.KeygenAssist(rk[10], 0x00));
        rk[12] = NextKey(rk[10], X86Aes.KeygenAssist(rk[11], 0x20));
        rk[13] = NextKeyNoRotate(rk[11], X86Aes.KeygenAssist(rk[12], 0x00));
        rk[14] = NextKey(rk[12], X86Aes.KeygenAssist(rk[13], 0x40));
        return rk;
    }

    // Dword 3 of AESKEYGENASSIST is RotWord(SubWord(x3)) ^ Rcon.
    private static Vector128<byte> NextKey(Vector128<byte> previous, Vector128<byte> assist) =>
        Sse2.Xor(PrefixXor(previous), Sse2.Shuffle(assist.AsInt32(), 0xFF).AsByte());

    // Dword 2 of AESKEYGENASSIST is SubWord(x3).
    private static Vector128<byte> NextKeyNoRotate(Vector128<byte> previous, Vector128<byte> assist) =>
        Sse2.Xor(PrefixXor(previous), Sse2.Shuffle(assist.AsInt32(), 0xAA).AsByte());

    // w[i] ^= w[i-1] ^ ... ^ w[0] for the four words of the previous round key.
    private static Vector128<byte> PrefixXor(Vector128<byte> key)
    {
        key = Sse2.Xor(key, Sse2.ShiftLeftLogical128BitLane(key, 4));
        key = Sse2.Xor(key, Sse2.ShiftLeftLogical128BitLane(key, 4));
        return Sse2.Xor(key, Sse2.ShiftLeftLogical128BitLane(key, 4));
    }
}

/// <summary>
/// Portable fallback for processors without AES-NI: BouncyCastle's software <see cref="AesEngine"/> with the key set once.
/// Not thread-safe (the engine keeps per-block state); header protection is used by one connection at a time.
/// </summary>
internal sealed class SoftwareAesBlockCipher : AesBlockCipher
{
    private readonly AesEngine _engine = new();

    public SoftwareAesBlockCipher(ReadOnlySpan<byte> key)
    {
        _engine.Init(forEncryption: true, new KeyParameter(key));
    }

    public override bool IsHardwareAccelerated => false;

    public override void EncryptBlock(ReadOnlySpan<byte> input, Span<byte> output)
    {
        if (input.Length < BlockSize) throw new ArgumentException("Input must hold a 16-byte block.", nameof(input));
        if (output.Length < BlockSize) throw new ArgumentException("Output must hold a 16-byte block.", nameof(output));
        _engine.ProcessBlock(input, output);
    }
}
