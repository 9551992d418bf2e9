using System.Buffers;
using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

/// <summary>The encoder's dynamic table against our decoder: insertions, acknowledgments, blocked-stream limits, eviction.</summary>
public sealed class QpackDynamicEncoderTests
{
    private static readonly (string Name, string Value)[] s_request =
    [
        (":method", "GET"), (":scheme", "https"), (":authority", "example.com:4433"), (":path", "/index.html"),
        ("user-agent", "KestrelQuic-test/1.0 (a long enough user agent string)"), ("accept", "text/html"), ("x-custom", "same-every-time"),
    ];

    [Fact]
    public void RepeatedRequests_InsertOnce_ThenReferenceAcknowledgedEntries()
    {
        var (encoder, decoder) = Pair(4096, 4096, blocked: 100);
        var sizes = new List<int>();
        var encoderStreamBytes = new List<int>();
        for (int i = 0; i < 10; i++)
        {
            byte[] section = Encode(encoder, 4 * i, s_request);
            sizes.Add(section.Length);
            encoderStreamBytes.Add(DeliverEncoderStream(encoder, decoder));
            Assert.Equal(s_request, DecodeCompleted(decoder, 4 * i, section));
            DeliverDecoderStream(decoder, encoder);
        }

        Assert.True(encoder.InsertCount >= 3, $"inserts: {encoder.InsertCount}");
        Assert.Equal(encoder.InsertCount, encoder.KnownReceivedCount);
        Assert.Equal(encoder.InsertCount, decoder.InsertCount);
        Assert.Equal(0, encoder.BlockedStreamCount);
        int staticOnly = new QpackEncoder().EncodeFieldSection(s_request.Select(f => KeyValuePair.Create(f.Name, f.Value))).Length;
        Assert.All(sizes, size => Assert.True(size < staticOnly / 2, $"{size} bytes vs {staticOnly} static-only"));
        Assert.True(encoderStreamBytes[0] > 0);
        Assert.All(encoderStreamBytes.Skip(1), n => Assert.Equal(0, n));

        // :path never goes into the table (it changes per request), user-agent does.
        Assert.DoesNotContain("/index.html", Encoding.Latin1.GetString(decoder.DynamicTableSnapshot()));
        Assert.Contains("same-every-time", Encoding.Latin1.GetString(decoder.DynamicTableSnapshot()));
    }

    [Fact]
    public void PeerAllowsNoBlockedStreams_SectionsNeverBlock_UntilAcknowledged()
    {
        var (encoder, decoder) = Pair(4096, 4096, blocked: 0);

        // The decoder sees no encoder-stream bytes yet: every section must still decode.
        byte[] first = Encode(encoder, 0, s_request);
        Assert.Equal(s_request, DecodeCompleted(decoder, 0, first));
        Assert.True(encoder.InsertCount > 0);
        byte[] second = Encode(encoder, 4, s_request);
        Assert.Equal(s_request, DecodeCompleted(decoder, 4, second));

        // Once the insertions are acknowledged (Insert Count Increment), they are referenced.
        DeliverEncoderStream(encoder, decoder);
        DeliverDecoderStream(decoder, encoder);
        Assert.Equal(encoder.InsertCount, encoder.KnownReceivedCount);
        byte[] third = Encode(encoder, 8, s_request);
        Assert.Equal(s_request, DecodeCompleted(decoder, 8, third));
        Assert.True(third.Length < first.Length / 2, $"{first.Length} -> {third.Length}");
    }

    [Fact]
    public void BlockedStreamsLimit_Honoured_BlockedSectionsCompleteWhenInsertsArrive()
    {
        var (encoder, decoder) = Pair(4096, 4096, blocked: 2);
        var sections = new List<(long Stream, byte[] Section)>();
        for (int i = 0; i < 6; i++)
        {
            // Distinct values so each section inserts something new.
            (string, string)[] fields = [.. s_request, ("x-request", "value-" + i)];
            sections.Add((4 * i, Encode(encoder, 4 * i, fields)));
        }

        Assert.True(encoder.BlockedStreamCount <= 2);
        int blocked = 0;
        var collectors = new Dictionary<long, FieldCollector>();
        foreach ((long stream, byte[] section) in sections)
        {
            var collector = new FieldCollector();
            QpackDecodeResult result = decoder.DecodeFieldSection(stream, section, collector);
            if (result.Status == QpackDecodeStatus.Blocked)
            {
                blocked++;
            }
            else
            {
                Assert.Equal(QpackDecodeStatus.Completed, result.Status);
            }
        }

        Assert.InRange(blocked, 1, 2);
        DeliverEncoderStream(encoder, decoder);
        for (int i = 0; i < sections.Count; i++)
        {
            var collector = new FieldCollector();
            Assert.Equal(QpackDecodeStatus.Completed, decoder.DecodeFieldSection(sections[i].Stream + 1000, sections[i].Section, collector).Status);
            Assert.Equal([.. s_request, ("x-request", "value-" + i)], collector.Fields);
        }
    }

    [Fact]
    public void InsertCountIncrement_BeyondInsertions_IsDecoderStreamError()
    {
        var (encoder, _) = Pair(4096, 4096, blocked: 10);
        Encode(encoder, 0, s_request);
        long inserted = encoder.InsertCount;

        Assert.False(encoder.ProcessDecoderStream([(byte)(inserted + 1)], out QpackError error));
        Assert.Equal(Http3ErrorCode.QpackDecoderStreamError, error.Code);
    }

