using KestrelQuic.Protocol;

namespace KestrelQuic.Packets;

/// <summary>Long Packet Type bits: RFC 9000 §17.2 (v1) and RFC 9369 §3.2 (v2).</summary>
internal static class PacketTypeEncoding
{
    /// <summary>The 2-bit Long Packet Type for <paramref name="type"/> in <paramref name="version"/>.</summary>
    public static int GetLongHeaderTypeBits(PacketType type, uint version)
    {
        int v1 = type switch
        {
            PacketType.Initial => 0,
            PacketType.ZeroRtt => 1,
            PacketType.Handshake => 2,
            PacketType.Retry => 3,
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };

        // v2 rotates the v1 code points by one: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
        return version == QuicVersion.Version2 ? (v1 + 1) & 3 : v1;
    }

    /// <summary>The logical type of the 2-bit Long Packet Type <paramref name="bits"/> in <paramref name="version"/>.</summary>
    public static PacketType GetLongHeaderType(int bits, uint version)
    {
        int v1 = version == QuicVersion.Version2 ? (bits + 3) & 3 : bits & 3;
        return v1 switch
        {
            0 => PacketType.Initial,
            1 => PacketType.ZeroRtt,
            2 => PacketType.Handshake,
            _ => PacketType.Retry,
        };
    }
}
