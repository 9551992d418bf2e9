using System.Buffers;
using KestrelQuic.Http3.Frames;

namespace KestrelQuic.Http3.Tests.Frames;

public sealed class Http3FrameTests
{
    [Fact]
    public void Settings_RoundTrip()
    {
        var settings = new Http3Settings { QpackMaxTableCapacity = 4096, MaxFieldSectionSize = 65536, QpackBlockedStreams = 100 };
        settings.Others.Add(new(0x08, 1));                      // SETTINGS_ENABLE_CONNECT_PROTOCOL
        settings.Others.Add(new(Http3Reserved.GetValue(7), 42)); // grease
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteSettingsFrame(writer, settings);

        var reader = new Http3FrameReader(Http3StreamKind.Control);
        var buffer = new ReadOnlySequence<byte>(writer.WrittenMemory);
        Assert.Equal(Http3FrameReadStatus.Frame, reader.TryReadFrame(ref buffer, out Http3Frame frame, out _));
        Assert.True(buffer.IsEmpty);
        Assert.Equal(Http3FrameType.Settings, frame.Type);
        Http3Settings parsed = frame.Settings!;
        Assert.Equal(4096, parsed.QpackMaxTableCapacity);
        Assert.Equal(65536, parsed.MaxFieldSectionSize);
        Assert.Equal(100, parsed.QpackBlockedStreams);
        Assert.Equal(settings.Others, parsed.Others);
        Assert.True(parsed.TryGetValue(0x08, out long connect));
        Assert.Equal(1, connect);
        Assert.False(parsed.TryGetValue(0x33, out _));
    }

    [Fact]
    public void FrameHeaderRead_OncePerFrame_IncludingSkippedOnes_BeforeDataPayloadArrives()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(writer, [0x00, 0x00, 0xd9]);
        Http3FrameWriter.WriteReservedFrame(writer, 3, "grease"u8);
        Http3FrameWriter.WriteFrameHeader(writer, 0x7a, 2); // an unknown extension frame
        writer.Write<byte>([1, 2]);
        Http3FrameWriter.WriteDataFrame(writer, new byte[300]);
        Http3FrameWriter.WriteDataFrame(writer, []);
        byte[] stream = writer.WrittenSpan.ToArray();

        var reader = new Http3FrameReader(Http3StreamKind.Request);
        var seen = new List<(long Type, long Length, int DataChunksBefore)>();
        int chunks = 0;
        reader.FrameHeaderRead = (type, length) => seen.Add((type, length, chunks));

        // Byte by byte: headers split anywhere still give one call per frame, before the payload.
        int consumed = 0;
        for (int delivered = 1; delivered <= stream.Length; delivered++)
        {
            var buffer = new ReadOnlySequence<byte>(stream, consumed, delivered - consumed);
            while (true)
            {
                long before = buffer.Length;
                Http3FrameReadStatus status = reader.TryReadFrame(ref buffer, out Http3Frame frame, out _);
                consumed += (int)(before - buffer.Length);
                if (status != Http3FrameReadStatus.Frame) break;
                if (frame.Type == Http3FrameType.Data) chunks++;
            }
        }

