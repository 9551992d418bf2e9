using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

public sealed class QpackDecoderTests
{
    private const string B2EncoderStream = "3fbd01 c00f7777772e6578616d706c652e636f6d c10c2f73616d706c652f70617468";
    private const string B3EncoderStream = "4a637573746f6d2d6b65790c637573746f6d2d76616c7565";
    private const string B4EncoderStream = "02";
    private const string B4Section = "0500 80 c1 81";
    private const string B5EncoderStream = "810d637573746f6d2d76616c756532";

    [Fact]
    public void AppendixB1_LiteralWithStaticNameReference()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        var (result, fields) = decoder.Decode(0, "0000 510b2f696e6465782e68746d6c");
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal([(":path", "/index.html")], fields);
        Assert.Equal("", decoder.DrainDecoderStream());
    }

    [Fact]
    public void AppendixB_FullSequence_ExactFieldsTableStateAndDecoderStream()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);

        // B.1
        var (result, fields) = decoder.Decode(0, "0000 510b2f696e6465782e68746d6c");
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal([(":path", "/index.html")], fields);
        Assert.Equal("", decoder.DrainDecoderStream());

        // B.2: capacity, two inserts, then a section using post-base indexing; the Section Acknowledgment covers the inserts.
        decoder.FeedEncoderStream(B2EncoderStream);
        Assert.Equal(220, decoder.TableCapacity);
        Assert.Equal(2, decoder.InsertCount);
        Assert.Equal(106, decoder.TableSize);
        (result, fields) = decoder.Decode(4, "0381 10 11");
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal(2, result.RequiredInsertCount);
        Assert.Equal([(":authority", "www.example.com"), (":path", "/sample/path")], fields);
        Assert.Equal("84", decoder.DrainDecoderStream());

        // B.3: speculative insert, acknowledged by Insert Count Increment (1).
        decoder.FeedEncoderStream(B3EncoderStream);
        Assert.Equal(160, decoder.TableSize);
        Assert.Equal("01", decoder.DrainDecoderStream());

        // B.4: the Duplicate is delayed, so the section on stream 8 blocks; the stream is then cancelled.
        (result, fields) = decoder.Decode(8, B4Section);
        Assert.Equal(QpackDecodeStatus.Blocked, result.Status);
        Assert.Equal(4, result.RequiredInsertCount);
        Assert.Empty(fields);
        Assert.Equal(1, decoder.BlockedStreamCount);
        decoder.AbandonStream(8);
        Assert.Equal(0, decoder.BlockedStreamCount);
        Assert.Equal("48", decoder.DrainDecoderStream());

        decoder.FeedEncoderStream(B4EncoderStream);
        Assert.Equal(4, decoder.InsertCount);
        Assert.Equal(217, decoder.TableSize);

        // B.5: insert with dynamic name reference evicts absolute index 0.
        decoder.FeedEncoderStream(B5EncoderStream);
        Assert.Equal(5, decoder.InsertCount);
        Assert.Equal(215, decoder.TableSize);
        AssertTable(decoder, 1, [(":path", "/sample/path"), ("custom-key", "custom-value"), (":authority", "www.example.com"), ("custom-key", "custom-value2")]);
        Assert.False(decoder.DynamicTable.TryGetAbsolute(0, out _));
    }

    [Fact]
    public void AppendixB4_DuplicateArrivesFirst_SectionDecodes()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.FeedEncoderStream(B2EncoderStream);
        decoder.FeedEncoderStream(B3EncoderStream);
        decoder.FeedEncoderStream(B4EncoderStream);
        var (result, fields) = decoder.Decode(8, B4Section);
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal([(":authority", "www.example.com"), (":path", "/"), ("custom-key", "custom-value")], fields);

        // Section Acknowledgment for stream 8 sets Known Received Count to 4: no Insert Count Increment needed.
        Assert.Equal("88", decoder.DrainDecoderStream());
        Assert.Equal(4, decoder.KnownReceivedCount);
    }

    [Fact]
    public void AppendixB4_BlockedSectionUnblocksWhenDuplicateArrives()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 1);
        decoder.FeedEncoderStream(B2EncoderStream + B3EncoderStream);
        Assert.Equal("03", decoder.DrainDecoderStream());

        Assert.Equal(QpackDecodeStatus.Blocked, decoder.Decode(8, B4Section).Result.Status);
        Assert.Equal(QpackDecodeStatus.Blocked, decoder.Decode(8, B4Section).Result.Status); // retry: still one blocked stream
        Assert.Equal(1, decoder.BlockedStreamCount);

        decoder.FeedEncoderStream(B4EncoderStream);
        var (result, fields) = decoder.Decode(8, B4Section);
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal(3, fields.Count);
        Assert.Equal(0, decoder.BlockedStreamCount);
        Assert.Equal("88", decoder.DrainDecoderStream());
    }

    [Fact]
    public void EncoderStream_FedOneByteAtATime_SameResult()
    {
        byte[] stream = Convert.FromHexString((B2EncoderStream + B3EncoderStream + B4EncoderStream + B5EncoderStream).Replace(" ", ""));
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        foreach (byte b in stream)
        {
            Assert.True(decoder.ProcessEncoderStream([b], out QpackError error), error.ToString());
        }

        Assert.Equal(5, decoder.InsertCount);
        Assert.Equal(215, decoder.TableSize);
        AssertTable(decoder, 1, [(":path", "/sample/path"), ("custom-key", "custom-value"), (":authority", "www.example.com"), ("custom-key", "custom-value2")]);

        // Random splits too.
        var rng = new Random(9204);
        for (int iteration = 0; iteration < 200; iteration++)
        {
            var split = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
            int offset = 0;
            while (offset < stream.Length)
            {
                int take = Math.Min(stream.Length - offset, rng.Next(1, 20));
                Assert.True(split.ProcessEncoderStream(stream.AsSpan(offset, take), out _));
                offset += take;
            }

            Assert.Equal(215, split.TableSize);
            Assert.Equal(5, split.InsertCount);
        }
    }

    [Fact]
    public void RequiredInsertCount_RfcWrapExample()
    {
        // "if the dynamic table is 100 bytes, then the Required Insert Count will be encoded modulo 6. If a decoder has
        // received 10 inserts, then an encoded value of 4 indicates that the Required Insert Count is 9."
        var decoder = new QpackDecoder(maxTableCapacity: 100, maxBlockedStreams: 0);
        decoder.FeedEncoderStream("3f45"); // capacity 100
        for (int i = 0; i < 10; i++)
        {
            decoder.FeedEncoderStream("c0" + "01" + ((byte)('a' + i)).ToString("x2")); // :authority = one letter (43 bytes)
        }

        Assert.Equal(10, decoder.InsertCount);
        Assert.Equal(2, decoder.DynamicTable.Count);

        // Required Insert Count 9, Base 9, relative index 0 = absolute 8 (:authority=i).
        var (result, fields) = decoder.Decode(0, "04 00 80");
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        Assert.Equal(9, result.RequiredInsertCount);
        Assert.Equal([(":authority", "i")], fields);

        // Absolute 7 is evicted.
        var (evicted, _) = new QpackDecoderTests().Clone(decoder).Decode(4, "04 00 81");
        Assert.Equal(QpackDecodeStatus.Error, evicted.Status);
        Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, evicted.ErrorCode);
    }

    [Fact]
    public void BlockedStreams_AboveLimit_IsDecompressionFailed()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 1);
        Assert.Equal(QpackDecodeStatus.Blocked, decoder.Decode(0, "0200 80").Result.Status);
        var (result, _) = decoder.Decode(4, "0200 80");
        Assert.Equal(QpackDecodeStatus.Error, result.Status);
        Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, result.ErrorCode);

        // Sticky: the connection is failing.
        Assert.Equal(QpackDecodeStatus.Error, decoder.Decode(8, "0000 d1").Result.Status);
        Assert.False(decoder.ProcessEncoderStream([0x20], out QpackError error));
        Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, error.Code);
    }

    [Fact]
    public void ZeroBlockedStreams_AnyBlockingSectionFails()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 0);
        Assert.Equal(QpackDecodeStatus.Error, decoder.Decode(0, "0200 80").Result.Status);
    }

    [Theory]
    [InlineData("0000 ff24", "static index 99")]
    [InlineData("0000 80", "dynamic reference with Required Insert Count 0")]
    [InlineData("0000 10", "post-base reference with Required Insert Count 0")]
    [InlineData("0000 5f54 00", "name reference to static index 99")]
    [InlineData("00", "truncated prefix")]
    [InlineData("", "empty section")]
    [InlineData("0000 510b2f696e646578", "truncated value")]
    [InlineData("0000 2f", "truncated literal name")]
    [InlineData("0000 2a 61", "literal name without value")]
    [InlineData("0000 5181ff", "Huffman value that is all padding (8 bits)")]
    [InlineData("0000 c1ffffffffffffffffffffff", "overlong index")]
    [InlineData("0d00", "encoded Required Insert Count above 2 * MaxEntries")]
    [InlineData("0181", "negative Base with Required Insert Count 0")]
    public void MalformedSection_IsDecompressionFailed(string hex, string because)
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        var (result, _) = decoder.Decode(0, hex);
        Assert.True(result.Status == QpackDecodeStatus.Error, because);
        Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, result.ErrorCode);
        Assert.NotNull(result.Error.Message);
    }

    [Theory]
    [InlineData("0381 10 12", "post-base index at the Required Insert Count")]
    [InlineData("0300 82", "relative index past the oldest entry")]
    [InlineData("0381 80", "relative index with Base 0")]
    [InlineData("0201 80", "relative reference at or above the Required Insert Count (Base 2 > RIC 1)")]
    [InlineData("0382 80", "Delta Base 2 with RIC 2 makes Base negative")]
    public void InvalidDynamicReference_IsDecompressionFailed(string hex, string because)
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.FeedEncoderStream(B2EncoderStream);
        var (result, _) = decoder.Decode(0, hex);
        Assert.True(result.Status == QpackDecodeStatus.Error, because);
        Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, result.ErrorCode);
    }

    [Fact]
    public void DynamicReferences_AllRepresentations()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.FeedEncoderStream(B2EncoderStream + B3EncoderStream); // abs 0 :authority, 1 :path, 2 custom-key
        // RIC 3 (enc 4), Base 1 (S=1, delta 1): relative 0 = abs 0; post-base 0 = abs 1, post-base 1 = abs 2.
        var (result, fields) = decoder.Decode(12, "04 81 80 10 11 40 01 78 01 01 79 00 01 7a");
        Assert.True(result.Status == QpackDecodeStatus.Completed, result.ToString());
        Assert.Equal(
            [
                (":authority", "www.example.com"),
                (":path", "/sample/path"),
                ("custom-key", "custom-value"),
                (":authority", "x"),
                ("custom-key", "y"),
                (":path", "z"),
            ],
            fields);
        Assert.Equal("8c", decoder.DrainDecoderStream());
    }

    [Theory]
    [InlineData("3fde01", "capacity 221 above the 220 maximum")]
    [InlineData("3fbd01 c07f", "incomplete length, then a raw value longer than the capacity")]
    [InlineData("3fbd01 c0 7f60", "declared value length 223 > capacity")]
    [InlineData("3fbd01 ff2400", "insert with static name index 99")]
    [InlineData("3fbd01 8000", "insert with dynamic name reference into an empty table")]
    [InlineData("3fbd01 00", "duplicate in an empty table")]
    [InlineData("c00161", "insert while capacity is 0")]
    [InlineData("3fbd01 c081ff", "Huffman value of 8 padding bits")]
    [InlineData("3f ffffffffffffffffffffff", "capacity integer overflow")]
    public void MalformedEncoderStream_IsEncoderStreamError(string hex, string because)
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        bool ok = decoder.ProcessEncoderStream(Convert.FromHexString(hex.Replace(" ", "").Replace(".", "")), out QpackError error);
        if (hex.EndsWith("c07f", StringComparison.Ordinal))
        {
            // A 0x7f value-length prefix starts a multi-byte length: incomplete, not yet an error; the declared length then exceeds.
            Assert.True(ok);
            ok = decoder.ProcessEncoderStream([0x7f], out error);
        }

        Assert.False(ok, because);
        Assert.Equal(Http3ErrorCode.QpackEncoderStreamError, error.Code);
    }

    [Fact]
    public void EntryLargerThanCapacity_IsEncoderStreamError()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.FeedEncoderStream("3f21"); // capacity 64
        // :path (5) + 28 bytes + 32 = 65 > 64.
        string value = Convert.ToHexStringLower(Encoding.ASCII.GetBytes(new string('a', 28)));
        Assert.False(decoder.ProcessEncoderStream(Convert.FromHexString("c1" + "1c" + value), out QpackError error));
        Assert.Equal(Http3ErrorCode.QpackEncoderStreamError, error.Code);

        var fits = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        fits.FeedEncoderStream("3f21");
        value = Convert.ToHexStringLower(Encoding.ASCII.GetBytes(new string('a', 27)));
        fits.FeedEncoderStream("c1" + "1b" + value);
        Assert.Equal(64, fits.TableSize);
    }

    [Fact]
    public void CapacityReduction_Evicts_AndZeroClears()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.FeedEncoderStream(B2EncoderStream + B3EncoderStream);
        decoder.FeedEncoderStream("3f8301"); // capacity 162 -> still 160
        Assert.Equal(3, decoder.DynamicTable.Count);
        decoder.FeedEncoderStream("3f6f"); // capacity 142 -> evict :authority (57) -> 103
        Assert.Equal(103, decoder.TableSize);
        Assert.Equal(1, decoder.DynamicTable.FirstAbsoluteIndex);
        decoder.FeedEncoderStream("20"); // capacity 0
        Assert.Equal(0, decoder.TableSize);
        Assert.Equal(0, decoder.DynamicTable.Count);
        Assert.Equal(3, decoder.InsertCount);
        decoder.FeedEncoderStream("3fbd01 c10161");
        Assert.Equal(4, decoder.InsertCount);
    }

    [Fact]
    public void MaxFieldSectionSize_ReportsTooLarge_AndStillAcknowledges()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10, maxFieldSectionSize: 100);
        decoder.FeedEncoderStream(B2EncoderStream);
        Assert.Equal("02", decoder.DrainDecoderStream());

        // :authority www.example.com = 57, :path /sample/path = 49: 106 > 100.
        var (result, fields) = decoder.Decode(4, "0381 10 11");
        Assert.Equal(QpackDecodeStatus.FieldSectionTooLarge, result.Status);
        Assert.Equal(106, result.FieldSectionSize);
        Assert.Single(fields);
        Assert.Equal("84", decoder.DrainDecoderStream());

        // Exactly at the limit is fine.
        decoder.MaxFieldSectionSize = 106;
        Assert.Equal(QpackDecodeStatus.Completed, decoder.Decode(8, "0381 10 11").Result.Status);

        // A huge Huffman literal beyond the limit is not inflated and does not fail the connection.
        var big = new QpackDecoder(maxTableCapacity: 0, maxBlockedStreams: 0, maxFieldSectionSize: 1000);
        var lengthPrefix = new byte[8];
        int prefixLength = QpackPrimitives.WriteInteger(lengthPrefix, 16384, 7, 0x80);
        byte[] section = [0x00, 0x00, 0x51, .. lengthPrefix.AsSpan(0, prefixLength), .. Enumerable.Repeat((byte)0x1F, 16384)];
        var collector = new FieldCollector();
        QpackDecodeResult bigResult = big.DecodeFieldSection(0, section, collector);
        Assert.Equal(QpackDecodeStatus.FieldSectionTooLarge, bigResult.Status);
        Assert.Empty(collector.Fields);
    }

    [Fact]
    public void ZeroCapacityDecoder_OmitsStreamCancellation()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 0, maxBlockedStreams: 0);
        decoder.AbandonStream(4);
        Assert.False(decoder.HasPendingDecoderInstructions);
        Assert.Equal("", decoder.DrainDecoderStream());
        Assert.Equal(QpackDecodeStatus.Error, decoder.Decode(0, "0200 80").Result.Status);
    }

    [Fact]
    public void LargeStreamIds_UseMultiByteIntegers()
    {
        var decoder = new QpackDecoder(maxTableCapacity: 220, maxBlockedStreams: 10);
        decoder.AbandonStream(1000);
        // Stream Cancellation: 01 + 6-bit prefix: 0x7f then 1000 - 63 = 937 = 0xa9 0x07.
        Assert.Equal("7fa907", decoder.DrainDecoderStream());

        decoder.FeedEncoderStream(B2EncoderStream);
        Assert.Equal(QpackDecodeStatus.Completed, decoder.Decode(1_000_000, "0381 10 11").Result.Status);
        byte[] expected = new byte[8];
        int n = QpackPrimitives.WriteInteger(expected, 1_000_000, 7, 0x80);
        Assert.Equal(Convert.ToHexStringLower(expected, 0, n), decoder.DrainDecoderStream());
    }

    [Fact]
    public void MultiSegmentSection_Decodes()
    {
        byte[] bytes = Convert.FromHexString("0000510b2f696e6465782e68746d6cd1");
        var first = new Segment(bytes.AsMemory(0, 5));
        Segment last = first.Append(bytes.AsMemory(5));
        var sequence = new System.Buffers.ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
        var decoder = new QpackDecoder(0, 0);
        var collector = new FieldCollector();
        Assert.Equal(QpackDecodeStatus.Completed, decoder.DecodeFieldSection(0, sequence, collector).Status);
        Assert.Equal([(":path", "/index.html"), (":method", "GET")], collector.Fields);
    }

    private QpackDecoder Clone(QpackDecoder decoder)
    {
        // Rebuild the same table (capacity 100, ten single-letter :authority inserts) for a second, independent check.
        var copy = new QpackDecoder(decoder.MaxTableCapacity, decoder.MaxBlockedStreams);
        copy.FeedEncoderStream("3f45");
        for (int i = 0; i < 10; i++)
        {
            copy.FeedEncoderStream("c0" + "01" + ((byte)('a' + i)).ToString("x2"));
        }

        return copy;
    }

    private static void AssertTable(QpackDecoder decoder, long firstAbsolute, (string Name, string Value)[] expected)
    {
        Assert.Equal(firstAbsolute, decoder.DynamicTable.FirstAbsoluteIndex);
        Assert.Equal(expected.Length, decoder.DynamicTable.Count);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(decoder.DynamicTable.TryGetAbsolute(firstAbsolute + i, out QpackTableEntry entry));
            Assert.Equal(expected[i], (Encoding.ASCII.GetString(entry.Name), Encoding.ASCII.GetString(entry.Value)));
        }
    }

    internal sealed class Segment : System.Buffers.ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
