using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;
using X86Aes = System.Runtime.Intrinsics.X86.Aes;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// AES-GCM (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag on x86 AES-NI and PCLMULQDQ: counter mode four
/// blocks at a time and GHASH with four blocks per reduction (powers H..H^4 kept). The platform <c>AesGcm</c> goes
/// through OpenSSL's EVP layer, whose per-call set-up (nonce reset, error queue clearing, parameter lookups) costs
/// more than sealing a 1,200-byte packet; this keeps the key schedule and hash key in managed memory and touches
/// nothing else. Constant time: AES rounds and carry-less multiplies do not depend on data, and the tag is
/// compared with <see cref="CryptographicOperations.FixedTimeEquals"/>. Opening checks the tag before decrypting,
/// so a forged packet leaves its buffer untouched. Not thread-safe only in the sense that nothing is shared: every
/// method is read-only on the instance.
/// </summary>
internal sealed class AesGcmIntrinsics
{
    public const int NonceSize = 12;
    public const int TagSize = 16;
    private const int BlockSize = 16;

    private readonly Vector128<byte>[] _roundKeys;
    // Powers of the hash key in GHASH's bit-reflected representation (bytes reversed).
    private readonly Vector128<ulong> _h1;
    private readonly Vector128<ulong> _h2;
    private readonly Vector128<ulong> _h3;
    private readonly Vector128<ulong> _h4;

    public AesGcmIntrinsics(ReadOnlySpan<byte> key)
    {
        if (!IsSupported) throw new PlatformNotSupportedException("AES-NI and PCLMULQDQ are required.");
        _roundKeys = AesNiBlockCipher.ExpandKey(key);
        Vector128<ulong> h = Reflect(EncryptBlock(Vector128<byte>.Zero)).AsUInt64();
        _h1 = h;
        _h2 = Multiply(_h1, h);
        _h3 = Multiply(_h2, h);
        _h4 = Multiply(_h3, h);
    }

    /// <summary>True when the processor has the instructions this implementation needs.</summary>
    public static bool IsSupported => X86Aes.IsSupported && Pclmulqdq.IsSupported && Ssse3.IsSupported && Sse41.IsSupported;

    private static Vector128<byte> ByteReverseMask => Vector128.Create((byte)15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

    /// <summary>Encrypts <paramref name="plaintext"/> into <paramref name="ciphertext"/> (the same buffer is allowed) and writes the tag.</summary>
    public void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData)
    {
        CheckArguments(nonce, plaintext.Length, ciphertext.Length, tag.Length);
        Vector128<uint> counterBase = CounterBase(nonce);
        Vector128<ulong> hash = HashPadded(Vector128<ulong>.Zero, associatedData);
        Transform(counterBase, plaintext, ciphertext, hashCiphertextAfter: true, ref hash);
        Vector128<byte> expected = FinishTag(counterBase, hash, associatedData.Length, plaintext.Length);
        MemoryMarshal.Write(tag, in expected);
    }

    /// <summary>
    /// Checks the tag, then decrypts <paramref name="ciphertext"/> into <paramref name="plaintext"/> (the same buffer is
    /// allowed). False, with the output untouched, when the tag does not authenticate.
    /// </summary>
    public bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
    {
        CheckArguments(nonce, ciphertext.Length, plaintext.Length, tag.Length);
        Vector128<uint> counterBase = CounterBase(nonce);
        Vector128<ulong> hash = HashPadded(Vector128<ulong>.Zero, associatedData);
        hash = HashPadded(hash, ciphertext);
        Vector128<byte> expected = FinishTag(counterBase, hash, associatedData.Length, ciphertext.Length);
        Span<byte> computed = stackalloc byte[TagSize];
        MemoryMarshal.Write(computed, in expected);
        if (!CryptographicOperations.FixedTimeEquals(computed, tag)) return false;
        Vector128<ulong> unused = default;
        Transform(counterBase, ciphertext, plaintext, hashCiphertextAfter: false, ref unused);
        return true;
    }

