using System.Buffers;
using System.Buffers.Binary;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;
using KestrelQuic.Http3.Tests.Qpack;
using KestrelQuic.Tests.Fuzz;
using Xunit.Abstractions;

namespace KestrelQuic.Http3.Tests.Fuzz;

/// <summary>
/// Mutation fuzzing of the QPACK decoder and the HTTP/3 frame reader (the runner, budget and crash files are shared
/// with the transport's fuzz tests, see FuzzRunner). Both are also checked differentially: the same bytes fed whole
/// and split into segments must give the same result.
/// </summary>
public sealed class Http3FuzzTests(ITestOutputHelper output)
{
    private const long MaxTableCapacity = 4096;
    private const long MaxFieldSectionSize = 512; // small, so that duplicated lines reach FieldSectionTooLarge

    private static readonly HashSet<Http3ErrorCode> s_frameErrors =
    [
        Http3ErrorCode.FrameUnexpected,
        Http3ErrorCode.FrameError,
        Http3ErrorCode.ExcessiveLoad,
        Http3ErrorCode.IdError,
        Http3ErrorCode.SettingsError,
        Http3ErrorCode.MissingSettings,
    ];

    [Fact]
    public void QpackDecoder() => FuzzRunner.Run(
        new FuzzTarget
        {
            Name = "qpack",
            Seeds = QpackSeeds(),
            MaxLength = 4096,
            MaxAllocatedBytesPerInput = 1 << 20,
            Execute = DecodeQpack,
        },
        output,
        minimumMutations: 20_000);

    /// <summary>Input: [u16 encoder-stream length] [encoder-stream bytes] [one encoded field section].</summary>
    private static byte[] QpackInput(byte[] encoderStream, byte[] section)
    {
        byte[] input = new byte[2 + encoderStream.Length + section.Length];
        BinaryPrimitives.WriteUInt16BigEndian(input, (ushort)encoderStream.Length);
        encoderStream.CopyTo(input, 2);
        section.CopyTo(input, 2 + encoderStream.Length);
        return input;
    }

