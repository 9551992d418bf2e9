using System.Buffers;
using System.Text;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

public sealed class QpackEncoderTests
{
    private static readonly KeyValuePair<string, string>[] s_request =
    [
        new(":method", "GET"),
        new(":scheme", "https"),
        new(":authority", "www.example.com"),
        new(":path", "/search?q=kestrel+quic&lang=en"),
        new("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        new("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        new("accept-encoding", "gzip, deflate, br"),
        new("accept-language", "en-US,en;q=0.5"),
        new("cookie", "session=8f14e45fceea167a5a36dedd4bea2543"),
        new("cookie", "theme=dark"),
        new("x-request-id", "0f6e3c1a-6a8e-4c55-9a1e-1b2c3d4e5f60"),
        new("te", "trailers"),
    ];

    private static readonly KeyValuePair<string, string>[] s_response =
    [
        new(":status", "200"),
        new("content-type", "text/html; charset=utf-8"),
        new("content-length", "1270"),
        new("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
        new("cache-control", "private"),
        new("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
        new("strict-transport-security", "max-age=31536000; includesubdomains; preload"),
        new("alt-svc", "h3=\":443\"; ma=86400"),
        new("vary", "accept-encoding"),
        new("server", "kestrel"),
        new("content-encoding", "br"),
        new("x-content-type-options", "nosniff"),
    ];

    [Fact]
    public void ExactStaticMatch_IsIndexedFieldLine()
    {
        var encoder = new QpackEncoder();
        Assert.Equal("0000d1", Hex(encoder.EncodeFieldSection([new(":method", "GET")])));
        Assert.Equal("0000d9", Hex(encoder.EncodeFieldSection([new(":status", "200")]))); // 0xc0 | 25
        Assert.Equal("0000ff23", Hex(encoder.EncodeFieldSection([new("x-frame-options", "sameorigin")]))); // 98 = 63 + 35
    }

    [Fact]
    public void StaticNameMatch_IsLiteralWithNameReference_RfcB1()
    {
        var raw = new QpackEncoder(useHuffman: false);
        Assert.Equal("0000510b2f696e6465782e68746d6c", Hex(raw.EncodeFieldSection([new(":path", "/index.html")])));

        // With Huffman the value shrinks (11 -> 8 bytes), H bit set.
        var huffman = new QpackEncoder();
        byte[] encoded = huffman.EncodeFieldSection([new(":path", "/index.html")]);
        Assert.Equal(0x51, encoded[2]);
        Assert.Equal(0x80 | (encoded.Length - 4), encoded[3]);
        Assert.True(encoded.Length < 15);
    }

    [Fact]
    public void UnknownName_IsLiteralWithLiteralName_HuffmanBoth()
    {
        var encoder = new QpackEncoder();
        // 0x2f = 001 N=0 H=1 len 7+ (continuation 01 -> 8), then Huffman name, then H=1 len 9 value.
        Assert.Equal(
            "00002f0125a849e95ba97d7f8925a849e95bb8e8b4bf",
            Hex(encoder.EncodeFieldSection([new("custom-key", "custom-value")])));

        var raw = new QpackEncoder(useHuffman: false);
        Assert.Equal(
            "000027036375" + "73746f6d2d6b65790c637573746f6d2d76616c7565",
            Hex(raw.EncodeFieldSection([new("custom-key", "custom-value")])));
    }

    [Fact]
    public void Names_AreLowerCased()
    {
        var encoder = new QpackEncoder();
        Assert.Equal("0000ee", Hex(encoder.EncodeFieldSection([new("Content-Type", "application/json")])));

        var decoded = RoundTrip(encoder, [new("X-Custom-Header", "Value Keeps Case")]);
        Assert.Equal([("x-custom-header", "Value Keeps Case")], decoded);
    }

    [Fact]
    public void NeverIndexed_UsesLiteralWithNBit()
    {
        var encoder = new QpackEncoder(useHuffman: false);
        var writer = new ArrayBufferWriter<byte>();
        encoder.WriteFieldLine(writer, "authorization"u8, "Basic xyz"u8, neverIndexed: true);
        // 0111 + index 84 (15 + 69): 7f 45, then raw value.
        Assert.Equal("7f4509" + Hex(Encoding.ASCII.GetBytes("Basic xyz")), Hex(writer.WrittenSpan.ToArray()));

        writer.Clear();
        encoder.WriteFieldLine(writer, ":method"u8, "GET"u8, neverIndexed: true);
        Assert.Equal("7f02034745" + "54", Hex(writer.WrittenSpan.ToArray())); // name from the exact entry 17

        writer.Clear();
        encoder.WriteFieldLine(writer, "x-secret"u8, "1"u8, neverIndexed: true);
        Assert.Equal(0x30, writer.WrittenSpan[0] & 0xF8); // 001 N=1 H=0
    }

    [Fact]
    public void RealisticHeaders_RoundTrip_WithAndWithoutHuffman()
    {
        foreach (bool huffman in new[] { true, false })
        {
            var encoder = new QpackEncoder(huffman);
            Assert.Equal(s_request.Select(p => (p.Key, p.Value)), RoundTrip(encoder, s_request));
            Assert.Equal(s_response.Select(p => (p.Key, p.Value)), RoundTrip(encoder, s_response));
        }

        // Compression actually happens.
        int plain = s_request.Sum(p => p.Key.Length + p.Value.Length);
        Assert.True(new QpackEncoder().EncodeFieldSection(s_request).Length < plain * 0.8);
    }

    [Fact]
    public void RandomHeaderLists_RoundTrip()
    {
        var rng = new Random(1234);
        for (int iteration = 0; iteration < 500; iteration++)
        {
            var fields = new List<KeyValuePair<string, string>>();
            int count = rng.Next(0, 20);
            for (int i = 0; i < count; i++)
            {
                if (rng.Next(3) == 0)
                {
                    QpackTableEntry entry = QpackStaticTable.Get(rng.Next(QpackStaticTable.Count));
                    string name = Encoding.ASCII.GetString(entry.Name);
                    fields.Add(new(name, rng.Next(2) == 0 ? Encoding.ASCII.GetString(entry.Value) : RandomLatin1(rng, 40)));
                }
                else
                {
                    fields.Add(new(RandomToken(rng), RandomLatin1(rng, 300)));
                }
            }

            var encoder = new QpackEncoder(useHuffman: rng.Next(4) != 0);
            Assert.Equal(fields.Select(p => (p.Key, p.Value)), RoundTrip(encoder, fields));
        }
    }

    [Fact]
    public void LongValues_UseMultiByteLengths()
    {
        string value = new('a', 100_000);
        var decoded = RoundTrip(new QpackEncoder(), [new("x-long", value), new(":path", value)]);
        Assert.Equal(value, decoded[0].Value);
        Assert.Equal(value, decoded[1].Value);
    }

    [Fact]
    public void StringOverload_RejectsNonLatin1UnlessEncodingGiven()
    {
        var encoder = new QpackEncoder();
        var writer = new ArrayBufferWriter<byte>();
        Assert.Throws<ArgumentException>(() => encoder.WriteFieldLine(writer, "x-name", "snow \u2603"));
        Assert.Throws<ArgumentException>(() => encoder.WriteFieldLine(writer, "x-n\u00e4me", "v"));

        encoder.WriteFieldLine(writer, "x-name", "snow \u2603", valueEncoding: Encoding.UTF8);
        byte[] section = [0, 0, .. writer.WrittenSpan];
        var collector = new FieldCollector();
        Assert.Equal(QpackDecodeStatus.Completed, new QpackDecoder(0, 0).DecodeFieldSection(0, section, collector).Status);
        Assert.Equal(Encoding.UTF8.GetBytes("snow \u2603"), Encoding.Latin1.GetBytes(collector.Fields[0].Value));
    }

    [Fact]
    public void TryWriteFieldLine_ExactAndShortDestinations()
    {
        var encoder = new QpackEncoder();
        byte[] name = "custom-key"u8.ToArray();
        byte[] value = "custom-value"u8.ToArray();
        Assert.True(encoder.TryWriteFieldLine(new byte[64], name, value, out int length));
        Assert.Equal(20, length);
        Assert.True(encoder.TryWriteFieldLine(new byte[20], name, value, out int exact));
        Assert.Equal(20, exact);
        Assert.False(encoder.TryWriteFieldLine(new byte[19], name, value, out _));
        Assert.True(QpackEncoder.GetMaxFieldLineLength(name.Length, value.Length) >= length);
    }

    [Fact]
    public void PeerSettings_AreRecorded_AndNothingIsEverInserted()
    {
        var encoder = new QpackEncoder();
        var settings = new Http3Settings { QpackMaxTableCapacity = 4096, QpackBlockedStreams = 100, MaxFieldSectionSize = 16384 };
        encoder.ApplyPeerSettings(settings);
        Assert.Equal(4096, encoder.PeerMaxTableCapacity);
        Assert.Equal(100, encoder.PeerBlockedStreams);
        Assert.Equal(16384, encoder.PeerMaxFieldSectionSize);

        // Sections still never reference the dynamic table.
        byte[] section = encoder.EncodeFieldSection(s_response);
        Assert.Equal(0, section[0]);
        Assert.Equal(0, section[1]);
        Assert.Equal(32 + 7 + 3, QpackEncoder.GetFieldLineSize(7, 3));
    }

    [Fact]
    public void DecoderStream_StreamCancellationAccepted_OthersAreErrors()
    {
        var encoder = new QpackEncoder();
        Assert.True(encoder.ProcessDecoderStream(Convert.FromHexString("48"), out _));

        // A multi-byte Stream Cancellation split byte by byte.
        foreach (byte b in Convert.FromHexString("7fa907"))
        {
            Assert.True(encoder.ProcessDecoderStream([b], out QpackError splitError), splitError.ToString());
        }

        foreach (string hex in new[] { "84", "00", "01", "7f" + "ffffffffffffffffffff" })
        {
            var fresh = new QpackEncoder();
            bool ok = fresh.ProcessDecoderStream(Convert.FromHexString(hex), out QpackError error);
            Assert.False(ok, hex);
            Assert.Equal(Http3ErrorCode.QpackDecoderStreamError, error.Code);
            Assert.False(fresh.ProcessDecoderStream([0x48], out _)); // sticky
        }
    }

    [Fact]
    public void DecoderStream_RandomInput_NeverThrows()
    {
        var rng = new Random(202);
        for (int i = 0; i < 2000; i++)
        {
            var encoder = new QpackEncoder();
            var data = new byte[rng.Next(0, 30)];
            rng.NextBytes(data);
            int offset = 0;
            while (offset < data.Length)
            {
                int take = Math.Min(data.Length - offset, rng.Next(1, 5));
                if (!encoder.ProcessDecoderStream(data.AsSpan(offset, take), out QpackError error))
                {
                    Assert.Equal(Http3ErrorCode.QpackDecoderStreamError, error.Code);
                    break;
                }

                offset += take;
            }
        }
    }

    internal static List<(string Name, string Value)> RoundTrip(QpackEncoder encoder, IEnumerable<KeyValuePair<string, string>> fields)
    {
        byte[] section = encoder.EncodeFieldSection(fields);
        var decoder = new QpackDecoder(maxTableCapacity: 4096, maxBlockedStreams: 16);
        var collector = new FieldCollector();
        QpackDecodeResult result = decoder.DecodeFieldSection(0, section, collector);
        Assert.True(result.Status == QpackDecodeStatus.Completed, result.ToString());
        Assert.Equal(0, result.RequiredInsertCount);
        Assert.False(decoder.HasPendingDecoderInstructions);
        return collector.Fields;
    }

    private static string RandomToken(Random rng)
    {
        const string chars = "abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";
        int length = rng.Next(1, 30);
        var builder = new StringBuilder(length);
        for (int i = 0; i < length; i++)
        {
            builder.Append(chars[rng.Next(chars.Length)]);
        }

        return builder.ToString();
    }

    private static string RandomLatin1(Random rng, int maxLength)
    {
        int length = rng.Next(0, maxLength);
        var chars = new char[length];
        for (int i = 0; i < length; i++)
        {
            chars[i] = rng.Next(4) == 0 ? (char)rng.Next(0, 256) : (char)rng.Next(0x20, 0x7F);
        }

        return new string(chars);
    }

    private static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);
}
