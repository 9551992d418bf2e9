using System.Buffers.Binary;

namespace KestrelQuic.Wire;

/// <summary>
/// Forward-only big-endian reader over a byte span. Every read is a Try: malformed input is an expected
/// condition on the wire, so it is reported, never thrown.
/// </summary>
internal ref struct SpanReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private int _position;

    public SpanReader(ReadOnlySpan<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
    }

    public readonly int Position => _position;

    public readonly int Remaining => _buffer.Length - _position;

    public readonly bool IsEmpty => _position >= _buffer.Length;

    public readonly ReadOnlySpan<byte> RemainingSpan => _buffer.Slice(_position);

    public bool TryReadByte(out byte value)
    {
        if (_position >= _buffer.Length)
        {
            value = 0;
            return false;
        }

        value = _buffer[_position++];
        return true;
    }

    public bool TryReadUInt16(out ushort value)
    {
        if (Remaining < 2)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt16BigEndian(_buffer.Slice(_position));
        _position += 2;
        return true;
    }

    public bool TryReadUInt24(out int value)
    {
        if (Remaining < 3)
        {
            value = 0;
            return false;
        }

        value = (_buffer[_position] << 16) | (_buffer[_position + 1] << 8) | _buffer[_position + 2];
        _position += 3;
        return true;
    }

    public bool TryReadUInt32(out uint value)
    {
        if (Remaining < 4)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt32BigEndian(_buffer.Slice(_position));
        _position += 4;
        return true;
    }

    public bool TryReadUInt64(out ulong value)
    {
        if (Remaining < 8)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt64BigEndian(_buffer.Slice(_position));
        _position += 8;
        return true;
    }

    public bool TryReadVarInt(out ulong value)
    {
        if (!VariableLengthInteger.TryRead(_buffer.Slice(_position), out value, out int read))
        {
            return false;
        }

        _position += read;
        return true;
    }

    public bool TryReadBytes(int count, out ReadOnlySpan<byte> value)
    {
        if (count < 0 || Remaining < count)
        {
            value = default;
            return false;
        }

        value = _buffer.Slice(_position, count);
        _position += count;
        return true;
    }

    /// <summary>Reads a length-prefixed vector whose length field is <paramref name="lengthBytes"/> bytes (1, 2 or 3), as in TLS.</summary>
    public bool TryReadVector(int lengthBytes, out ReadOnlySpan<byte> value)
    {
        int start = _position;
        int length;
        bool ok;
        switch (lengthBytes)
        {
            case 1:
                ok = TryReadByte(out byte b);
                length = b;
                break;
            case 2:
                ok = TryReadUInt16(out ushort s);
                length = s;
                break;
            case 3:
                ok = TryReadUInt24(out length);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(lengthBytes));
        }

        if (!ok || !TryReadBytes(length, out value))
        {
            _position = start;
            value = default;
            return false;
        }

        return true;
    }

    public bool TrySkip(int count)
    {
        if (count < 0 || Remaining < count)
        {
            return false;
        }

        _position += count;
        return true;
    }
}
