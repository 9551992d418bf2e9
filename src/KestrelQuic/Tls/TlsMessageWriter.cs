using System.Buffers.Binary;

namespace KestrelQuic.Tls;

/// <summary>Growable writer for handshake messages with back-patched TLS vector lengths (handshake path only, not per packet).</summary>
internal sealed class TlsMessageWriter
{
    private byte[] _buffer = new byte[512];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, Length);

    public Span<byte> WrittenMutable => _buffer.AsSpan(0, Length);

    public void Clear() => Length = 0;

    /// <summary>Gives the buffer back once nothing more will be written (it grows again if needed).</summary>
    public void Release()
    {
        _buffer = [];
        Length = 0;
    }

    public void WriteUInt8(byte value) => GetSpan(1)[0] = value;

    public void WriteUInt16(ushort value) => BinaryPrimitives.WriteUInt16BigEndian(GetSpan(2), value);

    public void WriteUInt32(uint value) => BinaryPrimitives.WriteUInt32BigEndian(GetSpan(4), value);

    public void WriteBytes(ReadOnlySpan<byte> value) => value.CopyTo(GetSpan(value.Length));

    /// <summary>Starts a vector with a <paramref name="lengthBytes"/>-byte length; returns the token for <see cref="EndVector"/>.</summary>
    public int BeginVector(int lengthBytes)
    {
        int start = Length;
        GetSpan(lengthBytes).Clear();
        return (start << 2) | lengthBytes;
    }

    public void EndVector(int token)
    {
        int lengthBytes = token & 3;
        int start = token >> 2;
        int length = Length - start - lengthBytes;
        int max = lengthBytes switch { 1 => 0xff, 2 => 0xffff, _ => 0xffffff };
        if (length > max)
        {
            throw new InvalidOperationException("TLS vector too long.");
        }

        for (int i = lengthBytes - 1; i >= 0; i--)
        {
            _buffer[start + i] = (byte)length;
            length >>= 8;
        }
    }

    /// <summary>Handshake header: msg_type and a uint24 length (RFC 8446 §4).</summary>
    public int BeginMessage(HandshakeType type)
    {
        WriteUInt8((byte)type);
        return BeginVector(3);
    }

    public int BeginExtension(ushort type)
    {
        WriteUInt16(type);
        return BeginVector(2);
    }

    public void EndExtension(int token) => EndVector(token);

    private Span<byte> GetSpan(int count)
    {
        if (Length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + count));
        }

        Span<byte> span = _buffer.AsSpan(Length, count);
        Length += count;
        return span;
    }
}
