using System.Buffers.Binary;

namespace KestrelQuic.Wire;

/// <summary>
/// Forward-only big-endian writer over a caller-provided span. Callers size the destination
/// (frames ask for their encoded length first); writing past the end is a programming error and throws.
/// </summary>
internal ref struct SpanWriter
{
    private readonly Span<byte> _buffer;
    private int _position;

    public SpanWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
    }

    public readonly int Position => _position;

    public readonly int Remaining => _buffer.Length - _position;

    public readonly Span<byte> Written => _buffer.Slice(0, _position);

    public readonly Span<byte> Free => _buffer.Slice(_position);

    public void WriteByte(byte value) => _buffer[_position++] = value;

    public void WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(_buffer.Slice(_position), value);
        _position += 2;
    }

    public void WriteUInt24(int value)
    {
        if ((uint)value > 0xFFFFFF) throw new ArgumentOutOfRangeException(nameof(value));
        Span<byte> s = _buffer.Slice(_position, 3);
        s[0] = (byte)(value >> 16);
        s[1] = (byte)(value >> 8);
        s[2] = (byte)value;
        _position += 3;
    }

    public void WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(_buffer.Slice(_position), value);
        _position += 4;
    }

    public void WriteUInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(_buffer.Slice(_position), value);
        _position += 8;
    }

    public void WriteVarInt(ulong value)
    {
        int n = VariableLengthInteger.Write(_buffer.Slice(_position), value);
        if (n == 0) throw new ArgumentException("Destination too small.");
        _position += n;
    }

    /// <summary>Writes <paramref name="value"/> in exactly <paramref name="length"/> bytes.</summary>
    public void WriteVarInt(ulong value, int length)
    {
        int n = VariableLengthInteger.Write(_buffer.Slice(_position), value, length);
        if (n == 0) throw new ArgumentException("Destination too small.");
        _position += n;
    }

    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_buffer.Slice(_position));
        _position += value.Length;
    }

    /// <summary>Returns a span of <paramref name="count"/> bytes to fill later and advances past it.</summary>
    public Span<byte> Reserve(int count)
    {
        Span<byte> s = _buffer.Slice(_position, count);
        _position += count;
        return s;
    }

    public void Advance(int count)
    {
        if ((uint)count > (uint)Remaining) throw new ArgumentOutOfRangeException(nameof(count));
        _position += count;
    }
}
