using System.Buffers.Binary;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Packets;

/// <summary>Parses the unprotected parts of QUIC packet headers (RFC 9000 §17, RFC 8999, RFC 9369 §3.2).</summary>
internal static class PacketHeaderParser
{
    public const int MaxConnectionIdLength = 20;
    public const int RetryIntegrityTagLength = 16;

    private const byte HeaderFormBit = 0x80;
    private const byte FixedBitMask = 0x40;

    /// <summary>
    /// Parses the packet at the start of <paramref name="datagram"/>. <paramref name="shortHeaderDcidLength"/> is the
    /// length of our connection IDs (short headers do not encode it). Returns false for malformed or truncated
    /// headers; never throws on peer input.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> datagram, int shortHeaderDcidLength, out PacketHeader header)
    {
        if ((uint)shortHeaderDcidLength > MaxConnectionIdLength) throw new ArgumentOutOfRangeException(nameof(shortHeaderDcidLength));

        header = default;
        if (datagram.IsEmpty)
        {
            return false;
        }

        byte first = datagram[0];
        header.FirstByte = first;
        header.FixedBit = (first & FixedBitMask) != 0;
        return (first & HeaderFormBit) == 0
            ? TryParseShort(datagram, shortHeaderDcidLength, ref header)
            : TryParseLong(datagram, ref header);
    }

    // RFC 9000 §17.3.1.
    private static bool TryParseShort(ReadOnlySpan<byte> datagram, int dcidLength, ref PacketHeader header)
    {
        int pnOffset = 1 + dcidLength;

        // At least one packet number byte must follow the DCID.
        if (datagram.Length <= pnOffset)
        {
            return false;
        }

        header.Type = PacketType.OneRtt;
        header.IsLongHeader = false;
        header.IsSupportedVersion = true;
        header.DestinationConnectionIdOffset = 1;
        header.DestinationConnectionIdLength = dcidLength;
        header.PacketNumberOffset = pnOffset;
        header.PacketLength = datagram.Length;
        return true;
    }

    // RFC 8999 §5.1 invariants, then RFC 9000 §17.2 for v1/v2.
    private static bool TryParseLong(ReadOnlySpan<byte> datagram, ref PacketHeader header)
    {
        // First byte, Version, DCID Length.
        if (datagram.Length < 6)
        {
            return false;
        }

        uint version = BinaryPrimitives.ReadUInt32BigEndian(datagram.Slice(1));
        bool supported = QuicVersion.IsSupported(version);
        header.IsLongHeader = true;
        header.Version = version;

        int pos = 5;
        int dcidLength = datagram[pos++];
        if ((supported && dcidLength > MaxConnectionIdLength) || datagram.Length - pos < dcidLength + 1)
        {
            return false;
        }

        header.DestinationConnectionIdOffset = pos;
        header.DestinationConnectionIdLength = dcidLength;
        pos += dcidLength;

        int scidLength = datagram[pos++];
        if ((supported && scidLength > MaxConnectionIdLength) || datagram.Length - pos < scidLength)
        {
            return false;
        }

        header.SourceConnectionIdOffset = pos;
        header.SourceConnectionIdLength = scidLength;
        pos += scidLength;

        if (version == QuicVersion.Negotiation)
        {
            // RFC 9000 §17.2.1: the rest is the Supported Version list; the type bits are unused.
            header.Type = PacketType.VersionNegotiation;
            header.PacketLength = datagram.Length;
            return true;
        }

        if (!supported)
        {
            // Only the invariants are known; the caller answers with Version Negotiation or drops it.
            header.PacketLength = datagram.Length;
            return true;
        }

        header.IsSupportedVersion = true;
        PacketType type = PacketTypeEncoding.GetLongHeaderType((header.FirstByte >> 4) & 3, version);
        header.Type = type;

        if (type == PacketType.Retry)
        {
            // RFC 9000 §17.2.5: Retry Token, then the 16-byte Retry Integrity Tag.
            int tokenLength = datagram.Length - pos - RetryIntegrityTagLength;
            if (tokenLength < 0)
            {
                return false;
            }

            header.TokenOffset = pos;
            header.TokenLength = tokenLength;
            header.PacketLength = datagram.Length;
            return true;
        }

        if (type == PacketType.Initial)
        {
            // RFC 9000 §17.2.2: Token Length (i), Token.
            if (!VariableLengthInteger.TryRead(datagram.Slice(pos), out ulong tokenLength, out int read))
            {
                return false;
            }

            pos += read;
            if (tokenLength > (ulong)(datagram.Length - pos))
            {
                return false;
            }

            header.TokenOffset = pos;
            header.TokenLength = (int)tokenLength;
            pos += (int)tokenLength;
        }

        header.LengthFieldOffset = pos;
        if (!VariableLengthInteger.TryRead(datagram.Slice(pos), out ulong length, out int lengthRead))
        {
            return false;
        }

        pos += lengthRead;

        // The Length covers the packet number (at least one byte) and the payload, all inside this datagram.
        if (length == 0 || length > (ulong)(datagram.Length - pos))
        {
            return false;
        }

        header.Length = (int)length;
        header.PacketNumberOffset = pos;
        header.PacketLength = pos + (int)length;
        return true;
    }
}
