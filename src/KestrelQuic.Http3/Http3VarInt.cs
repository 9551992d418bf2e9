using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace KestrelQuic.Http3;

/// <summary>
/// QUIC variable-length integers (RFC 9000 §16) as used by HTTP/3 for frame types, lengths, settings and
/// stream types. Kept local so this library does not depend on the transport assembly.
/// </summary>
internal static class Http3VarInt
{
    /// <summary>The largest encodable value, 2^62 - 1.</summary>
    public const long MaxValue = (1L << 62) - 1;

    /// <summary>The longest encoding, in bytes.</summary>
    public const int MaxLength = 8;

    /// <summary>Bytes needed for the shortest encoding of <paramref name="value"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetLength(long value) => value switch
    {
        < 0 => throw new ArgumentOutOfRangeException(nameof(value)),
        <= 63 => 1,
        <= 16383 => 2,
        <= 1073741823 => 4,
        <= MaxValue => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(value)),
    };

    /// <summary>Decodes one integer; false when <paramref name="source"/> does not hold all of it yet.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead(ReadOnlySpan<byte> source, out long value, out int bytesRead)
    {
        if (source.IsEmpty)
        {
            value = 0;
            bytesRead = 0;
            return false;
        }

        int length = 1 << (source[0] >> 6);
        if (source.Length < length)
        {
            value = 0;
            bytesRead = 0;
            return false;
        }

        bytesRead = length;
        value = length switch
        {
            1 => source[0],
            2 => BinaryPrimitives.ReadUInt16BigEndian(source) & 0x3FFF,
            4 => BinaryPrimitives.ReadUInt32BigEndian(source) & 0x3FFF_FFFF,
            _ => (long)(BinaryPrimitives.ReadUInt64BigEndian(source) & 0x3FFF_FFFF_FFFF_FFFFUL),
        };
        return true;
    }

    /// <summary>Decodes one integer from a possibly multi-segment sequence without copying in the common case.</summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out long value)
    {
        ReadOnlySpan<byte> span = reader.UnreadSpan;
        if (TryRead(span, out value, out int read))
        {
            reader.Advance(read);
            return true;
        }

        if (!reader.TryPeek(out byte first))
        {
            return false;
        }

        // The integer straddles segments: copy at most 8 bytes.
        Span<byte> scratch = stackalloc byte[MaxLength];
        int length = 1 << (first >> 6);
        if (!reader.TryCopyTo(scratch.Slice(0, length)))
        {
            return false;
        }

        TryRead(scratch.Slice(0, length), out value, out _);
        reader.Advance(length);
        return true;
    }

    /// <summary>Writes the shortest encoding of <paramref name="value"/>; returns the bytes written, 0 if it does not fit.</summary>
    public static int Write(Span<byte> destination, long value)
    {
        int length = GetLength(value);
        if (destination.Length < length)
        {
            return 0;
        }

        switch (length)
        {
            case 1:
                destination[0] = (byte)value;
                break;
            case 2:
                BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)(value | 0x4000));
                break;
            case 4:
                BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)value | 0x8000_0000u);
                break;
            default:
                BinaryPrimitives.WriteUInt64BigEndian(destination, (ulong)value | 0xC000_0000_0000_0000UL);
                break;
        }

        return length;
    }

    /// <summary>Writes <paramref name="value"/> to <paramref name="writer"/> and advances it.</summary>
    public static void Write(IBufferWriter<byte> writer, long value)
    {
        Span<byte> span = writer.GetSpan(MaxLength);
        writer.Advance(Write(span, value));
    }
}
