using System.Buffers;
using System.Runtime.CompilerServices;

namespace KestrelQuic.Http3.Qpack;

/// <summary>Outcome of parsing one primitive or instruction from a buffer that may not hold all of it yet.</summary>
internal enum QpackParseStatus
{
    /// <summary>Parsed; the consumed length is valid.</summary>
    Done,

    /// <summary>The buffer ends before the element does; retry with more bytes.</summary>
    NeedMoreData,

    /// <summary>The element can never be valid (integer overflow, length beyond limits, bad Huffman).</summary>
    Invalid,
}

/// <summary>
/// QPACK wire primitives (RFC 9204 §4.1): prefixed integers (RFC 7541 §5.1) and N-bit prefix string literals
/// (RFC 7541 §5.2 with the H bit at the top of the prefix).
/// </summary>
internal static class QpackPrimitives
{
    /// <summary>Largest integer accepted: QPACK implementations must decode 62-bit integers (RFC 9204 §4.1.1); more is an overflow.</summary>
    public const ulong MaxIntegerValue = (1UL << 62) - 1;

    /// <summary>Longest possible prefixed integer encoding of a value up to <see cref="MaxIntegerValue"/>.</summary>
    public const int MaxIntegerLength = 10;

    /// <summary>Length of the prefixed integer encoding of <paramref name="value"/> with a <paramref name="prefixBits"/>-bit prefix.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetIntegerLength(ulong value, int prefixBits)
    {
        ulong max = (1UL << prefixBits) - 1;
        if (value < max)
        {
            return 1;
        }

        value -= max;
        int length = 2;
        while (value >= 0x80)
        {
            value >>= 7;
            length++;
        }

        return length;
    }

    /// <summary>
    /// Writes <paramref name="value"/> with a <paramref name="prefixBits"/>-bit prefix; <paramref name="flags"/> supplies
    /// the bits of the first byte above the prefix. Returns the bytes written, 0 if it does not fit.
    /// </summary>
    public static int WriteInteger(Span<byte> destination, ulong value, int prefixBits, byte flags)
    {
        int length = GetIntegerLength(value, prefixBits);
        if (destination.Length < length)
        {
            return 0;
        }

        ulong max = (1UL << prefixBits) - 1;
        if (value < max)
        {
            destination[0] = (byte)(flags | (byte)value);
            return 1;
        }

        destination[0] = (byte)(flags | (byte)max);
        value -= max;
        int i = 1;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        destination[i++] = (byte)value;
        return i;
    }

    /// <summary>
    /// Reads a prefixed integer whose prefix is the low <paramref name="prefixBits"/> bits of the first byte.
    /// Values above <see cref="MaxIntegerValue"/> and encodings with more than 9 continuation bytes are
    /// <see cref="QpackParseStatus.Invalid"/>.
    /// </summary>
    public static QpackParseStatus TryReadInteger(ReadOnlySpan<byte> source, int prefixBits, out ulong value, out int bytesConsumed)
    {
        value = 0;
        bytesConsumed = 0;
        if (source.IsEmpty)
        {
            return QpackParseStatus.NeedMoreData;
        }

        ulong max = (1UL << prefixBits) - 1;
        ulong result = source[0] & max;
        if (result < max)
        {
            value = result;
            bytesConsumed = 1;
            return QpackParseStatus.Done;
        }

        int shift = 0;
        int i = 1;
        while (true)
        {
            if (i >= source.Length)
            {
                return QpackParseStatus.NeedMoreData;
            }

            // Nine continuation bytes already carry 63 bits; with shift <= 56 the addition cannot overflow 64 bits.
            if (shift > 56)
            {
                return QpackParseStatus.Invalid;
            }

            byte b = source[i++];
            result += (ulong)(b & 0x7F) << shift;
            if (result > MaxIntegerValue)
            {
                return QpackParseStatus.Invalid;
            }

            shift += 7;
            if ((b & 0x80) == 0)
            {
                break;
            }
        }

        value = result;
        bytesConsumed = i;
        return QpackParseStatus.Done;
    }

