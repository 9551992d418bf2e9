using System.Buffers.Binary;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Packets;

/// <summary>Version Negotiation packets (RFC 9000 §17.2.1, RFC 8999 §6).</summary>
internal static class VersionNegotiationPacket
{
    /// <summary>
    /// Returns the raw Supported Version list of a parsed Version Negotiation packet. False if the list is empty
    /// or not a whole number of 32-bit versions.
    /// </summary>
    public static bool TryGetVersionList(ReadOnlySpan<byte> packet, in PacketHeader header, out ReadOnlySpan<byte> versionList)
    {
        versionList = default;
        if (header.Type != PacketType.VersionNegotiation || !header.IsLongHeader)
        {
            return false;
        }

        int start = header.SourceConnectionIdOffset + header.SourceConnectionIdLength;
        int end = Math.Min(header.PacketLength, packet.Length);
        if (end <= start || (end - start) % 4 != 0)
        {
            return false;
        }

        versionList = packet.Slice(start, end - start);
        return true;
    }

    /// <summary>
    /// Copies up to <c>destination.Length</c> supported versions; <paramref name="count"/> is the number copied.
    /// False if the packet is not a well-formed Version Negotiation packet.
    /// </summary>
    public static bool TryReadVersions(ReadOnlySpan<byte> packet, in PacketHeader header, Span<uint> destination, out int count)
    {
        count = 0;
        if (!TryGetVersionList(packet, header, out ReadOnlySpan<byte> list))
        {
            return false;
        }

        int n = Math.Min(list.Length / 4, destination.Length);
        for (int i = 0; i < n; i++)
        {
            destination[i] = BinaryPrimitives.ReadUInt32BigEndian(list.Slice(i * 4));
        }

        count = n;
        return true;
    }

    /// <summary>Parses <paramref name="packet"/> and copies its versions; false if it is not a valid Version Negotiation packet.</summary>
    public static bool TryReadVersions(ReadOnlySpan<byte> packet, Span<uint> destination, out int count)
    {
        count = 0;
        return PacketHeaderParser.TryParse(packet, 0, out PacketHeader header)
            && TryReadVersions(packet, header, destination, out count);
    }

    /// <summary>True if the version list contains <paramref name="version"/>.</summary>
    public static bool Contains(ReadOnlySpan<byte> versionList, uint version)
    {
        for (int i = 0; i + 4 <= versionList.Length; i += 4)
        {
            if (BinaryPrimitives.ReadUInt32BigEndian(versionList.Slice(i)) == version) return true;
        }

        return false;
    }

    public static int GetLength(int dcidLength, int scidLength, int versionCount) => 1 + 4 + 1 + dcidLength + 1 + scidLength + 4 * versionCount;

    /// <summary>
    /// Writes a Version Negotiation packet; returns bytes written. The caller echoes the client's SCID as
    /// <paramref name="dcid"/> and its DCID as <paramref name="scid"/>. The low 7 bits of the first byte come from
    /// <paramref name="randomFirstByteBits"/> (RFC 9000 §17.2.1: unused, set to arbitrary values).
    /// </summary>
    public static int Write(Span<byte> destination, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<uint> versions, byte randomFirstByteBits)
    {
        // Invariant headers allow CIDs of up to 255 bytes (RFC 8999 §5.1).
        if (dcid.Length > byte.MaxValue) throw new ArgumentException("Connection ID too long.", nameof(dcid));
        if (scid.Length > byte.MaxValue) throw new ArgumentException("Connection ID too long.", nameof(scid));
        if (versions.IsEmpty) throw new ArgumentException("At least one version is required.", nameof(versions));

        var w = new SpanWriter(destination);
        w.WriteByte((byte)(0x80 | (randomFirstByteBits & 0x7f)));
        w.WriteUInt32(QuicVersion.Negotiation);
        w.WriteByte((byte)dcid.Length);
        w.WriteBytes(dcid);
        w.WriteByte((byte)scid.Length);
        w.WriteBytes(scid);
        foreach (uint v in versions)
        {
            w.WriteUInt32(v);
        }

        return w.Position;
    }
}