    private static void CheckArguments(ReadOnlySpan<byte> nonce, int inputLength, int outputLength, int tagLength)
    {
        if (nonce.Length != NonceSize) throw new ArgumentException("The nonce must be 12 bytes.", nameof(nonce));
        if (outputLength != inputLength) throw new ArgumentException("Input and output must have the same length.");
        if (tagLength != TagSize) throw new ArgumentException("The tag must be 16 bytes.");
    }

    /// <summary>J0 without its counter word: nonce || 0 (the counter lane is inserted per block, big-endian).</summary>
    private static Vector128<uint> CounterBase(ReadOnlySpan<byte> nonce)
    {
        Span<byte> block = stackalloc byte[BlockSize];
        nonce.CopyTo(block);
        block[12..].Clear();
        return MemoryMarshal.Read<Vector128<uint>>(block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Counter(Vector128<uint> counterBase, uint counter) =>
        Sse41.Insert(counterBase, BinaryPrimitives.ReverseEndianness(counter), 3).AsByte();

    /// <summary>T = E(K, J0) XOR GHASH(A || C || len(A) || len(C)), where J0 = nonce || 1.</summary>
    private Vector128<byte> FinishTag(Vector128<uint> counterBase, Vector128<ulong> hash, int associatedLength, int textLength)
    {
        // [len(A)]64 || [len(C)]64 in bits, big-endian: reflected, the two lengths swap halves and bytes.
        Vector128<ulong> lengths = Vector128.Create((ulong)textLength * 8, (ulong)associatedLength * 8);
        hash = Multiply(Sse2.Xor(hash, lengths), _h1);
        return Sse2.Xor(EncryptBlock(Counter(counterBase, 1)), Reflect(hash.AsByte()));
    }

    /// <summary>CTR from counter 2 over <paramref name="input"/>; when asked, GHASH takes the output (sealing).</summary>
    private void Transform(Vector128<uint> counterBase, ReadOnlySpan<byte> input, Span<byte> output, bool hashCiphertextAfter, ref Vector128<ulong> hash)
    {
        uint counter = 2;
        int offset = 0;
        Vector128<byte>[] rk = _roundKeys;
        int last = rk.Length - 1;
        while (input.Length - offset >= 4 * BlockSize)
        {
            Vector128<byte> s0 = Sse2.Xor(Counter(counterBase, counter), rk[0]);
            Vector128<byte> s1 = Sse2.Xor(Counter(counterBase, counter + 1), rk[0]);
            Vector128<byte> s2 = Sse2.Xor(Counter(counterBase, counter + 2), rk[0]);
            Vector128<byte> s3 = Sse2.Xor(Counter(counterBase, counter + 3), rk[0]);
            for (int r = 1; r < last; r++)
            {
                Vector128<byte> k = rk[r];
                s0 = X86Aes.Encrypt(s0, k);
                s1 = X86Aes.Encrypt(s1, k);
                s2 = X86Aes.Encrypt(s2, k);
                s3 = X86Aes.Encrypt(s3, k);
            }

            Vector128<byte> kl = rk[last];
            ReadOnlySpan<byte> src = input.Slice(offset, 4 * BlockSize);
            Vector128<byte> c0 = Sse2.Xor(X86Aes.EncryptLast(s0, kl), MemoryMarshal.Read<Vector128<byte>>(src));
            Vector128<byte> c1 = Sse2.Xor(X86Aes.EncryptLast(s1, kl), MemoryMarshal.Read<Vector128<byte>>(src.Slice(16)));
            Vector128<byte> c2 = Sse2.Xor(X86Aes.EncryptLast(s2, kl), MemoryMarshal.Read<Vector128<byte>>(src.Slice(32)));
            Vector128<byte> c3 = Sse2.Xor(X86Aes.EncryptLast(s3, kl), MemoryMarshal.Read<Vector128<byte>>(src.Slice(48)));
            Span<byte> dst = output.Slice(offset, 4 * BlockSize);
            MemoryMarshal.Write(dst, in c0);
            MemoryMarshal.Write(dst.Slice(16), in c1);
            MemoryMarshal.Write(dst.Slice(32), in c2);
            MemoryMarshal.Write(dst.Slice(48), in c3);
            if (hashCiphertextAfter) hash = Hash4(hash, c0, c1, c2, c3);
            counter += 4;
            offset += 4 * BlockSize;
        }

        Span<byte> block = stackalloc byte[BlockSize];
        while (offset < input.Length)
        {
            int n = Math.Min(BlockSize, input.Length - offset);
            Vector128<byte> keystream = EncryptBlock(Counter(counterBase, counter++));
            Vector128<byte> c;
            if (n == BlockSize)
            {
                c = Sse2.Xor(keystream, MemoryMarshal.Read<Vector128<byte>>(input.Slice(offset)));
                MemoryMarshal.Write(output.Slice(offset), in c);
            }
            else
            {
                // The final partial block: GHASH pads the ciphertext with zeros.
                block.Clear();
                input.Slice(offset, n).CopyTo(block);
                c = Sse2.Xor(keystream, MemoryMarshal.Read<Vector128<byte>>(block));
                MemoryMarshal.Write(block, in c);
                block[n..].Clear();
                block[..n].CopyTo(output.Slice(offset));
                c = MemoryMarshal.Read<Vector128<byte>>(block);
            }

            if (hashCiphertextAfter) hash = Multiply(Sse2.Xor(hash, Reflect(c).AsUInt64()), _h1);
            offset += n;
        }
    }

    /// <summary>GHASH over <paramref name="data"/> zero-padded to whole blocks, continuing from <paramref name="hash"/>.</summary>
    private Vector128<ulong> HashPadded(Vector128<ulong> hash, ReadOnlySpan<byte> data)
    {
        int offset = 0;
        while (data.Length - offset >= 4 * BlockSize)
        {
            ReadOnlySpan<byte> src = data.Slice(offset, 4 * BlockSize);
            hash = Hash4(
                hash,
                MemoryMarshal.Read<Vector128<byte>>(src),
                MemoryMarshal.Read<Vector128<byte>>(src.Slice(16)),
                MemoryMarshal.Read<Vector128<byte>>(src.Slice(32)),
                MemoryMarshal.Read<Vector128<byte>>(src.Slice(48)));
            offset += 4 * BlockSize;
        }

        Span<byte> block = stackalloc byte[BlockSize];
        while (offset < data.Length)
        {
            int n = Math.Min(BlockSize, data.Length - offset);
            Vector128<byte> b;
            if (n == BlockSize)
            {
                b = MemoryMarshal.Read<Vector128<byte>>(data.Slice(offset));
            }
            else
            {
                block.Clear();
                data.Slice(offset, n).CopyTo(block);
                b = MemoryMarshal.Read<Vector128<byte>>(block);
            }

            hash = Multiply(Sse2.Xor(hash, Reflect(b).AsUInt64()), _h1);
            offset += n;
        }

        return hash;
    }

    /// <summary>((X ^ B1)·H^4) ^ (B2·H^3) ^ (B3·H^2) ^ (B4·H): four blocks, one reduction.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Vector128<ulong> Hash4(Vector128<ulong> hash, Vector128<byte> b1, Vector128<byte> b2, Vector128<byte> b3, Vector128<byte> b4)
    {
        MultiplyWide(Sse2.Xor(hash, Reflect(b1).AsUInt64()), _h4, out Vector128<ulong> lo, out Vector128<ulong> hi);
        MultiplyWide(Reflect(b2).AsUInt64(), _h3, out Vector128<ulong> lo2, out Vector128<ulong> hi2);
        MultiplyWide(Reflect(b3).AsUInt64(), _h2, out Vector128<ulong> lo3, out Vector128<ulong> hi3);
        MultiplyWide(Reflect(b4).AsUInt64(), _h1, out Vector128<ulong> lo4, out Vector128<ulong> hi4);
        lo = Sse2.Xor(Sse2.Xor(lo, lo2), Sse2.Xor(lo3, lo4));
        hi = Sse2.Xor(Sse2.Xor(hi, hi2), Sse2.Xor(hi3, hi4));
        return Reduce(lo, hi);
    }

    private Vector128<byte> EncryptBlock(Vector128<byte> block)
    {
        Vector128<byte>[] rk = _roundKeys;
        int last = rk.Length - 1;
        Vector128<byte> state = Sse2.Xor(block, rk[0]);
        for (int r = 1; r < last; r++) state = X86Aes.Encrypt(state, rk[r]);
        return X86Aes.EncryptLast(state, rk[last]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Reflect(Vector128<byte> block) => Ssse3.Shuffle(block, ByteReverseMask);

    private static Vector128<ulong> Multiply(Vector128<ulong> a, Vector128<ulong> b)
    {
        MultiplyWide(a, b, out Vector128<ulong> lo, out Vector128<ulong> hi);
        return Reduce(lo, hi);
    }

    /// <summary>The 256-bit carry-less product hi:lo of two 128-bit values (schoolbook, four PCLMULQDQ).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyWide(Vector128<ulong> a, Vector128<ulong> b, out Vector128<ulong> lo, out Vector128<ulong> hi)
    {
        Vector128<ulong> low = Pclmulqdq.CarrylessMultiply(a, b, 0x00);
        Vector128<ulong> mid = Sse2.Xor(Pclmulqdq.CarrylessMultiply(a, b, 0x10), Pclmulqdq.CarrylessMultiply(a, b, 0x01));
        Vector128<ulong> high = Pclmulqdq.CarrylessMultiply(a, b, 0x11);
        lo = Sse2.Xor(low, Sse2.ShiftLeftLogical128BitLane(mid, 8));
        hi = Sse2.Xor(high, Sse2.ShiftRightLogical128BitLane(mid, 8));
    }

    /// <summary>
    /// Reduces a 256-bit product of bit-reflected operands modulo x^128 + x^7 + x^2 + x + 1: the product of reflected
    /// values is the reflected product shifted right by one bit, so shift the 256 bits left by one, then fold the
    /// low half into the high half (Gueron and Kounavis, "Intel Carry-Less Multiplication Instruction and its Usage
    /// for Computing the GCM Mode", algorithms 4 and 5).
    /// </summary>
    private static Vector128<ulong> Reduce(Vector128<ulong> lo, Vector128<ulong> hi)
    {
        Vector128<uint> a = lo.AsUInt32();
        Vector128<uint> b = hi.AsUInt32();

        // (b:a) <<= 1 across the 256 bits.
        Vector128<uint> carryA = Sse2.ShiftRightLogical(a, 31);
        Vector128<uint> carryB = Sse2.ShiftRightLogical(b, 31);
        a = Sse2.ShiftLeftLogical(a, 1);
        b = Sse2.ShiftLeftLogical(b, 1);
        Vector128<uint> carryOut = Sse2.ShiftRightLogical128BitLane(carryA, 12);
        carryB = Sse2.ShiftLeftLogical128BitLane(carryB, 4);
        carryA = Sse2.ShiftLeftLogical128BitLane(carryA, 4);
        a = Sse2.Or(a, carryA);
        b = Sse2.Or(Sse2.Or(b, carryB), carryOut);

        // First phase: multiply the low half by x^63 + x^62 + x^57 (shifts by 31, 30, 25 within dwords).
        Vector128<uint> t = Sse2.Xor(Sse2.Xor(Sse2.ShiftLeftLogical(a, 31), Sse2.ShiftLeftLogical(a, 30)), Sse2.ShiftLeftLogical(a, 25));
        Vector128<uint> spill = Sse2.ShiftRightLogical128BitLane(t, 4);
        a = Sse2.Xor(a, Sse2.ShiftLeftLogical128BitLane(t, 12));

        // Second phase: shifts by 1, 2, 7 and fold into the high half.
        Vector128<uint> u = Sse2.Xor(Sse2.Xor(Sse2.ShiftRightLogical(a, 1), Sse2.ShiftRightLogical(a, 2)), Sse2.ShiftRightLogical(a, 7));
        u = Sse2.Xor(u, spill);
        a = Sse2.Xor(a, u);
        return Sse2.Xor(b, a).AsUInt64();
    }
}
