using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

public sealed class QpackPrimitivesTests
{
    // RFC 7541 Appendix C.1: 10 with a 5-bit prefix, 1337 with a 5-bit prefix, 42 at an octet boundary (8-bit prefix).
    [Theory]
    [InlineData(10UL, 5, "0a")]
    [InlineData(1337UL, 5, "1f9a0a")]
    [InlineData(42UL, 8, "2a")]
    [InlineData(31UL, 5, "1f00")]
    [InlineData(127UL, 7, "7f00")]
    [InlineData(254UL, 8, "fe")]
    [InlineData(255UL, 8, "ff00")]
    public void Integer_RfcVectors(ulong value, int prefixBits, string hex)
    {
        byte[] expected = Convert.FromHexString(hex);
        var buffer = new byte[16];
        int written = QpackPrimitives.WriteInteger(buffer, value, prefixBits, 0);
        Assert.Equal(expected, buffer.AsSpan(0, written).ToArray());
        Assert.Equal(expected.Length, QpackPrimitives.GetIntegerLength(value, prefixBits));

        Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadInteger(expected, prefixBits, out ulong decoded, out int consumed));
        Assert.Equal(value, decoded);
        Assert.Equal(expected.Length, consumed);
    }

    [Fact]
    public void Integer_PrefixFlagsArePreservedAndIgnoredOnRead()
    {
        var buffer = new byte[16];
        int written = QpackPrimitives.WriteInteger(buffer, 1337, 5, 0xE0);
        Assert.Equal("ff9a0a", Convert.ToHexStringLower(buffer, 0, written));
        Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadInteger(buffer.AsSpan(0, written), 5, out ulong value, out _));
        Assert.Equal(1337UL, value);
    }

    [Fact]
    public void Integer_RoundTripsUpTo62Bits()
    {
        var rng = new Random(5);
        var buffer = new byte[16];
        for (int i = 0; i < 5000; i++)
        {
            ulong value = (ulong)rng.NextInt64() & QpackPrimitives.MaxIntegerValue;
            value >>= rng.Next(0, 62);
            int prefix = rng.Next(1, 9);
            int written = QpackPrimitives.WriteInteger(buffer, value, prefix, 0);
            Assert.True(written <= QpackPrimitives.MaxIntegerLength);
            Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadInteger(buffer.AsSpan(0, written), prefix, out ulong decoded, out int consumed));
            Assert.Equal(value, decoded);
            Assert.Equal(written, consumed);

            // Every strict prefix of the encoding asks for more data.
            for (int cut = 0; cut < written; cut++)
            {
                Assert.Equal(QpackParseStatus.NeedMoreData, QpackPrimitives.TryReadInteger(buffer.AsSpan(0, cut), prefix, out _, out _));
            }
        }

        // 2^62 - 1 with a 5-bit prefix is the largest accepted value.
        Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadInteger(Convert.FromHexString("1fe0ffffffffffffff3f"), 5, out ulong largest, out _));
        Assert.Equal(QpackPrimitives.MaxIntegerValue, largest);

        int max = QpackPrimitives.WriteInteger(buffer, QpackPrimitives.MaxIntegerValue, 1, 0);
        Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadInteger(buffer.AsSpan(0, max), 1, out ulong maxValue, out _));
        Assert.Equal(QpackPrimitives.MaxIntegerValue, maxValue);
    }

    [Theory]
    [InlineData("1fffffffffffffffff7f", "2^62 and beyond overflows")]
    [InlineData("1fe1ffffffffffffff3f", "exactly 2^62")]
    [InlineData("1f80808080808080808000", "too many continuation bytes")]
    [InlineData("ffffffffffffffffffffffff01", "way beyond 64 bits")]
    public void Integer_RejectsOverflow(string hex, string because)
    {
        Assert.True(
            QpackPrimitives.TryReadInteger(Convert.FromHexString(hex), 5, out _, out _) == QpackParseStatus.Invalid,
            because);
    }

    [Fact]
    public void String_HuffmanWhenShorterAndRawOtherwise()
    {
        var buffer = new byte[64];
        int written = QpackPrimitives.WriteString(buffer, Encoding.ASCII.GetBytes("custom-key"), 8, 0, useHuffman: true, toLower: false);
        Assert.Equal("8825a849e95ba97d7f", Convert.ToHexStringLower(buffer, 0, written));

        written = QpackPrimitives.WriteString(buffer, Encoding.ASCII.GetBytes("custom-key"), 8, 0, useHuffman: false, toLower: false);
        Assert.Equal("0a637573746f6d2d6b6579", Convert.ToHexStringLower(buffer, 0, written));

        // '{' '}' are long codes: raw is shorter.
        written = QpackPrimitives.WriteString(buffer, Encoding.ASCII.GetBytes("{}"), 8, 0, useHuffman: true, toLower: false);
        Assert.Equal("027b7d", Convert.ToHexStringLower(buffer, 0, written));

        // A 6-bit prefix string (Insert With Literal Name) puts H at 0x20.
        written = QpackPrimitives.WriteString(buffer, Encoding.ASCII.GetBytes("custom-key"), 6, 0x40, useHuffman: true, toLower: false);
        Assert.Equal("6825a849e95ba97d7f", Convert.ToHexStringLower(buffer, 0, written));
    }

    [Fact]
    public void String_ReadRespectsLimitsBeforeData()
    {
        // Declares 100 bytes, holds 2: over a limit of 50 it is invalid at once, under a limit of 200 it needs more.
        byte[] partial = [0x64, 0x61, 0x62];
        Assert.Equal(QpackParseStatus.Invalid, QpackPrimitives.TryReadString(partial, 8, 50, out _, out _, out _));
        Assert.Equal(QpackParseStatus.NeedMoreData, QpackPrimitives.TryReadString(partial, 8, 200, out _, out _, out _));

        byte[] full = [0x82, 0x61, 0x62];
        Assert.Equal(QpackParseStatus.Done, QpackPrimitives.TryReadString(full, 8, 200, out bool huffman, out ReadOnlySpan<byte> octets, out int consumed));
        Assert.True(huffman);
        Assert.Equal(2, octets.Length);
        Assert.Equal(3, consumed);
    }
}
