using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Packets;

/// <summary>Writes unprotected packet headers (RFC 9000 §17); header protection is applied later by the caller.</summary>
internal static class PacketHeaderWriter
{
    /// <summary>The Length field is always reserved as a 2-byte varint so it can be filled after the payload.</summary>
    public const int LengthFieldLength = 2;

    /// <summary>Largest value of a 2-byte Length field.</summary>
    public const int MaxLengthFieldValue = 16383;

    private const byte LongHeaderForm = 0x80;
    private const byte FixedBitMask = 0x40;
    private const byte SpinBitMask = 0x20;
    private const byte KeyPhaseMask = 0x04;

    /// <summary>Header length (through the packet number) that <see cref="WriteLongHeader"/> produces.</summary>
    public static int GetLongHeaderLength(PacketType type, int dcidLength, int scidLength, int tokenLength, int packetNumberLength)
    {
        int length = 1 + 4 + 1 + dcidLength + 1 + scidLength + LengthFieldLength + packetNumberLength;
        if (type == PacketType.Initial)
        {
            length += VariableLengthInteger.GetLength((ulong)tokenLength) + tokenLength;
        }

        return length;
    }

    /// <summary>Header length (through the packet number) that <see cref="WriteShortHeader"/> produces.</summary>
    public static int GetShortHeaderLength(int dcidLength, int packetNumberLength) => 1 + dcidLength + packetNumberLength;

    /// <summary>
    /// Writes an Initial, 0-RTT or Handshake header including the truncated packet number; returns bytes written.
    /// The Length field is reserved (2 bytes) at <paramref name="lengthFieldOffset"/>; fill it with <see cref="SetLength"/>.
    /// </summary>
    public static int WriteLongHeader(Span<byte> destination, PacketType type, uint version, ReadOnlySpan<byte> dcid,
        ReadOnlySpan<byte> scid, ReadOnlySpan<byte> token, long truncatedPacketNumber, int packetNumberLength,
        out int lengthFieldOffset, out int packetNumberOffset, bool fixedBit = true)
    {
        if (type is not (PacketType.Initial or PacketType.ZeroRtt or PacketType.Handshake)) throw new ArgumentOutOfRangeException(nameof(type));
        if (type != PacketType.Initial && !token.IsEmpty) throw new ArgumentException("Only Initial packets carry a token.", nameof(token));
        CheckPacketNumberLength(packetNumberLength);

        var w = new SpanWriter(destination);
        WriteLongHeaderPrefix(ref w, type, version, dcid, scid, fixedBit, (byte)(packetNumberLength - 1));
        if (type == PacketType.Initial)
        {
            w.WriteVarInt((ulong)token.Length);
            w.WriteBytes(token);
        }

        lengthFieldOffset = w.Position;
        w.WriteVarInt(0, LengthFieldLength);
        packetNumberOffset = w.Position;
        WritePacketNumber(w.Reserve(packetNumberLength), truncatedPacketNumber);
        return w.Position;
    }

    /// <summary>Sets the reserved 2-byte Length field: packet number + payload + AEAD tag bytes.</summary>
    public static void SetLength(Span<byte> packet, int lengthFieldOffset, int length)
    {
        if ((uint)length > MaxLengthFieldValue) throw new ArgumentOutOfRangeException(nameof(length));
        VariableLengthInteger.Write(packet.Slice(lengthFieldOffset, LengthFieldLength), (ulong)length, LengthFieldLength);
    }

    /// <summary>Writes a 1-RTT header (RFC 9000 §17.3.1) including the truncated packet number; returns bytes written.</summary>
    public static int WriteShortHeader(Span<byte> destination, ReadOnlySpan<byte> dcid, bool spinBit, bool keyPhase,
        long truncatedPacketNumber, int packetNumberLength, out int packetNumberOffset, bool fixedBit = true)
    {
        CheckConnectionId(dcid, nameof(dcid));
        CheckPacketNumberLength(packetNumberLength);

        var w = new SpanWriter(destination);
        byte first = (byte)(packetNumberLength - 1);
        if (fixedBit) first |= FixedBitMask;
        if (spinBit) first |= SpinBitMask;
        if (keyPhase) first |= KeyPhaseMask;
        w.WriteByte(first);
        w.WriteBytes(dcid);
        packetNumberOffset = w.Position;
        WritePacketNumber(w.Reserve(packetNumberLength), truncatedPacketNumber);
        return w.Position;
    }

    /// <summary>Length of a Retry packet without its integrity tag.</summary>
    public static int GetRetryLength(int dcidLength, int scidLength, int tokenLength) => 1 + 4 + 1 + dcidLength + 1 + scidLength + tokenLength;

    /// <summary>
    /// Writes a Retry packet (RFC 9000 §17.2.5) WITHOUT the 16-byte Retry Integrity Tag; returns bytes written.
    /// <paramref name="unusedBits"/> fills the 4 Unused bits (arbitrary; 0xf as in the RFC 9001/9369 samples).
    /// </summary>
    public static int WriteRetry(Span<byte> destination, uint version, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid,
        ReadOnlySpan<byte> retryToken, byte unusedBits = 0x0f)
    {
        if (retryToken.IsEmpty) throw new ArgumentException("A Retry token must not be empty.", nameof(retryToken));
        var w = new SpanWriter(destination);
        WriteLongHeaderPrefix(ref w, PacketType.Retry, version, dcid, scid, fixedBit: true, lowBits: (byte)(unusedBits & 0x0f));
        w.WriteBytes(retryToken);
        return w.Position;
    }

    private static void WriteLongHeaderPrefix(ref SpanWriter w, PacketType type, uint version, ReadOnlySpan<byte> dcid,
        ReadOnlySpan<byte> scid, bool fixedBit, byte lowBits)
    {
        if (!QuicVersion.IsSupported(version)) throw new ArgumentOutOfRangeException(nameof(version));
        CheckConnectionId(dcid, nameof(dcid));
        CheckConnectionId(scid, nameof(scid));

        byte first = (byte)(LongHeaderForm | (PacketTypeEncoding.GetLongHeaderTypeBits(type, version) << 4) | lowBits);
        if (fixedBit) first |= FixedBitMask;
        w.WriteByte(first);
        w.WriteUInt32(version);
        w.WriteByte((byte)dcid.Length);
        w.WriteBytes(dcid);
        w.WriteByte((byte)scid.Length);
        w.WriteBytes(scid);
    }

    private static void WritePacketNumber(Span<byte> destination, long truncatedPacketNumber)
    {
        // Big-endian, the low destination.Length bytes of the (already truncated) packet number (RFC 9000 §17.1).
        ulong value = (ulong)truncatedPacketNumber;
        for (int i = destination.Length - 1; i >= 0; i--)
        {
            destination[i] = (byte)value;
            value >>= 8;
        }
    }

    private static void CheckPacketNumberLength(int packetNumberLength)
    {
        if (packetNumberLength is < 1 or > 4) throw new ArgumentOutOfRangeException(nameof(packetNumberLength));
    }

    private static void CheckConnectionId(ReadOnlySpan<byte> cid, string name)
    {
        if (cid.Length > PacketHeaderParser.MaxConnectionIdLength) throw new ArgumentException("Connection IDs are at most 20 bytes.", name);
    }
}
