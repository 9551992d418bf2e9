using System.Buffers;
using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

public sealed class QpackHuffmanTests
{
    // RFC 7541 Appendix C.4.
    [Theory]
    [InlineData("www.example.com", "f1e3c2e5f23a6ba0ab90f4ff")]
    [InlineData("no-cache", "a8eb10649cbf")]
    [InlineData("custom-key", "25a849e95ba97d7f")]
    [InlineData("custom-value", "25a849e95bb8e8b4bf")]
    // RFC 7541 Appendix C.6.
    [InlineData("302", "6402")]
    [InlineData("private", "aec3771a4b")]
    [InlineData("Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff")]
    [InlineData("https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3")]
    public void EncodeDecode_RfcVectors(string text, string hex)
    {
        byte[] plain = Encoding.ASCII.GetBytes(text);
        byte[] expected = Convert.FromHexString(hex);
        Assert.Equal(expected.Length, QpackHuffman.GetEncodedLength(plain));

        var encoded = new byte[expected.Length];
        Assert.Equal(expected.Length, QpackHuffman.Encode(plain, encoded));
        Assert.Equal(expected, encoded);

        var decoded = new byte[QpackHuffman.GetMaxDecodedLength(expected.Length)];
        Assert.Equal(OperationStatus.Done, QpackHuffman.Decode(expected, decoded, out int written));
        Assert.Equal(text, Encoding.ASCII.GetString(decoded, 0, written));
    }

    [Fact]
    public void Table_IsCanonicalAndComplete()
    {
        // Kraft sum of exactly 1 and canonical ordering together catch any mistyped code or length.
        double kraft = 0;
        var symbols = Enumerable.Range(0, 257).OrderBy(QpackHuffman.GetCodeLength).ThenBy(s => s).ToArray();
        uint code = 0;
        int previousLength = QpackHuffman.GetCodeLength(symbols[0]);
        for (int i = 0; i < symbols.Length; i++)
        {
            int length = QpackHuffman.GetCodeLength(symbols[i]);
            kraft += Math.Pow(2, -length);
            if (i > 0)
            {
                code = (code + 1) << (length - previousLength);
            }

            previousLength = length;
            Assert.Equal(code, QpackHuffman.GetCode(symbols[i]));
        }

        Assert.Equal(1.0, kraft, 12);
        Assert.Equal(0x3fffffffu, QpackHuffman.GetCode(QpackHuffman.Eos));
        Assert.Equal(30, QpackHuffman.GetCodeLength(QpackHuffman.Eos));
    }

    [Fact]
    public void RandomBytes_RoundTrip()
    {
        var rng = new Random(7541);
        for (int iteration = 0; iteration < 2000; iteration++)
        {
            var plain = new byte[rng.Next(0, 200)];
            rng.NextBytes(plain);
            var encoded = new byte[QpackHuffman.GetEncodedLength(plain)];
            Assert.Equal(encoded.Length, QpackHuffman.Encode(plain, encoded));
            var decoded = new byte[QpackHuffman.GetMaxDecodedLength(encoded.Length)];
            Assert.Equal(OperationStatus.Done, QpackHuffman.Decode(encoded, decoded, out int written));
            Assert.Equal(plain, decoded.AsSpan(0, written).ToArray());
        }
    }

    [Fact]
    public void Encode_ToLower_MatchesLowerCaseInput()
    {
        byte[] mixed = Encoding.ASCII.GetBytes("Content-Type-XYZ");
        byte[] lower = Encoding.ASCII.GetBytes("content-type-xyz");
        var a = new byte[QpackHuffman.GetEncodedLength(mixed, toLower: true)];
        var b = new byte[QpackHuffman.GetEncodedLength(lower)];
        QpackHuffman.Encode(mixed, a, toLower: true);
        QpackHuffman.Encode(lower, b);
        Assert.Equal(b, a);
    }

    [Theory]
    [InlineData("ff", "8 one-bits of padding")]
    [InlineData("f1e3c2e5f23a6ba0ab90f4ffff", "padding longer than 7 bits")]
    [InlineData("f1e3c2e5f23a6ba0ab90f4fe", "padding not all ones")]
    [InlineData("00", "'0' then 3 zero bits of padding")]
    [InlineData("fffffffc", "EOS (30 ones) followed by 2 bits")]
    [InlineData("ffffffff", "EOS inside the string")]
    [InlineData("1fffffffff", "a symbol then EOS")]
    public void Decode_RejectsInvalid(string hex, string because)
    {
        byte[] encoded = Convert.FromHexString(hex);
        var decoded = new byte[QpackHuffman.GetMaxDecodedLength(encoded.Length) + 8];
        Assert.True(QpackHuffman.Decode(encoded, decoded, out _) == OperationStatus.InvalidData, because);
    }

    [Fact]
    public void Decode_AcceptsUpTo7PaddingBits()
    {
        // 'a' = 00011 (5 bits) + 3 one-bits of padding.
        var decoded = new byte[8];
        Assert.Equal(OperationStatus.Done, QpackHuffman.Decode([0x1F], decoded, out int written));
        Assert.Equal("a", Encoding.ASCII.GetString(decoded, 0, written));

        // Empty input is the empty string.
        Assert.Equal(OperationStatus.Done, QpackHuffman.Decode([], decoded, out written));
        Assert.Equal(0, written);
    }

    [Fact]
    public void Decode_ReportsDestinationTooSmall()
    {
        byte[] encoded = Convert.FromHexString("f1e3c2e5f23a6ba0ab90f4ff");
        var decoded = new byte[5];
        Assert.Equal(OperationStatus.DestinationTooSmall, QpackHuffman.Decode(encoded, decoded, out _));
    }

    [Fact]
    public void Decode_RandomGarbage_NeverThrows()
    {
        var rng = new Random(42);
        var decoded = new byte[2048];
        for (int i = 0; i < 20000; i++)
        {
            var encoded = new byte[rng.Next(0, 64)];
            rng.NextBytes(encoded);
            OperationStatus status = QpackHuffman.Decode(encoded, decoded, out int written);
            Assert.NotEqual(OperationStatus.DestinationTooSmall, status);
            Assert.InRange(written, 0, QpackHuffman.GetMaxDecodedLength(encoded.Length));
        }
    }
}
