using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

/// <summary>
/// Model-based tests: a dynamic-table encoder drives the decoder through many sections, inserts, evictions, capacity
/// changes, blocking and Required Insert Count wrapping; fuzz tests mutate what it produces.
/// </summary>
public sealed class QpackDynamicModelTests
{
    private static readonly string[] s_names = [":authority", ":path", "content-type", "cookie", "x-trace", "custom-key", "set-cookie", "server"];

    [Theory]
    [InlineData(1, 4096L)]
    [InlineData(2, 220L)]
    [InlineData(3, 100L)] // tiny table: constant eviction and Required Insert Count wrapping
    [InlineData(4, 65536L)]
    public void DecoderFollowsDynamicEncoder(int seed, long maxCapacity)
    {
        var rng = new Random(seed);
        var decoder = new QpackDecoder(maxCapacity, maxBlockedStreams: 4);
        var encoder = new TestDynamicEncoder(rng, maxCapacity);
        encoder.SetCapacity(maxCapacity);
        int dynamicSections = 0;
        int blockedSections = 0;

        for (int step = 0; step < 400; step++)
        {
            if (rng.Next(40) == 0)
            {
                encoder.SetCapacity(rng.Next(0, (int)maxCapacity + 1));
            }

            var fields = RandomFields(rng);
            long streamId = step * 4;
            byte[] section = encoder.EncodeSection(fields);
            byte[] stream = encoder.TakeEncoderStream();
            var collector = new FieldCollector();
            QpackDecodeResult result;

            if (rng.Next(2) == 0)
            {
                // Section first: it blocks if it needs inserts still in flight.
                result = decoder.DecodeFieldSection(streamId, section, collector);
                if (result.RequiredInsertCount > decoder.InsertCount)
                {
                    Assert.Equal(QpackDecodeStatus.Blocked, result.Status);
                    Assert.Empty(collector.Fields);
                }

                Feed(decoder, stream, rng);
                if (result.Status == QpackDecodeStatus.Blocked)
                {
                    blockedSections++;
                    Assert.True(decoder.InsertCount >= result.RequiredInsertCount);
                    result = decoder.DecodeFieldSection(streamId, section, collector);
                }
            }
            else
            {
                Feed(decoder, stream, rng);
                result = decoder.DecodeFieldSection(streamId, section, collector);
            }

            Assert.True(result.Status == QpackDecodeStatus.Completed, $"step {step}: {result}");
            dynamicSections += result.RequiredInsertCount > 0 ? 1 : 0;
            Assert.Equal(fields, collector.Fields);
            Assert.Equal(0, decoder.BlockedStreamCount);
            Assert.Equal(encoder.InsertCount, decoder.InsertCount);
            Assert.Equal(encoder.Size, decoder.TableSize);

            if (rng.Next(3) == 0)
            {
                decoder.DrainDecoderStream();
                Assert.Equal(decoder.InsertCount, decoder.KnownReceivedCount);
            }
        }

        // The run really used the dynamic table, blocked, and (for small tables) wrapped the encoded Insert Count.
        Assert.True(dynamicSections > 100, $"{dynamicSections} sections referenced the dynamic table");
        Assert.True(blockedSections > 20, $"{blockedSections} sections blocked");
        Assert.True(encoder.InsertCount > 2 * (maxCapacity / 32) || maxCapacity > 1000, $"{encoder.InsertCount} inserts");
    }