    /// <summary>
    /// Reads the header of an N-bit prefix string literal (<paramref name="prefixBits"/> = N, 2..8): the H bit (the top
    /// bit of the prefix) and the length as an (N-1)-bit prefix integer, then slices the string octets.
    /// <paramref name="maxDecodedLength"/> bounds the decoded length: a declared length that cannot decode to at most
    /// that many octets is <see cref="QpackParseStatus.Invalid"/> even before its bytes arrive, so a peer cannot make
    /// us buffer it.
    /// </summary>
    public static QpackParseStatus TryReadString(
        ReadOnlySpan<byte> source,
        int prefixBits,
        int maxDecodedLength,
        out bool huffman,
        out ReadOnlySpan<byte> octets,
        out int bytesConsumed)
    {
        octets = default;
        bytesConsumed = 0;
        huffman = false;
        if (source.IsEmpty)
        {
            return QpackParseStatus.NeedMoreData;
        }

        huffman = (source[0] & (1 << (prefixBits - 1))) != 0;
        QpackParseStatus status = TryReadInteger(source, prefixBits - 1, out ulong length, out int lengthBytes);
        if (status != QpackParseStatus.Done)
        {
            return status;
        }

        if (length > int.MaxValue || GetMinDecodedLength((int)length, huffman) > maxDecodedLength)
        {
            return QpackParseStatus.Invalid;
        }

        if ((ulong)(source.Length - lengthBytes) < length)
        {
            return QpackParseStatus.NeedMoreData;
        }

        octets = source.Slice(lengthBytes, (int)length);
        bytesConsumed = lengthBytes + (int)length;
        return QpackParseStatus.Done;
    }

    /// <summary>
    /// Upper bound of the decoded length of a string literal whose encoded form is <paramref name="encodedLength"/> bytes.
    /// </summary>
    public static int GetMaxDecodedLength(int encodedLength, bool huffman) =>
        huffman ? QpackHuffman.GetMaxDecodedLength(encodedLength) : encodedLength;

    /// <summary>
    /// Lower bound of the decoded length (a Huffman code is at most 30 bits, and up to 7 bits are padding), used to
    /// reject strings that cannot fit a limit before decoding them.
    /// </summary>
    public static long GetMinDecodedLength(int encodedLength, bool huffman) =>
        huffman ? Math.Max(0, ((long)encodedLength * 8 - 7) / 30) : encodedLength;

    /// <summary>
    /// Largest possible encoded size of a string literal of <paramref name="length"/> octets with an N-bit prefix:
    /// what a writer must reserve before choosing between Huffman and raw octets.
    /// </summary>
    public static int GetMaxStringLength(int length, int prefixBits) =>
        GetIntegerLength((ulong)length, prefixBits - 1) + length;

    /// <summary>
    /// Writes <paramref name="value"/> as an N-bit prefix string literal, Huffman-coded when that is strictly shorter.
    /// <paramref name="flags"/> supplies the first byte's bits above the N-bit prefix. <paramref name="toLower"/>
    /// lower-cases ASCII letters on the way (HTTP/3 field names are lower case). <paramref name="destination"/> must hold
    /// <see cref="GetMaxStringLength"/> bytes. Returns the bytes written.
    /// </summary>
    public static int WriteString(Span<byte> destination, ReadOnlySpan<byte> value, int prefixBits, byte flags, bool useHuffman, bool toLower)
    {
        int huffmanLength = useHuffman ? QpackHuffman.GetEncodedLength(value, toLower) : int.MaxValue;
        if (huffmanLength < value.Length)
        {
            byte huffmanFlag = (byte)(1 << (prefixBits - 1));
            int headerLength = WriteInteger(destination, (ulong)huffmanLength, prefixBits - 1, (byte)(flags | huffmanFlag));
            return headerLength + QpackHuffman.Encode(value, destination.Slice(headerLength), toLower);
        }

        int written = WriteInteger(destination, (ulong)value.Length, prefixBits - 1, flags);
        Span<byte> target = destination.Slice(written, value.Length);
        if (toLower)
        {
            for (int i = 0; i < value.Length; i++)
            {
                byte b = value[i];
                target[i] = (uint)(b - 'A') <= 'Z' - 'A' ? (byte)(b | 0x20) : b;
            }
        }
        else
        {
            value.CopyTo(target);
        }

        return written + value.Length;
    }

    /// <summary>Appends a prefixed integer to <paramref name="writer"/>.</summary>
    public static void WriteInteger(IBufferWriter<byte> writer, ulong value, int prefixBits, byte flags)
    {
        Span<byte> span = writer.GetSpan(MaxIntegerLength);
        writer.Advance(WriteInteger(span, value, prefixBits, flags));
    }
}
