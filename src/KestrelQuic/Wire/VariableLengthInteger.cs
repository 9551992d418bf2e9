using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace KestrelQuic.Wire;

/// <summary>QUIC variable-length integer encoding (RFC 9000 §16).</summary>
internal static class VariableLengthInteger
{
    /// <summary>The largest value a variable-length integer can carry: 2^62 - 1.</summary>
    public const ulong MaxValue = (1UL << 62) - 1;

    /// <summary>Bytes needed to encode <paramref name="value"/> in the shortest form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetLength(ulong value) => value switch
    {
        <= 63 => 1,
        <= 16383 => 2,
        <= 1073741823 => 4,
        <= MaxValue => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(value)),
    };

    /// <summary>Length in bytes of the integer whose first byte is <paramref name="firstByte"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int GetEncodedLength(byte firstByte) => 1 << (firstByte >> 6);

    /// <summary>Decodes one integer; false when <paramref name="source"/> is too short.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int bytesRead)
    {
        if (source.IsEmpty)
        {
            value = 0;
            bytesRead = 0;
            return false;
        }

        int length = GetEncodedLength(source[0]);
        if (source.Length < length)
        {
            value = 0;
            bytesRead = 0;
            return false;
        }

        bytesRead = length;
        switch (length)
        {
            case 1:
                value = source[0];
                break;
            case 2:
                value = BinaryPrimitives.ReadUInt16BigEndian(source) & 0x3FFFu;
                break;
            case 4:
                value = BinaryPrimitives.ReadUInt32BigEndian(source) & 0x3FFF_FFFFu;
                break;
            default:
                value = BinaryPrimitives.ReadUInt64BigEndian(source) & 0x3FFF_FFFF_FFFF_FFFFUL;
                break;
        }

        return true;
    }

    /// <summary>Encodes <paramref name="value"/> in the shortest form; returns the bytes written, 0 if it does not fit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Write(Span<byte> destination, ulong value) => Write(destination, value, GetLength(value));

    /// <summary>Encodes <paramref name="value"/> using exactly <paramref name="length"/> bytes (1, 2, 4 or 8), for fields reserved before their value is known.</summary>
    public static int Write(Span<byte> destination, ulong value, int length)
    {
        if (destination.Length < length)
        {
            return 0;
        }

        switch (length)
        {
            case 1:
                if (value > 63) throw new ArgumentOutOfRangeException(nameof(value));
                destination[0] = (byte)value;
                break;
            case 2:
                if (value > 16383) throw new ArgumentOutOfRangeException(nameof(value));
                BinaryPrimitives.WriteUInt16BigEndian(destination, (ushort)(value | 0x4000));
                break;
            case 4:
                if (value > 1073741823) throw new ArgumentOutOfRangeException(nameof(value));
                BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)value | 0x8000_0000u);
                break;
            case 8:
                if (value > MaxValue) throw new ArgumentOutOfRangeException(nameof(value));
                BinaryPrimitives.WriteUInt64BigEndian(destination, value | 0xC000_0000_0000_0000UL);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(length));
        }

        return length;
    }
}
