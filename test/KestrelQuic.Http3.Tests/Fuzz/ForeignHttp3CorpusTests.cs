using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;
using KestrelQuic.Tests.Fuzz;

namespace KestrelQuic.Http3.Tests.Fuzz;

/// <summary>
/// The QPACK and HTTP/3-frame corpora hold inputs recorded from real peers, not only from our own encoder ("sim-*"):
/// "ngtcp2-*" from ngtcp2's server (nghttp3, which uses its dynamic table), "chromium-*" from headless Chromium as a
/// client (dynamic table, GREASE and PRIORITY_UPDATE frames on its control stream), "kestrel-*" from Kestrel's
/// server. They were recorded by the ForeignHttp3CaptureTests of KestrelQuic.Http.Tests (gtlsserver) and
/// KestrelQuic.AspNetCore.Tests (Chromium, Kestrel) over raw HTTP/3 exchanges, run with
/// KESTRELQUIC_FUZZ_EXPORT_CORPUS=DIR, and a few of the files copied here (see Corpus/README.md). This test checks that
/// each foreign file still is what the capture produced: a complete field section or a well-formed stream.
/// </summary>
public sealed class ForeignHttp3CorpusTests
{
    private static readonly string[] s_sources = ["ngtcp2", "chromium", "kestrel"];

    [Fact]
    public void QpackCorpus_ForeignFieldSections_DecodeCompletely()
    {
        foreach (string source in s_sources)
        {
            string[] files = Directory.GetFiles(FuzzRunner.CorpusDirectory("qpack"), source + "-*.bin");
            Assert.NotEmpty(files);
            foreach (string file in files)
            {
                byte[] input = File.ReadAllBytes(file);
                int split = BinaryPrimitives.ReadUInt16BigEndian(input);
                var decoder = new QpackDecoder(maxTableCapacity: 4096, maxBlockedStreams: 16);
                Assert.True(decoder.ProcessEncoderStream(input.AsSpan(2, split), out QpackError error), $"{file}: {error.Message}");
                var fields = new Fields();
                QpackDecodeResult result = decoder.DecodeFieldSection(0, input.AsSpan(2 + split), fields);
                Assert.True(result.Status == QpackDecodeStatus.Completed, $"{file}: {result.Status}");

                // Requests from Chromium, responses from the servers; pseudo-headers first either way.
                Assert.Equal(source == "chromium" ? ":method" : ":status", fields.Lines[0].Key);
                Assert.All(fields.Lines, f => Assert.Equal(f.Key.ToLowerInvariant(), f.Key));
                if (source != "kestrel") Assert.True(decoder.InsertCount > 0, $"{file}: {source} uses its dynamic table");
            }
        }
    }

    [Fact]
    public void FrameCorpus_ForeignStreams_ReadWithoutErrors()
    {
        foreach (string source in s_sources)
        {
            string[] files = Directory.GetFiles(FuzzRunner.CorpusDirectory("http3-frames"), source + "-*.bin");
            Assert.Contains(files, f => (File.ReadAllBytes(f)[0] & 3) == (int)Http3StreamKind.Control);
            Assert.Contains(files, f => (File.ReadAllBytes(f)[0] & 3) == (int)Http3StreamKind.Request);
            foreach (string file in files)
            {
                byte[] input = File.ReadAllBytes(file);
                var kind = (Http3StreamKind)(input[0] & 3);
                var reader = new Http3FrameReader(kind, isClient: (input[0] & 4) == 0, maxBufferedPayloadLength: 4096);
                var types = new List<long>();
                reader.FrameHeaderRead = (type, _) => types.Add(type);
                var buffer = new ReadOnlySequence<byte>(input, 1, input.Length - 1);
                Http3FrameReadStatus status;
                Http3ErrorCode error;
                do
                {
                    status = reader.TryReadFrame(ref buffer, out _, out error);
                }
                while (status == Http3FrameReadStatus.Frame);

                Assert.True(status == Http3FrameReadStatus.NeedMoreData, $"{file}: {status} {error}");
                Assert.True(buffer.IsEmpty, $"{file}: a truncated frame");
                Assert.Equal(kind == Http3StreamKind.Control ? Http3FrameType.Settings : Http3FrameType.Headers, types[0]);
                if (kind == Http3StreamKind.Request) Assert.Equal(Http3ErrorCode.NoError, reader.CheckEndOfStream(buffer));
            }
        }
    }

    private sealed class Fields : IQpackFieldHandler
    {
        public List<KeyValuePair<string, string>> Lines { get; } = [];

        public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Lines.Add(new(Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));
    }
}