    [Fact]
    public void SectionAcknowledgment_ForStreamWithoutDynamicSection_IsError()
    {
        var (encoder, _) = Pair(4096, 4096, blocked: 10);
        Encode(encoder, 0, s_request);

        Assert.False(encoder.ProcessDecoderStream([0x80 | 8], out QpackError error));
        Assert.Equal(Http3ErrorCode.QpackDecoderStreamError, error.Code);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Randomized_SmallTableUnderEviction_DecodesEverything(int seed)
    {
        var rng = new Random(seed);
        long capacity = rng.Next(2) == 0 ? 220 : 600;
        var (encoder, decoder) = Pair(capacity, capacity, blocked: rng.Next(0, 4));
        string[] values = [.. Enumerable.Range(0, 12).Select(i => "v" + i + new string('x', rng.Next(0, 20)))];
        var pendingBlocked = new List<(long Stream, byte[] Section, List<(string, string)> Expected)>();
        long stream = 0;
        for (int i = 0; i < 400; i++)
        {
            var fields = new List<(string, string)> { (":method", "GET"), (":path", "/" + i) };
            for (int j = rng.Next(1, 5); j > 0; j--)
            {
                fields.Add(("x-h" + rng.Next(4), values[rng.Next(values.Length)]));
            }

            if (rng.Next(10) == 0)
            {
                fields.Add(("authorization", "secret-" + rng.Next(3)));
            }

            stream += 4;
            byte[] section = Encode(encoder, stream, fields);
            Assert.True(encoder.BlockedStreamCount <= encoder.PeerBlockedStreams);

            // The network: encoder-stream bytes and acknowledgments arrive late, sometimes.
            if (rng.Next(3) != 0)
            {
                DeliverEncoderStream(encoder, decoder);
            }

            var collector = new FieldCollector();
            QpackDecodeResult result = decoder.DecodeFieldSection(stream, section, collector);
            if (result.Status == QpackDecodeStatus.Blocked)
            {
                if (rng.Next(5) == 0)
                {
                    // The request was cancelled while blocked: Stream Cancellation releases its references.
                    decoder.AbandonStream(stream);
                }
                else
                {
                    pendingBlocked.Add((stream, section, fields));
                }
            }
            else
            {
                Assert.Equal(QpackDecodeStatus.Completed, result.Status);
                Assert.Equal(fields, collector.Fields);
            }

            if (rng.Next(2) == 0)
            {
                DeliverEncoderStream(encoder, decoder);
                foreach ((long s, byte[] sec, List<(string, string)> expected) in pendingBlocked)
                {
                    var c = new FieldCollector();
                    Assert.Equal(QpackDecodeStatus.Completed, decoder.DecodeFieldSection(s, sec, c).Status);
                    Assert.Equal(expected, c.Fields);
                }

                pendingBlocked.Clear();
                DeliverDecoderStream(decoder, encoder);
            }

            Assert.True(encoder.TableSize <= capacity);
        }

        Assert.True(encoder.InsertCount > 10, $"inserts: {encoder.InsertCount}");
    }

    private static (QpackEncoder Encoder, QpackDecoder Decoder) Pair(long encoderCapacity, long decoderCapacity, int blocked)
    {
        var encoder = new QpackEncoder(encoderCapacity);
        var decoder = new QpackDecoder(decoderCapacity, blocked);
        encoder.ApplyPeerSettings(decoderCapacity, blocked);
        return (encoder, decoder);
    }

    private static byte[] Encode(QpackEncoder encoder, long streamId, IEnumerable<(string Name, string Value)> fields)
    {
        encoder.BeginFieldSection(streamId);
        foreach ((string name, string value) in fields)
        {
            encoder.AddFieldLine(Encoding.Latin1.GetBytes(name), Encoding.Latin1.GetBytes(value), neverIndexed: name == "authorization");
        }

        var section = new ArrayBufferWriter<byte>();
        encoder.EndFieldSection(section);
        return section.WrittenSpan.ToArray();
    }

    private static List<(string, string)> DecodeCompleted(QpackDecoder decoder, long streamId, byte[] section)
    {
        var collector = new FieldCollector();
        QpackDecodeResult result = decoder.DecodeFieldSection(streamId, section, collector);
        Assert.Equal(QpackDecodeStatus.Completed, result.Status);
        return collector.Fields;
    }

    private static int DeliverEncoderStream(QpackEncoder encoder, QpackDecoder decoder)
    {
        var bytes = new ArrayBufferWriter<byte>();
        encoder.WriteEncoderInstructions(bytes);
        Assert.True(decoder.ProcessEncoderStream(bytes.WrittenSpan, out QpackError error), error.ToString());
        return bytes.WrittenCount;
    }

    private static void DeliverDecoderStream(QpackDecoder decoder, QpackEncoder encoder)
    {
        var bytes = new ArrayBufferWriter<byte>();
        decoder.WriteDecoderInstructions(bytes);
        Assert.True(encoder.ProcessDecoderStream(bytes.WrittenSpan, out QpackError error), error.ToString());
    }
}

internal static class QpackDecoderSnapshot
{
    /// <summary>Every name and value in the decoder's dynamic table, concatenated.</summary>
    public static byte[] DynamicTableSnapshot(this QpackDecoder decoder)
    {
        var all = new List<byte>();
        QpackDynamicTable table = decoder.DynamicTable;
        for (long i = table.FirstAbsoluteIndex; i < table.InsertCount; i++)
        {
            table.TryGetAbsolute(i, out QpackTableEntry entry);
            all.AddRange(entry.Name);
            all.AddRange(entry.Value);
        }

        return [.. all];
    }
}
