using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Wire;

public sealed class VariableLengthIntegerTests
{
    // RFC 9000 Appendix A.1 examples.
    [Theory]
    [InlineData("c2197c5eff14e88c", 151288809941952652UL)]
    [InlineData("9d7f3e7d", 494878333UL)]
    [InlineData("7bbd", 15293UL)]
    [InlineData("25", 37UL)]
    public void Decode_RfcSamples(string hex, ulong expected)
    {
        byte[] bytes = Convert.FromHexString(hex);
        Assert.True(VariableLengthInteger.TryRead(bytes, out ulong value, out int read));
        Assert.Equal(expected, value);
        Assert.Equal(bytes.Length, read);

        byte[] encoded = new byte[8];
        int written = VariableLengthInteger.Write(encoded, value, bytes.Length);
        Assert.Equal(hex, Convert.ToHexString(encoded, 0, written).ToLowerInvariant());
    }

    [Fact]
    public void Decode_TwoByteEncodingOfSmallValue()
    {
        Assert.True(VariableLengthInteger.TryRead(Convert.FromHexString("4025"), out ulong value, out int read));
        Assert.Equal(37UL, value);
        Assert.Equal(2, read);
    }

    [Theory]
    [InlineData(0UL, 1)]
    [InlineData(63UL, 1)]
    [InlineData(64UL, 2)]
    [InlineData(16383UL, 2)]
    [InlineData(16384UL, 4)]
    [InlineData(1073741823UL, 4)]
    [InlineData(1073741824UL, 8)]
    [InlineData(VariableLengthInteger.MaxValue, 8)]
    public void RoundTrip_Boundaries(ulong value, int length)
    {
        Assert.Equal(length, VariableLengthInteger.GetLength(value));
        Span<byte> buffer = stackalloc byte[8];
        Assert.Equal(length, VariableLengthInteger.Write(buffer, value));
        Assert.True(VariableLengthInteger.TryRead(buffer.Slice(0, length), out ulong decoded, out _));
        Assert.Equal(value, decoded);
        Assert.False(VariableLengthInteger.TryRead(buffer.Slice(0, length - 1), out _, out _));
    }

    [Fact]
    public void Write_ValueTooLarge_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => VariableLengthInteger.GetLength(VariableLengthInteger.MaxValue + 1));
    }
}