    [Fact]
    public void Fuzz_MutatedSections_OnlyDocumentedOutcomes()
    {
        var rng = new Random(77);
        const long maxCapacity = 300;
        var encoder = new TestDynamicEncoder(rng, maxCapacity);
        encoder.SetCapacity(maxCapacity);
        var sections = new List<byte[]>();
        var stream = new List<byte>();
        for (int i = 0; i < 60; i++)
        {
            sections.Add(encoder.EncodeSection(RandomFields(rng)));
            stream.AddRange(encoder.TakeEncoderStream());
        }

        byte[] encoderStream = stream.ToArray();
        for (int iteration = 0; iteration < 3000; iteration++)
        {
            var decoder = new QpackDecoder(maxCapacity, maxBlockedStreams: 2, maxFieldSectionSize: rng.Next(2) == 0 ? long.MaxValue : rng.Next(0, 400));
            int fed = rng.Next(3) == 0 ? rng.Next(encoderStream.Length + 1) : encoderStream.Length;
            Assert.True(decoder.ProcessEncoderStream(encoderStream.AsSpan(0, fed), out _));
            byte[] mutated = Mutate(rng, sections[rng.Next(sections.Count)]);
            var collector = new FieldCollector();
            QpackDecodeResult result = decoder.DecodeFieldSection(rng.Next(0, 1000), mutated, collector);
            switch (result.Status)
            {
                case QpackDecodeStatus.Error:
                    Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, result.ErrorCode);
                    Assert.NotNull(result.Error.Message);
                    break;
                case QpackDecodeStatus.Blocked:
                    Assert.Empty(collector.Fields);
                    Assert.True(result.RequiredInsertCount > decoder.InsertCount);
                    break;
                case QpackDecodeStatus.FieldSectionTooLarge:
                    Assert.True(result.FieldSectionSize > decoder.MaxFieldSectionSize);
                    break;
                default:
                    Assert.True(result.FieldSectionSize <= decoder.MaxFieldSectionSize);
                    break;
            }

            decoder.DrainDecoderStream();
        }
    }

    [Fact]
    public void Fuzz_MutatedEncoderStreams_OnlyEncoderStreamErrors()
    {
        var rng = new Random(78);
        const long maxCapacity = 500;
        var encoder = new TestDynamicEncoder(rng, maxCapacity);
        encoder.SetCapacity(maxCapacity);
        var sections = new List<byte[]>();
        var stream = new List<byte>();
        for (int i = 0; i < 40; i++)
        {
            sections.Add(encoder.EncodeSection(RandomFields(rng)));
            stream.AddRange(encoder.TakeEncoderStream());
        }

        byte[] encoderStream = stream.ToArray();
        for (int iteration = 0; iteration < 3000; iteration++)
        {
            var decoder = new QpackDecoder(maxCapacity, maxBlockedStreams: 100);
            byte[] mutated = Mutate(rng, encoderStream);
            int offset = 0;
            bool failed = false;
            while (offset < mutated.Length && !failed)
            {
                int take = Math.Min(mutated.Length - offset, rng.Next(1, 64));
                if (!decoder.ProcessEncoderStream(mutated.AsSpan(offset, take), out QpackError error))
                {
                    Assert.Equal(Http3ErrorCode.QpackEncoderStreamError, error.Code);
                    failed = true;
                }

                offset += take;
            }

            Assert.True(decoder.TableSize <= decoder.TableCapacity);
            Assert.True(decoder.TableCapacity <= maxCapacity);

            // Sections against a possibly corrupted table: any documented outcome, never an exception.
            for (int i = 0; i < 3; i++)
            {
                QpackDecodeResult result = decoder.DecodeFieldSection(i * 4, sections[rng.Next(sections.Count)], new FieldCollector());
                if (result.Status == QpackDecodeStatus.Error)
                {
                    Assert.True(result.ErrorCode is Http3ErrorCode.QpackDecompressionFailed or Http3ErrorCode.QpackEncoderStreamError);
                }
            }
        }
    }

    [Fact]
    public void Fuzz_RandomBytes_NeverThrow()
    {
        var rng = new Random(79);
        for (int iteration = 0; iteration < 5000; iteration++)
        {
            var decoder = new QpackDecoder(rng.Next(0, 2) == 0 ? 0 : 4096, maxBlockedStreams: rng.Next(0, 3), maxFieldSectionSize: rng.Next(0, 2000));
            var bytes = new byte[rng.Next(0, 80)];
            rng.NextBytes(bytes);
            if (!decoder.ProcessEncoderStream(bytes, out QpackError error))
            {
                Assert.Equal(Http3ErrorCode.QpackEncoderStreamError, error.Code);
            }

            rng.NextBytes(bytes);
            QpackDecodeResult result = decoder.DecodeFieldSection(0, bytes, new FieldCollector());
            Assert.True(Enum.IsDefined(result.Status));
        }
    }

    private static void Feed(QpackDecoder decoder, byte[] stream, Random rng)
    {
        int offset = 0;
        while (offset < stream.Length)
        {
            int take = Math.Min(stream.Length - offset, rng.Next(1, 30));
            Assert.True(decoder.ProcessEncoderStream(stream.AsSpan(offset, take), out QpackError error), error.ToString());
            offset += take;
        }
    }

    private static List<(string Name, string Value)> RandomFields(Random rng)
    {
        var fields = new List<(string, string)>();
        int count = rng.Next(0, 8);
        for (int i = 0; i < count; i++)
        {
            string name = s_names[rng.Next(s_names.Length)];
            string value = rng.Next(3) switch
            {
                0 => "v" + rng.Next(0, 6),
                1 => "application/json",
                _ => new string((char)rng.Next('a', 'z' + 1), rng.Next(0, 40)),
            };
            fields.Add((name, value));
        }

        return fields;
    }

    private static byte[] Mutate(Random rng, byte[] original)
    {
        var bytes = new List<byte>(original);
        int mutations = rng.Next(1, 4);
        for (int m = 0; m < mutations; m++)
        {
            switch (rng.Next(5))
            {
                case 0 when bytes.Count > 0:
                    int index = rng.Next(bytes.Count);
                    bytes[index] ^= (byte)(1 << rng.Next(8));
                    break;
                case 1 when bytes.Count > 0:
                    bytes.RemoveRange(rng.Next(bytes.Count), 1);
                    break;
                case 2:
                    bytes.Insert(rng.Next(bytes.Count + 1), (byte)rng.Next(256));
                    break;
                case 3 when bytes.Count > 0:
                    int keep = rng.Next(bytes.Count);
                    bytes.RemoveRange(keep, bytes.Count - keep); // truncate
                    break;
                default:
                    if (bytes.Count > 0)
                    {
                        bytes[rng.Next(bytes.Count)] = (byte)rng.Next(256);
                    }

                    break;
            }
        }

        return bytes.ToArray();
    }
}