        Assert.Equal(
            [
                (Http3FrameType.Headers, 3L, 0),
                (Http3Reserved.GetValue(3), 6L, 0),
                (0x7aL, 2L, 0),
                (Http3FrameType.Data, 300L, 0),
                (Http3FrameType.Data, 0L, 300),
            ],
            seen);
    }

    [Fact]
    public void Settings_DefaultsAreNotSent()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteSettingsFrame(writer, new Http3Settings());
        Assert.Equal("0400", Convert.ToHexStringLower(writer.WrittenSpan));
        Assert.True(Http3Settings.TryParse(ReadOnlySpan<byte>.Empty, out Http3Settings empty, out _));
        Assert.Equal(0, empty.QpackMaxTableCapacity);
        Assert.Equal(long.MaxValue, empty.MaxFieldSectionSize);
        Assert.Equal(0, empty.QpackBlockedStreams);
    }

    [Theory]
    [InlineData("0001", "HTTP/2 reserved 0x00")]
    [InlineData("0201", "SETTINGS_ENABLE_PUSH")]
    [InlineData("0324", "SETTINGS_MAX_CONCURRENT_STREAMS")]
    [InlineData("04" + "4100", "SETTINGS_INITIAL_WINDOW_SIZE")]
    [InlineData("0501", "SETTINGS_MAX_FRAME_SIZE")]
    [InlineData("0101" + "0102", "duplicate QPACK_MAX_TABLE_CAPACITY")]
    [InlineData("0610" + "0620", "duplicate MAX_FIELD_SECTION_SIZE")]
    [InlineData("2101" + "2102", "duplicate reserved identifier")]
    [InlineData("0801" + "0701" + "0800", "duplicate extension identifier")]
    public void Settings_Invalid_IsSettingsError(string payloadHex, string because)
    {
        Assert.False(Http3Settings.TryParse(Convert.FromHexString(payloadHex), out _, out Http3ErrorCode error), because);
        Assert.Equal(Http3ErrorCode.SettingsError, error);
    }

    [Theory]
    [InlineData("01")]
    [InlineData("0140")]
    [InlineData("06c0000000")]
    public void Settings_Truncated_IsFrameError(string payloadHex)
    {
        Assert.False(Http3Settings.TryParse(Convert.FromHexString(payloadHex), out _, out Http3ErrorCode error));
        Assert.Equal(Http3ErrorCode.FrameError, error);
    }

    [Fact]
    public void Settings_UnknownIdentifiersAreKept()
    {
        Assert.True(Http3Settings.TryParse(Convert.FromHexString("3301" + "404005" + "0a0b"), out Http3Settings settings, out _));
        Assert.Equal([new(0x33, 1), new(0x40, 5), new(0x0a, 0x0b)], settings.Others);
    }

    [Fact]
    public void Settings_WriteRejectsForbiddenIdentifiers()
    {
        var writer = new ArrayBufferWriter<byte>();
        var reserved = new Http3Settings();
        reserved.Others.Add(new(0x02, 1));
        Assert.Throws<InvalidOperationException>(() => Http3FrameWriter.WriteSettingsFrame(writer, reserved));
        var duplicate = new Http3Settings();
        duplicate.Others.Add(new(0x21, 1));
        duplicate.Others.Add(new(0x21, 2));
        Assert.Throws<InvalidOperationException>(() => Http3FrameWriter.WriteSettingsFrame(writer, duplicate));
    }

    [Fact]
    public void ControlStream_FramesRoundTrip_ByteByByte()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteSettingsFrame(writer, new Http3Settings { QpackMaxTableCapacity = 100 });
        Http3FrameWriter.WriteReservedFrame(writer, 3, new byte[300]);
        Http3FrameWriter.WriteFrameHeader(writer, 0xF0700, 2); // PRIORITY_UPDATE (RFC 9218): unknown here, skipped
        writer.Write(new byte[] { 1, 2 });
        Http3FrameWriter.WriteCancelPushFrame(writer, 7);
        Http3FrameWriter.WriteGoAwayFrame(writer, 16384);
        byte[] bytes = writer.WrittenSpan.ToArray();

        var frames = ReadAll(new Http3FrameReader(Http3StreamKind.Control), bytes, chunk: 1);
        Assert.Equal([Http3FrameType.Settings, Http3FrameType.CancelPush, Http3FrameType.GoAway], frames.Select(f => f.Type));
        Assert.Equal(7, frames[1].Id);
        Assert.Equal(16384, frames[2].Id);

        // Any chunking gives the same frames.
        var rng = new Random(9114);
        for (int i = 0; i < 100; i++)
        {
            var again = ReadAll(new Http3FrameReader(Http3StreamKind.Control), bytes, chunk: rng.Next(1, 40));
            Assert.Equal(frames.Select(f => (f.Type, f.Id)), again.Select(f => (f.Type, f.Id)));
        }
    }

    [Fact]
    public void RequestStream_HeadersAndChunkedData()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(writer, [0x00, 0x00, 0xd9]);
        Http3FrameWriter.WriteDataFrame(writer, Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray());
        Http3FrameWriter.WriteDataFrame(writer, []);
        Http3FrameWriter.WritePushPromiseFrame(writer, 3, [0x00, 0x00, 0xd1]);
        Http3FrameWriter.WriteHeadersFrame(writer, [0x00, 0x00]);
        byte[] bytes = writer.WrittenSpan.ToArray();

        var reader = new Http3FrameReader(Http3StreamKind.Request, isClient: true);
        var frames = ReadAll(reader, bytes, chunk: 7);
        Assert.Equal(Http3FrameType.Headers, frames[0].Type);
        Assert.Equal(new byte[] { 0x00, 0x00, 0xd9 }, frames[0].Payload);

        var data = frames.Where(f => f.Type == Http3FrameType.Data).ToList();
        Assert.Equal(Enumerable.Range(0, 1000).Select(i => (byte)i), data.Take(data.Count - 1).SelectMany(f => f.Payload));
        Assert.True(data.Count > 100);
        Assert.All(data.Take(data.Count - 2), f => Assert.False(f.IsEndOfFrame));
        Assert.True(data[^2].IsEndOfFrame);
        Assert.True(data[^1].IsEndOfFrame);
        Assert.Empty(data[^1].Payload);

        var push = frames.Single(f => f.Type == Http3FrameType.PushPromise);
        Assert.Equal(3, push.Id);
        Assert.Equal(new byte[] { 0x00, 0x00, 0xd1 }, push.Payload);
        Assert.Equal(Http3FrameType.Headers, frames[^1].Type);
        Assert.Equal(Http3ErrorCode.NoError, reader.CheckEndOfStream(ReadOnlySequence<byte>.Empty));
    }

    [Fact]
    public void PartialBuffers_NeedMoreData_WithoutConsumingHeaders()
    {
        byte[] frame = [0x01, 0x03, 0x00, 0x00, 0xd1];
        var reader = new Http3FrameReader(Http3StreamKind.Request);
        for (int cut = 0; cut < frame.Length; cut++)
        {
            var partial = new ReadOnlySequence<byte>(frame, 0, cut);
            Assert.Equal(Http3FrameReadStatus.NeedMoreData, reader.TryReadFrame(ref partial, out _, out _));
            Assert.Equal(cut, partial.Length); // nothing consumed: retried with more bytes
            Assert.Equal(cut == 0 ? Http3ErrorCode.NoError : Http3ErrorCode.FrameError, reader.CheckEndOfStream(partial));
        }

        var whole = new ReadOnlySequence<byte>(frame);
        Assert.Equal(Http3FrameReadStatus.Frame, reader.TryReadFrame(ref whole, out Http3Frame read, out _));
        Assert.Equal(3, read.Length);
        Assert.True(whole.IsEmpty);

        // Truncated DATA at end of stream.
        var dataReader = new Http3FrameReader(Http3StreamKind.Request);
        var data = new ReadOnlySequence<byte>([0x00, 0x05, 0x01, 0x02]);
        Assert.Equal(Http3FrameReadStatus.Frame, dataReader.TryReadFrame(ref data, out Http3Frame chunk, out _));
        Assert.Equal(2, chunk.Payload.Length);
        Assert.True(dataReader.IsInsideFrame);
        Assert.Equal(Http3ErrorCode.FrameError, dataReader.CheckEndOfStream(data));
    }

    [Fact]
    public void MultiSegmentSequences_Parse()
    {
        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteSettingsFrame(writer, new Http3Settings { QpackMaxTableCapacity = 1_000_000, QpackBlockedStreams = 20_000 });
        Http3FrameWriter.WriteGoAwayFrame(writer, 1L << 40);
        byte[] bytes = writer.WrittenSpan.ToArray();
        ReadOnlySequence<byte> sequence = Split(bytes, 1);
        var reader = new Http3FrameReader(Http3StreamKind.Control);
        Assert.Equal(Http3FrameReadStatus.Frame, reader.TryReadFrame(ref sequence, out Http3Frame settings, out _));
        Assert.Equal(1_000_000, settings.Settings!.QpackMaxTableCapacity);
        Assert.Equal(Http3FrameReadStatus.Frame, reader.TryReadFrame(ref sequence, out Http3Frame goAway, out _));
        Assert.Equal(1L << 40, goAway.Id);
        Assert.True(sequence.IsEmpty);

        ReadOnlySequence<byte> header = Split([0x80, 0x00, 0x00, 0x21, 0x44, 0x00], 1);
        Assert.True(Http3FrameHeaderParser.TryReadFrameHeader(ref header, out long type, out long length));
        Assert.Equal(0x21, type);
        Assert.Equal(0x400, length);
        Assert.True(header.IsEmpty);
    }

    [Theory]
    [InlineData(Http3StreamKind.Control, "0000", Http3ErrorCode.MissingSettings)]
    [InlineData(Http3StreamKind.Control, "2100", Http3ErrorCode.MissingSettings)]
    [InlineData(Http3StreamKind.Control, "0400" + "0400", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Control, "0400" + "0000", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Control, "0400" + "0100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Control, "0400" + "050100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Control, "0400" + "0d0100", Http3ErrorCode.FrameUnexpected)] // MAX_PUSH_ID to a client
    [InlineData(Http3StreamKind.Control, "0400" + "0200", Http3ErrorCode.FrameUnexpected)]  // HTTP/2 PRIORITY
    [InlineData(Http3StreamKind.Control, "0400" + "0600", Http3ErrorCode.FrameUnexpected)]  // HTTP/2 PING
    [InlineData(Http3StreamKind.Control, "0400" + "0800", Http3ErrorCode.FrameUnexpected)]  // HTTP/2 WINDOW_UPDATE
    [InlineData(Http3StreamKind.Control, "0400" + "0900", Http3ErrorCode.FrameUnexpected)]  // HTTP/2 CONTINUATION
    [InlineData(Http3StreamKind.Control, "0400" + "070101", Http3ErrorCode.IdError)]        // GOAWAY with a non-request stream ID
    [InlineData(Http3StreamKind.Control, "0400" + "07020000", Http3ErrorCode.FrameError)]   // trailing byte
    [InlineData(Http3StreamKind.Control, "0400" + "0700", Http3ErrorCode.FrameError)]       // empty
    [InlineData(Http3StreamKind.Control, "0400" + "030109", Http3ErrorCode.NoError)]
    [InlineData(Http3StreamKind.Control, "0400" + "0309", Http3ErrorCode.FrameError)]       // longer than any integer
    [InlineData(Http3StreamKind.Control, "04020201", Http3ErrorCode.SettingsError)]
    [InlineData(Http3StreamKind.Control, "040101", Http3ErrorCode.FrameError)]
    [InlineData(Http3StreamKind.Request, "0400", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Request, "070100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Request, "030100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Request, "0d0100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Request, "0900", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Request, "0500", Http3ErrorCode.FrameError)]                // PUSH_PROMISE without push ID
    [InlineData(Http3StreamKind.Push, "050100", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Push, "0400", Http3ErrorCode.FrameUnexpected)]
    [InlineData(Http3StreamKind.Push, "3f00" + "0100", Http3ErrorCode.NoError)]
    [InlineData(Http3StreamKind.Request, "0180010001", Http3ErrorCode.ExcessiveLoad)]       // HEADERS of 65537 bytes > limit
    public void FrameRules(Http3StreamKind kind, string hex, Http3ErrorCode expected)
    {
        var reader = new Http3FrameReader(kind, isClient: true);
        var buffer = new ReadOnlySequence<byte>(Convert.FromHexString(hex));
        Http3ErrorCode error = Http3ErrorCode.NoError;
        while (true)
        {
            Http3FrameReadStatus status = reader.TryReadFrame(ref buffer, out _, out error);
            if (status != Http3FrameReadStatus.Frame)
            {
                break;
            }
        }

        Assert.Equal(expected, error);
        if (expected != Http3ErrorCode.NoError)
        {
            // Sticky.
            var more = new ReadOnlySequence<byte>([0x00, 0x00]);
            Assert.Equal(Http3FrameReadStatus.Error, reader.TryReadFrame(ref more, out _, out Http3ErrorCode again));
            Assert.Equal(expected, again);
        }
    }

    [Fact]
    public void ServerRoleRules()
    {
        // A server receives MAX_PUSH_ID on the control stream, but PUSH_PROMISE on a request stream is unexpected.
        var control = new Http3FrameReader(Http3StreamKind.Control, isClient: false);
        var buffer = new ReadOnlySequence<byte>(Convert.FromHexString("0400" + "0d0105" + "070103"));
        Assert.Equal(Http3FrameReadStatus.Frame, control.TryReadFrame(ref buffer, out _, out _));
        Assert.Equal(Http3FrameReadStatus.Frame, control.TryReadFrame(ref buffer, out Http3Frame maxPushId, out _));
        Assert.Equal(5, maxPushId.Id);
        Assert.Equal(Http3FrameReadStatus.Frame, control.TryReadFrame(ref buffer, out Http3Frame goAway, out _));
        Assert.Equal(3, goAway.Id); // a push ID from a client: any value
        Assert.Equal(Http3ErrorCode.ClosedCriticalStream, control.CheckEndOfStream(buffer));

        var request = new Http3FrameReader(Http3StreamKind.Request, isClient: false);
        buffer = new ReadOnlySequence<byte>(Convert.FromHexString("050100"));
        Assert.Equal(Http3FrameReadStatus.Error, request.TryReadFrame(ref buffer, out _, out Http3ErrorCode error));
        Assert.Equal(Http3ErrorCode.FrameUnexpected, error);
    }

    [Fact]
    public void StreamTypes()
    {
        Assert.Equal(Http3UnidirectionalStreamKind.Control, Http3StreamType.Classify(0x00));
        Assert.Equal(Http3UnidirectionalStreamKind.Push, Http3StreamType.Classify(0x01));
        Assert.Equal(Http3UnidirectionalStreamKind.QpackEncoder, Http3StreamType.Classify(0x02));
        Assert.Equal(Http3UnidirectionalStreamKind.QpackDecoder, Http3StreamType.Classify(0x03));
        Assert.Equal(Http3UnidirectionalStreamKind.Unknown, Http3StreamType.Classify(0x21));
        Assert.Equal(Http3UnidirectionalStreamKind.Unknown, Http3StreamType.Classify(0x54));

        var writer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteStreamType(writer, Http3StreamType.Push);
        writer.Write(new byte[] { 0x40, 0x10 }); // push ID 16
        ReadOnlySequence<byte> buffer = Split(writer.WrittenSpan.ToArray(), 1);
        Assert.True(Http3StreamHeaderReader.TryReadStreamType(ref buffer, out long type));
        Assert.Equal(Http3StreamType.Push, type);
        Assert.True(Http3StreamHeaderReader.TryReadPushId(ref buffer, out long pushId));
        Assert.Equal(16, pushId);
        Assert.True(buffer.IsEmpty);

        var partial = new ReadOnlySequence<byte>([0x40]);
        Assert.False(Http3StreamHeaderReader.TryReadStreamType(ref partial, out _));
        Assert.Equal(1, partial.Length);
    }

    [Fact]
    public void ReservedValues()
    {
        Assert.Equal(0x21, Http3Reserved.GetValue(0));
        Assert.Equal(0x40, Http3Reserved.GetValue(1));
        Assert.True(Http3FrameType.IsReserved(0x5f));
        Assert.False(Http3FrameType.IsReserved(0x20));
        Assert.True(Http3Reserved.IsReserved(Http3Reserved.GetValue(Http3Reserved.MaxN)));
        Assert.True(Http3Reserved.GetValue(Http3Reserved.MaxN) <= (1L << 62) - 1);
        Assert.True(Http3ErrorCodes.IsReserved(0x21 + (0x1f * 1000)));
        Assert.False(Http3ErrorCodes.IsReserved((long)Http3ErrorCode.NoError));
    }

    [Fact]
    public void ErrorCodes_MatchRfc()
    {
        Assert.Equal(0x100, (long)Http3ErrorCode.NoError);
        Assert.Equal(0x104, (long)Http3ErrorCode.ClosedCriticalStream);
        Assert.Equal(0x109, (long)Http3ErrorCode.SettingsError);
        Assert.Equal(0x10a, (long)Http3ErrorCode.MissingSettings);
        Assert.Equal(0x110, (long)Http3ErrorCode.VersionFallback);
        Assert.Equal(0x200, (long)Http3ErrorCode.QpackDecompressionFailed);
        Assert.Equal(0x201, (long)Http3ErrorCode.QpackEncoderStreamError);
        Assert.Equal(0x202, (long)Http3ErrorCode.QpackDecoderStreamError);
        Assert.Equal(20, Enum.GetValues<Http3ErrorCode>().Length);
    }

    [Fact]
    public void RandomBytes_NeverThrow()
    {
        var rng = new Random(31337);
        Http3ErrorCode[] allowed = Enum.GetValues<Http3ErrorCode>();
        for (int i = 0; i < 5000; i++)
        {
            var bytes = new byte[rng.Next(0, 64)];
            rng.NextBytes(bytes);
            if (rng.Next(2) == 0 && bytes.Length > 2)
            {
                bytes[0] = (byte)rng.Next(0, 14);
                bytes[1] = (byte)rng.Next(0, 10);
            }

            var kind = (Http3StreamKind)rng.Next(3);
            var reader = new Http3FrameReader(kind, isClient: rng.Next(2) == 0, maxBufferedPayloadLength: 32);
            ReadAll(reader, bytes, rng.Next(1, 10), allowErrors: true);
            Http3Settings.TryParse(bytes, out _, out Http3ErrorCode settingsError);
            Assert.Contains(settingsError, allowed);
        }
    }

    private static List<(long Type, long Id, byte[] Payload, bool IsEndOfFrame)> ReadAllFrames(Http3FrameReader reader, byte[] bytes, int chunk, bool allowErrors)
    {
        var frames = new List<(long, long, byte[], bool)>();
        var pending = new List<byte>();
        int offset = 0;
        while (true)
        {
            int take = Math.Min(chunk, bytes.Length - offset);
            pending.AddRange(bytes.AsSpan(offset, take).ToArray());
            offset += take;
            var buffer = new ReadOnlySequence<byte>(pending.ToArray());
            while (true)
            {
                Http3FrameReadStatus status = reader.TryReadFrame(ref buffer, out Http3Frame frame, out Http3ErrorCode error);
                if (status == Http3FrameReadStatus.Error)
                {
                    Assert.True(allowErrors, error.ToString());
                    Assert.NotEqual(Http3ErrorCode.NoError, error);
                    return frames;
                }

                if (status == Http3FrameReadStatus.NeedMoreData)
                {
                    break;
                }

                frames.Add((frame.Type, frame.Id, frame.Payload.ToArray(), frame.IsEndOfFrame));
            }

            pending = [.. buffer.ToArray()];
            if (offset == bytes.Length)
            {
                if (!allowErrors)
                {
                    Assert.Empty(pending);
                }

                return frames;
            }
        }
    }

    private static List<(long Type, long Id, byte[] Payload, bool IsEndOfFrame)> ReadAll(Http3FrameReader reader, byte[] bytes, int chunk, bool allowErrors = false) =>
        ReadAllFrames(reader, bytes, chunk, allowErrors);

    private static ReadOnlySequence<byte> Split(byte[] bytes, int segmentLength)
    {
        Segment? first = null;
        Segment? last = null;
        for (int offset = 0; offset < bytes.Length; offset += segmentLength)
        {
            var memory = bytes.AsMemory(offset, Math.Min(segmentLength, bytes.Length - offset));
            if (first is null)
            {
                first = last = new Segment(memory);
            }
            else
            {
                last = last!.Append(memory);
            }
        }

        return first is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(first, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
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
