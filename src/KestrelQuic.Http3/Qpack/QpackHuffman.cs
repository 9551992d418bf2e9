using System.Buffers;

namespace KestrelQuic.Http3.Qpack;

/// <summary>
/// The static Huffman code of RFC 7541 Appendix B, used unmodified by QPACK string literals (RFC 9204 §4.1.2).
/// Encoding packs codes through a 64-bit accumulator; decoding is canonical (the code is canonical: codes of each
/// length are consecutive and ordered by symbol) with a 9-bit direct lookup for the short, common codes.
/// </summary>
internal static class QpackHuffman
{
    /// <summary>The EOS symbol; never valid inside a string (RFC 7541 §5.2).</summary>
    public const int Eos = 256;

    private const int MaxCodeLength = 30;
    private const int FastBits = 9;

    // Code for each symbol 0..256 (256 = EOS), right-aligned; RFC 7541 Appendix B.
    private static readonly uint[] s_codes =
    [
        0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 
        0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 
        0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 
        0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 
        0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 
        0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, 
        0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 
        0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, 
        0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 
        0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 
        0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 
        0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 
        0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 
        0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, 
        0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 
        0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, 
        0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 
        0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, 
        0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 
        0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 
        0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 
        0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 
        0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 
        0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 
        0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, 
        0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 
        0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 
        0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 
        0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 
        0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 
        0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 
        0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 
        0x3fffffff,
    ];

    // Code length in bits for each symbol 0..256.
    private static readonly byte[] s_lengths =
    [
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 
        28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 
        6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 
        5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 
        13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 
        15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 
        6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 
        20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 
        24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 
        21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 
        26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 
        19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 
        20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 
        30,
    ];

    // Canonical decoding tables, indexed by code length.
    private static readonly uint[] s_firstCode = new uint[MaxCodeLength + 1];
    private static readonly int[] s_firstSymbolOffset = new int[MaxCodeLength + 1];
    private static readonly ulong[] s_limit = new ulong[MaxCodeLength + 1]; // left-aligned in 32 bits, exclusive
    private static readonly ushort[] s_sortedSymbols = new ushort[257];

    // (length << 16) | symbol for every 9-bit window that starts with a code of at most 9 bits; 0 otherwise.
    private static readonly int[] s_fast = new int[1 << FastBits];

    static QpackHuffman()
    {
        Span<int> countPerLength = stackalloc int[MaxCodeLength + 1];
        foreach (byte length in s_lengths)
        {
            countPerLength[length]++;
        }

        int offset = 0;
        uint code = 0;
        for (int length = 1; length <= MaxCodeLength; length++)
        {
            code <<= 1;
            s_firstCode[length] = code;
            s_firstSymbolOffset[length] = offset;
            code += (uint)countPerLength[length];
            offset += countPerLength[length];
            s_limit[length] = (ulong)code << (32 - length);
        }

        Span<int> filled = stackalloc int[MaxCodeLength + 1];
        for (int length = 1; length <= MaxCodeLength; length++)
        {
            for (int symbol = 0; symbol <= Eos; symbol++)
            {
                if (s_lengths[symbol] == length)
                {
                    s_sortedSymbols[s_firstSymbolOffset[length] + filled[length]++] = (ushort)symbol;
                }
            }
        }

        for (int symbol = 0; symbol <= Eos; symbol++)
        {
            int length = s_lengths[symbol];
            if (length > FastBits)
            {
                continue;
            }

            int first = (int)(s_codes[symbol] << (FastBits - length));
            int span = 1 << (FastBits - length);
            for (int i = 0; i < span; i++)
            {
                s_fast[first + i] = (length << 16) | symbol;
            }
        }
    }

    /// <summary>Code of <paramref name="symbol"/> (test hook for the table check).</summary>
    internal static uint GetCode(int symbol) => s_codes[symbol];

    /// <summary>Code length of <paramref name="symbol"/> in bits (test hook for the table check).</summary>
    internal static int GetCodeLength(int symbol) => s_lengths[symbol];