    private static List<byte[]> QpackSeeds()
    {
        // RFC 9204 Appendix B.1-B.5.
        byte[] b2 = Convert.FromHexString("3fbd01c00f7777772e6578616d706c652e636f6dc10c2f73616d706c652f70617468");
        byte[] b3 = Convert.FromHexString("4a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        byte[] b5 = Convert.FromHexString("810d637573746f6d2d76616c756532");
        var seeds = new List<byte[]>
        {
            QpackInput([], Convert.FromHexString("0000510b2f696e6465782e68746d6c")),
            QpackInput(b2, Convert.FromHexString("03811011")),
            QpackInput([.. b2, .. b3, 0x02], Convert.FromHexString("050080c181")),
            QpackInput([.. b2, .. b3, 0x02, .. b5], Convert.FromHexString("050080c181")),
        };

        KeyValuePair<string, string>[] request =
        [
            new(":method", "GET"), new(":scheme", "https"), new(":authority", "example.com"), new(":path", "/index.html?q=1"),
            new("user-agent", "kestrelquic-fuzz"), new("accept", "*/*"), new("x-custom", "v\u00e9"), new("cookie", "a=b; c=d"),
        ];
        seeds.Add(QpackInput([], new QpackEncoder(useHuffman: true).EncodeFieldSection(request)));
        seeds.Add(QpackInput([], new QpackEncoder(useHuffman: false).EncodeFieldSection(request)));

        // The dynamic table used the way servers use it: inserts, duplicates, post-base and relative references.
        var random = new Random(9204);
        var encoder = new TestDynamicEncoder(random, MaxTableCapacity);
        encoder.SetCapacity(MaxTableCapacity);
        for (int i = 0; i < 6; i++)
        {
            byte[] section = encoder.EncodeSection([(":status", "200"), ("content-type", "text/html"), ("x-id", $"value-{i}"), ("server", "kq")]);
            seeds.Add(QpackInput(encoder.TakeEncoderStream(), section));
        }

        return seeds;
    }

    private static string DecodeQpack(byte[] input)
    {
        if (input.Length < 2)
        {
            return "too-short";
        }

        int split = Math.Min(BinaryPrimitives.ReadUInt16BigEndian(input), input.Length - 2);
        byte[] encoderStream = input[2..(2 + split)];
        byte[] section = input[(2 + split)..];

        var whole = new QpackDecoder(MaxTableCapacity, maxBlockedStreams: 4, MaxFieldSectionSize);
        var segmented = new QpackDecoder(MaxTableCapacity, maxBlockedStreams: 4, MaxFieldSectionSize);
        bool encoderOk = whole.ProcessEncoderStream(encoderStream, out QpackError encoderError);

        // The encoder stream may arrive in any split: byte by byte here.
        bool segmentedOk = true;
        QpackError segmentedError = default;
        for (int i = 0; i < encoderStream.Length && segmentedOk; i++)
        {
            segmentedOk = segmented.ProcessEncoderStream(encoderStream.AsSpan(i, 1), out segmentedError);
        }

        Assert.Equal(encoderOk, segmentedOk);
        if (!encoderOk)
        {
            Assert.Equal(Http3ErrorCode.QpackEncoderStreamError, encoderError.Code);
            Assert.Equal(encoderError.Code, segmentedError.Code);
            return "encoder-stream-error";
        }

        Assert.Equal(whole.InsertCount, segmented.InsertCount);
        Assert.InRange(whole.TableSize, 0, MaxTableCapacity);

        var wholeFields = new BoundedCollector();
        var segmentedFields = new BoundedCollector();
        QpackDecodeResult result = whole.DecodeFieldSection(4, section, wholeFields);
        QpackDecodeResult segmentedResult = segmented.DecodeFieldSection(4, Segments(section), segmentedFields);
        Assert.Equal(result.Status, segmentedResult.Status);
        Assert.Equal(result.ErrorCode, segmentedResult.ErrorCode);
        if (result.Status == QpackDecodeStatus.Completed)
        {
            Assert.Equal(wholeFields.Lines, segmentedFields.Lines);
            Assert.InRange(wholeFields.Size, 0, MaxFieldSectionSize);
        }

        // Decoder-stream output is always writable (Section Acknowledgment, Insert Count Increment).
        whole.WriteDecoderInstructions(new ArrayBufferWriter<byte>());
        if (result.Status == QpackDecodeStatus.Error)
        {
            Assert.Equal(Http3ErrorCode.QpackDecompressionFailed, result.ErrorCode);
            return "decompression-failed";
        }

        if (result.Status == QpackDecodeStatus.Blocked)
        {
            whole.AbandonStream(4);
            Assert.Equal(0, whole.BlockedStreamCount);
        }

        return result.Status.ToString();
    }

    [Fact]
    public void Http3FrameReader() => FuzzRunner.Run(
        new FuzzTarget
        {
            Name = "http3-frames",
            Seeds = FrameSeeds(),
            MaxLength = 8192,
            MaxAllocatedBytesPerInput = 1 << 20,
            Execute = ReadFrames,
        },
        output,
        minimumMutations: 20_000);

    private static List<byte[]> FrameSeeds()
    {
        byte[] fieldSection = new QpackEncoder().EncodeFieldSection([new(":status", "200"), new("content-type", "text/plain")]);
        var control = new ArrayBufferWriter<byte>();
        var settings = new Http3Settings { QpackMaxTableCapacity = 4096, QpackBlockedStreams = 16, MaxFieldSectionSize = 65536 };
        settings.Others.Add(new(0x21, 7)); // reserved setting (RFC 9114 §7.2.4.1)
        Http3FrameWriter.WriteSettingsFrame(control, settings);
        Http3FrameWriter.WriteReservedFrame(control, 3, "grease"u8);
        Http3FrameWriter.WriteMaxPushIdFrame(control, 8);
        Http3FrameWriter.WriteCancelPushFrame(control, 2);
        Http3FrameWriter.WriteGoAwayFrame(control, 4);

        var request = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(request, fieldSection);
        Http3FrameWriter.WriteDataFrame(request, "hello, "u8);
        Http3FrameWriter.WriteDataFrame(request, "world"u8);
        Http3FrameWriter.WritePushPromiseFrame(request, 1, fieldSection);
        Http3FrameWriter.WriteHeadersFrame(request, fieldSection); // trailers

        var push = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(push, fieldSection);
        Http3FrameWriter.WriteDataFrame(push, new byte[300]);

        // Input: [configuration: bits 0-1 stream kind, bit 2 we are the server] [stream bytes].
        return
        [
            [(byte)Http3StreamKind.Control, .. control.WrittenSpan],
            [(byte)Http3StreamKind.Control | 4, .. control.WrittenSpan],
            [(byte)Http3StreamKind.Request, .. request.WrittenSpan],
            [(byte)Http3StreamKind.Request | 4, .. request.WrittenSpan],
            [(byte)Http3StreamKind.Push, .. push.WrittenSpan],
        ];
    }

    private static string ReadFrames(byte[] input)
    {
        if (input.Length == 0)
        {
            return "empty";
        }

        var kind = (Http3StreamKind)((input[0] & 3) % 3);
        bool isClient = (input[0] & 4) == 0;
        byte[] stream = input[1..];

        // The same bytes delivered at once and in small deterministic pieces must read the same way.
        (string whole, List<long> wholeFrames) = ReadStream(kind, isClient, stream, chunk: stream.Length);
        (string pieces, List<long> pieceFrames) = ReadStream(kind, isClient, stream, chunk: 1 + (stream.Length % 7));
        Assert.Equal(whole, pieces);

        // DATA may arrive in different chunks; every other frame must be identical.
        Assert.Equal(wholeFrames.Where(t => t != Http3FrameType.Data), pieceFrames.Where(t => t != Http3FrameType.Data));
        return whole;
    }

    private static (string Outcome, List<long> Frames) ReadStream(Http3StreamKind kind, bool isClient, byte[] stream, int chunk)
    {
        var reader = new Http3FrameReader(kind, isClient, maxBufferedPayloadLength: 4096);
        var frames = new List<long>();
        int delivered = 0;
        int consumed = 0;
        while (true)
        {
            delivered = Math.Min(stream.Length, delivered + Math.Max(chunk, 1));
            var buffer = new ReadOnlySequence<byte>(stream, consumed, delivered - consumed);
            while (true)
            {
                long before = buffer.Length;
                Http3FrameReadStatus status = reader.TryReadFrame(ref buffer, out Http3Frame frame, out Http3ErrorCode error);
                consumed += (int)(before - buffer.Length);
                if (status == Http3FrameReadStatus.Error)
                {
                    Assert.True(s_frameErrors.Contains(error), $"unexpected error {error}");
                    return ("error:" + error, frames);
                }

                if (status == Http3FrameReadStatus.NeedMoreData)
                {
                    break;
                }

                // Progress: every frame or DATA chunk consumes bytes, or is an empty DATA frame / end of one.
                Assert.True(before > buffer.Length || frame.Type == Http3FrameType.Data, "no progress");
                Assert.True(frames.Count <= stream.Length + 1, "more frames than bytes");
                frames.Add(frame.Type);
                if (frame.Type == Http3FrameType.Settings)
                {
                    Assert.NotNull(frame.Settings);
                    Assert.True(Http3Settings.TryParse(frame.Payload, out _, out _));
                }
            }

            if (delivered == stream.Length)
            {
                Http3ErrorCode end = reader.CheckEndOfStream(new ReadOnlySequence<byte>(stream, consumed, stream.Length - consumed));
                return ("end:" + end, frames);
            }
        }
    }

    private static ReadOnlySequence<byte> Segments(byte[] data)
    {
        if (data.Length < 3)
        {
            return new ReadOnlySequence<byte>(data);
        }

        int a = data.Length / 3, b = 2 * data.Length / 3;
        var first = new Segment(data.AsMemory(0, a), 0);
        Segment second = first.Append(data.AsMemory(a, b - a));
        Segment third = second.Append(data.AsMemory(b));
        return new ReadOnlySequence<byte>(first, 0, third, third.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>Collects field lines and their RFC 9114 §4.2.2 size.</summary>
    private sealed class BoundedCollector : IQpackFieldHandler
    {
        public List<string> Lines { get; } = [];

        public long Size { get; private set; }

        public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
        {
            Size += name.Length + value.Length + 32;
            Lines.Add(Convert.ToHexString(name) + ":" + Convert.ToHexString(value));
        }
    }
}
