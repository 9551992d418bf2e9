using KestrelQuic.PacketProtection;

namespace KestrelQuic.Tests.PacketProtection;

public sealed class PacketNumberEncodingTests
{
    // RFC 9000 Appendix A.2 examples.
    [Theory]
    [InlineData(0xac5c02L, 0xabe8b3L, 2)]
    [InlineData(0xace8feL, 0xabe8b3L, 3)]
    [InlineData(0L, -1L, 1)]
    [InlineData(126L, -1L, 1)]
    [InlineData(127L, -1L, 2)] // 128 unacknowledged: 1 byte would represent exactly, not more than, twice the range
    [InlineData(227L, 100L, 1)]
    [InlineData(228L, 100L, 2)]
    [InlineData(1L << 40, (1L << 40) - 1, 1)]
    [InlineData(1L << 40, 0L, 4)]
    public void GetLength_Examples(long packetNumber, long largestAcknowledged, int expected) =>
        Assert.Equal(expected, PacketNumberEncoding.GetLength(packetNumber, largestAcknowledged));

    // RFC 9000 Appendix A.3 example plus window edges.
    [Theory]
    [InlineData(0xa82f30eaL, 0x9b32L, 2, 0xa82f9b32L)]
    [InlineData(-1L, 0L, 1, 0L)]
    [InlineData(-1L, 0xffL, 1, 0xffL)]
    [InlineData(0xffL, 0x00L, 1, 0x100L)]
    [InlineData(0x100L, 0xffL, 1, 0xffL)]
    [InlineData((1L << 62) - 2, 0xffL, 1, (1L << 62) - 1)]
    [InlineData(0x12345678L, 0x12345679L, 4, 0x12345679L)]
    public void Decode_Examples(long largest, long truncated, int length, long expected) =>
        Assert.Equal(expected, PacketNumberEncoding.Decode(largest, truncated, length));

    [Fact]
    public void EncodeDecode_RandomRoundTrips()
    {
        var random = new Random(9000);
        byte[] buffer = new byte[4];
        for (int i = 0; i < 100_000; i++)
        {
            long largestAcked = random.Next(4) == 0 ? -1 : random.NextInt64(0, 1L << (random.Next(1, 62)));
            long packetNumber = largestAcked + 1 + random.NextInt64(0, 1L << random.Next(0, 30));
            if (packetNumber > PacketNumberEncoding.MaxPacketNumber) continue;

            int length = PacketNumberEncoding.GetLength(packetNumber, largestAcked);
            PacketNumberEncoding.Write(buffer, packetNumber, length);
            long truncated = PacketNumberEncoding.Read(buffer, length);
            Assert.Equal(PacketNumberEncoding.Truncate(packetNumber, length), truncated);

            // The receiver's largest received may be anywhere from the sender's largest acknowledged up to just below it.
            long largestReceived = largestAcked + random.NextInt64(0, packetNumber - largestAcked);
            Assert.Equal(packetNumber, PacketNumberEncoding.Decode(largestReceived, truncated, length));
        }
    }

    [Fact]
    public void GetLength_RejectsInvalidArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketNumberEncoding.GetLength(5, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketNumberEncoding.GetLength(-1, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketNumberEncoding.GetLength(1L << 62, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketNumberEncoding.Decode(0, 0, 5));
    }
}
