using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// The ChaCha20 block function (RFC 8439 §2.3) with a 32-bit block counter and a 96-bit nonce. Header protection
/// needs exactly one block at an arbitrary counter (RFC 9001 §5.4.4), which stream-cipher APIs do not offer
/// without allocation, so the block function is implemented directly on locals.
/// </summary>
internal sealed class ChaCha20Block
{
    // "expand 32-byte k" (RFC 8439 §2.3).
    private const uint Sigma0 = 0x61707865;
    private const uint Sigma1 = 0x3320646e;
    private const uint Sigma2 = 0x79622d32;
    private const uint Sigma3 = 0x6b206574;

    private readonly uint _k0, _k1, _k2, _k3, _k4, _k5, _k6, _k7;

    public ChaCha20Block(ReadOnlySpan<byte> key)
    {
        if (key.Length != 32) throw new ArgumentException("ChaCha20 key must be 32 bytes.", nameof(key));
        _k0 = BinaryPrimitives.ReadUInt32LittleEndian(key);
        _k1 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(4));
        _k2 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(8));
        _k3 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(12));
        _k4 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(16));
        _k5 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(20));
        _k6 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(24));
        _k7 = BinaryPrimitives.ReadUInt32LittleEndian(key.Slice(28));
    }

    /// <summary>Writes the full 64-byte keystream block for (<paramref name="counter"/>, <paramref name="nonce"/>).</summary>
    public void Compute(uint counter, ReadOnlySpan<byte> nonce, Span<byte> output)
    {
        if (nonce.Length != 12) throw new ArgumentException("ChaCha20 nonce must be 12 bytes.", nameof(nonce));
        if (output.Length < 64) throw new ArgumentException("Output must hold a 64-byte block.", nameof(output));

        uint n0 = BinaryPrimitives.ReadUInt32LittleEndian(nonce);
        uint n1 = BinaryPrimitives.ReadUInt32LittleEndian(nonce.Slice(4));
        uint n2 = BinaryPrimitives.ReadUInt32LittleEndian(nonce.Slice(8));
        Span<uint> words = stackalloc uint[16];
        Rounds(counter, n0, n1, n2, words);
        for (int i = 0; i < 16; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(output.Slice(i * 4), words[i]);
        }
    }

    /// <summary>
    /// The first 8 keystream bytes (little-endian) of the block whose counter and nonce are the 16-byte
    /// header protection sample (RFC 9001 §5.4.4: counter = sample[0..4] little-endian, nonce = sample[4..16]).
    /// </summary>
    public ulong ComputeFirst8Bytes(ReadOnlySpan<byte> sample)
    {
        uint counter = BinaryPrimitives.ReadUInt32LittleEndian(sample);
        uint n0 = BinaryPrimitives.ReadUInt32LittleEndian(sample.Slice(4));
        uint n1 = BinaryPrimitives.ReadUInt32LittleEndian(sample.Slice(8));
        uint n2 = BinaryPrimitives.ReadUInt32LittleEndian(sample.Slice(12));
        Span<uint> words = stackalloc uint[16];
        Rounds(counter, n0, n1, n2, words);
        return words[0] | ((ulong)words[1] << 32);
    }

    private void Rounds(uint counter, uint n0, uint n1, uint n2, Span<uint> output)
    {
        uint x0 = Sigma0, x1 = Sigma1, x2 = Sigma2, x3 = Sigma3;
        uint x4 = _k0, x5 = _k1, x6 = _k2, x7 = _k3, x8 = _k4, x9 = _k5, x10 = _k6, x11 = _k7;
        uint x12 = counter, x13 = n0, x14 = n1, x15 = n2;

        // 20 rounds = 10 iterations of a column round followed by a diagonal round (RFC 8439 §2.3).
        for (int i = 0; i < 10; i++)
        {
            QuarterRound(ref x0, ref x4, ref x8, ref x12);
            QuarterRound(ref x1, ref x5, ref x9, ref x13);
            QuarterRound(ref x2, ref x6, ref x10, ref x14);
            QuarterRound(ref x3, ref x7, ref x11, ref x15);
            QuarterRound(ref x0, ref x5, ref x10, ref x15);
            QuarterRound(ref x1, ref x6, ref x11, ref x12);
            QuarterRound(ref x2, ref x7, ref x8, ref x13);
            QuarterRound(ref x3, ref x4, ref x9, ref x14);
        }

        output[15] = x15 + n2;
        output[0] = x0 + Sigma0;
        output[1] = x1 + Sigma1;
        output[2] = x2 + Sigma2;
        output[3] = x3 + Sigma3;
        output[4] = x4 + _k0;
        output[5] = x5 + _k1;
        output[6] = x6 + _k2;
        output[7] = x7 + _k3;
        output[8] = x8 + _k4;
        output[9] = x9 + _k5;
        output[10] = x10 + _k6;
        output[11] = x11 + _k7;
        output[12] = x12 + counter;
        output[13] = x13 + n0;
        output[14] = x14 + n1;
    }

    // RFC 8439 §2.1.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void QuarterRound(ref uint a, ref uint b, ref uint c, ref uint d)
    {
        a += b; d ^= a; d = BitOperations.RotateLeft(d, 16);
        c += d; b ^= c; b = BitOperations.RotateLeft(b, 12);
        a += b; d ^= a; d = BitOperations.RotateLeft(d, 8);
        c += d; b ^= c; b = BitOperations.RotateLeft(b, 7);
    }
}
