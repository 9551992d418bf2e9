using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Packets;

public sealed class VersionNegotiationTests
{
    [Fact]
    public void WriteThenRead_RoundTrips()
    {
        byte[] buffer = new byte[128];
        uint[] versions = [QuicVersion.Version2, QuicVersion.Version1, 0x1a2a3a4a];
        int n = VersionNegotiationPacket.Write(buffer, [1, 2, 3], [4, 5, 6, 7, 8], versions, 0x55);
        Assert.Equal(VersionNegotiationPacket.GetLength(3, 5, 3), n);
        Assert.Equal(0x80 | 0x55, buffer[0]);
        Assert.Equal("00000000", Convert.ToHexString(buffer, 1, 4));

        ReadOnlySpan<byte> packet = buffer.AsSpan(0, n);
        Assert.True(PacketHeaderParser.TryParse(packet, 8, out PacketHeader h));
        Assert.Equal(PacketType.VersionNegotiation, h.Type);
        Assert.False(h.IsSupportedVersion);
        Assert.Equal(new byte[] { 1, 2, 3 }, h.GetDestinationConnectionId(packet).ToArray());
        Assert.Equal(new byte[] { 4, 5, 6, 7, 8 }, h.GetSourceConnectionId(packet).ToArray());

        uint[] read = new uint[8];
        Assert.True(VersionNegotiationPacket.TryReadVersions(packet, h, read, out int count));
        Assert.Equal(versions, read[..count]);
        Assert.True(VersionNegotiationPacket.TryReadVersions(packet, read, out count));
        Assert.Equal(3, count);

        Assert.True(VersionNegotiationPacket.TryGetVersionList(packet, h, out ReadOnlySpan<byte> list));
        Assert.True(VersionNegotiationPacket.Contains(list, QuicVersion.Version1));
        Assert.False(VersionNegotiationPacket.Contains(list, 0x12345678));

        // A short destination copies the first versions.
        Assert.True(VersionNegotiationPacket.TryReadVersions(packet, h, read.AsSpan(0, 2), out count));
        Assert.Equal(2, count);
    }

    [Fact]
    public void Read_EmptyOrRaggedList_Fails()
    {
        byte[] buffer = new byte[64];
        int n = VersionNegotiationPacket.Write(buffer, [1], [2], [QuicVersion.Version1], 0);
        uint[] read = new uint[4];

        // No versions at all.
        Assert.False(VersionNegotiationPacket.TryReadVersions(buffer.AsSpan(0, n - 4), read, out _));

        // Not a whole number of versions.
        for (int cut = n - 3; cut < n; cut++)
        {
            Assert.False(VersionNegotiationPacket.TryReadVersions(buffer.AsSpan(0, cut), read, out _));
        }

        // Not a Version Negotiation packet.
        Assert.False(VersionNegotiationPacket.TryReadVersions([0x40, 1, 2, 3], read, out _));
    }

    [Fact]
    public void Read_VnFromInvariantLongConnectionIds()
    {
        byte[] dcid = new byte[200];
        byte[] scid = new byte[100];
        byte[] buffer = new byte[512];
        int n = VersionNegotiationPacket.Write(buffer, dcid, scid, [QuicVersion.Version1], 0x7f);
        Assert.True(VersionNegotiationPacket.TryReadVersions(buffer.AsSpan(0, n), new uint[1], out int count));
        Assert.Equal(1, count);
    }
}