    /// <summary>Encoded length in bytes of <paramref name="source"/>, optionally ASCII-lower-cased first.</summary>
    public static int GetEncodedLength(ReadOnlySpan<byte> source, bool toLower = false)
    {
        long bits = 0;
        foreach (byte b in source)
        {
            bits += s_lengths[toLower ? ToLower(b) : b];
        }

        return (int)((bits + 7) >> 3);
    }

    /// <summary>
    /// Encodes <paramref name="source"/> (optionally ASCII-lower-cased) and pads the last byte with the EOS prefix.
    /// <paramref name="destination"/> must hold <see cref="GetEncodedLength"/> bytes. Returns the bytes written.
    /// </summary>
    public static int Encode(ReadOnlySpan<byte> source, Span<byte> destination, bool toLower = false)
    {
        ulong accumulator = 0;
        int bits = 0;
        int written = 0;
        foreach (byte raw in source)
        {
            byte b = toLower ? ToLower(raw) : raw;
            int length = s_lengths[b];
            // Bits above the pending ones fall off the top; only the low 'bits' bits are ever read.
            accumulator = (accumulator << length) | s_codes[b];
            bits += length;
            while (bits >= 8)
            {
                bits -= 8;
                destination[written++] = (byte)(accumulator >> bits);
            }
        }

        if (bits > 0)
        {
            destination[written++] = (byte)((accumulator << (8 - bits)) | (0xFFu >> bits));
        }

        return written;
    }

    /// <summary>Upper bound of the decoded length: the shortest code is 5 bits.</summary>
    public static int GetMaxDecodedLength(int encodedLength) => (int)(((long)encodedLength * 8) / 5);

    /// <summary>
    /// Decodes a Huffman-coded string. Returns <see cref="OperationStatus.InvalidData"/> when the input contains EOS,
    /// ends with padding longer than 7 bits, or ends with padding that is not the most significant bits of EOS
    /// (all ones); <see cref="OperationStatus.DestinationTooSmall"/> when <paramref name="destination"/> is shorter
    /// than the decoded string (never when it holds <see cref="GetMaxDecodedLength"/> bytes).
    /// </summary>
    public static OperationStatus Decode(ReadOnlySpan<byte> source, Span<byte> destination, out int bytesWritten)
    {
        ulong accumulator = 0; // left-aligned: the next unread bit is bit 63
        int bits = 0;
        int read = 0;
        int written = 0;
        while (true)
        {
            while (bits <= 56 && read < source.Length)
            {
                accumulator |= (ulong)source[read++] << (56 - bits);
                bits += 8;
            }

            if (bits == 0)
            {
                break;
            }

            uint window = (uint)(accumulator >> 32);
            if (bits < 32)
            {
                // Past the end, pretend the input continues with ones: the only legal tail is an EOS prefix.
                window |= uint.MaxValue >> bits;
            }

            int symbol;
            int length;
            int fast = s_fast[window >> (32 - FastBits)];
            if (fast != 0)
            {
                length = fast >> 16;
                symbol = fast & 0xFFFF;
            }
            else
            {
                length = FastBits + 1;
                while (window >= s_limit[length])
                {
                    length++;
                }

                symbol = s_sortedSymbols[s_firstSymbolOffset[length] + (int)((window >> (32 - length)) - s_firstCode[length])];
            }

            if (length > bits)
            {
                // The remaining bits are padding: at most 7 bits, all ones (RFC 7541 §5.2).
                ulong mask = ~0UL << (64 - bits);
                if (bits > 7 || (accumulator & mask) != mask)
                {
                    bytesWritten = written;
                    return OperationStatus.InvalidData;
                }

                break;
            }

            if (symbol == Eos)
            {
                bytesWritten = written;
                return OperationStatus.InvalidData;
            }

            if (written >= destination.Length)
            {
                bytesWritten = written;
                return OperationStatus.DestinationTooSmall;
            }

            destination[written++] = (byte)symbol;
            accumulator <<= length;
            bits -= length;
        }

        bytesWritten = written;
        return OperationStatus.Done;
    }

    private static byte ToLower(byte b) => (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
}
