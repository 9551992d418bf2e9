using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Tests.Shared;

/// <summary>
/// Just enough HTTP/3 over a raw <see cref="QuicConnection"/> to record, byte for byte, what a real peer (Chromium,
/// Kestrel, ngtcp2's server) sends on its control, QPACK and request streams: the foreign inputs of the QPACK and
/// HTTP/3-frame fuzz corpora (KestrelQuic.Http3.Tests/Fuzz). Linked into the test projects that reach those peers.
/// </summary>
internal sealed class RawHttp3Peer : IAsyncDisposable
{
    /// <summary>What our SETTINGS offer: the fuzz targets decode with the same table capacity.</summary>
    public const long QpackMaxTableCapacity = 4096;

    private readonly QuicConnection _connection;
    private readonly Dictionary<long, MemoryStream> _peerStreams = new();
    private readonly Channel<QuicStream> _requests = Channel.CreateUnbounded<QuicStream>();
    private readonly CancellationTokenSource _stop = new();
    private Task? _acceptLoop;

    public RawHttp3Peer(QuicConnection connection) => _connection = connection;

    /// <summary>Bidirectional streams the peer opened (requests, when we are the server).</summary>
    public ChannelReader<QuicStream> Requests => _requests.Reader;

    /// <summary>Opens our control stream with SETTINGS and our QPACK streams, and starts recording the peer's streams.</summary>
    public async Task StartAsync()
    {
        var control = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteStreamType(control, Http3StreamType.Control);
        Http3FrameWriter.WriteSettingsFrame(control, new Http3Settings { QpackMaxTableCapacity = QpackMaxTableCapacity, QpackBlockedStreams = 16 });
        await (await _connection.OpenOutboundStreamAsync(QuicStreamType.Unidirectional)).WriteAsync(control.WrittenMemory);
        foreach (long type in new[] { Http3StreamType.QpackEncoder, Http3StreamType.QpackDecoder })
        {
            var header = new ArrayBufferWriter<byte>();
            Http3FrameWriter.WriteStreamType(header, type);
            await (await _connection.OpenOutboundStreamAsync(QuicStreamType.Unidirectional)).WriteAsync(header.WrittenMemory);
        }

        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>What the peer sent so far on its unidirectional stream of <paramref name="streamType"/>, after the type.</summary>
    public byte[] PeerStream(long streamType)
    {
        lock (_peerStreams)
        {
            return _peerStreams.TryGetValue(streamType, out MemoryStream? s) ? s.ToArray() : [];
        }
    }

    /// <summary>Sends a GET with a static-table field section (our encoder) and returns the stream, writes completed.</summary>
    public async Task<QuicStream> SendGetAsync(string authority, string path)
    {
        byte[] section = new QpackEncoder(useHuffman: false).EncodeFieldSection(
            [new(":method", "GET"), new(":scheme", "https"), new(":authority", authority), new(":path", path), new("user-agent", "kestrelquic-corpus-capture")]);
        var frame = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(frame, section);
        QuicStream stream = await _connection.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync(frame.WrittenMemory, completeWrites: true);
        return stream;
    }

    /// <summary>Answers a request with 200, a content type and <paramref name="body"/> in one DATA frame.</summary>
    public static async Task RespondAsync(QuicStream request, string contentType, byte[] body)
    {
        var response = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(response, new QpackEncoder().EncodeFieldSection(
            [new(":status", "200"), new("content-type", contentType), new("content-length", body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture))]));
        Http3FrameWriter.WriteDataFrame(response, body);
        await request.WriteAsync(response.WrittenMemory, completeWrites: true);
    }

    public static async Task<byte[]> ReadToEndAsync(QuicStream stream, CancellationToken cancellationToken = default)
    {
        var all = new MemoryStream();
        await stream.CopyToAsync(all, cancellationToken);
        return all.ToArray();
    }

    /// <summary>The frames of a stream's bytes (type, payload), in order; a truncated last frame is left out.</summary>
    public static List<(long Type, byte[] Payload)> Frames(byte[] stream)
    {
        var frames = new List<(long, byte[])>();
        ReadOnlySpan<byte> rest = stream;
        while (Http3FrameHeaderParser.TryReadFrameHeader(rest, out long type, out long length, out int headerLength) && rest.Length - headerLength >= length)
        {
            frames.Add((type, rest.Slice(headerLength, (int)length).ToArray()));
            rest = rest[(headerLength + (int)length)..];
        }

        return frames;
    }

    /// <summary>Decodes a field section after the peer's encoder-stream instructions, as name/value strings.</summary>
    public static (QpackDecodeStatus Status, List<KeyValuePair<string, string>> Fields) Decode(byte[] encoderStream, byte[] section)
    {
        var decoder = new QpackDecoder(QpackMaxTableCapacity, maxBlockedStreams: 16);
        Assert.True(decoder.ProcessEncoderStream(encoderStream, out QpackError error), error.Message);
        var fields = new FieldList();
        QpackDecodeResult result = decoder.DecodeFieldSection(0, section, fields);
        return (result.Status, fields.Fields);
    }

    /// <summary>The QPACK target's input: [u16 encoder-stream length] [encoder stream] [field section].</summary>
    public static byte[] QpackCorpusInput(byte[] encoderStream, byte[] section)
    {
        byte[] input = new byte[2 + encoderStream.Length + section.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(input, checked((ushort)encoderStream.Length));
        encoderStream.CopyTo(input, 2);
        section.CopyTo(input, 2 + encoderStream.Length);
        return input;
    }

    /// <summary>The frame-reader target's input: [stream kind | 4 when the reader is the server] [stream bytes].</summary>
    public static byte[] FrameCorpusInput(Http3StreamKind kind, bool readByServer, byte[] streamBytes) => [(byte)((int)kind | (readByServer ? 4 : 0)), .. streamBytes];

    /// <summary>With KESTRELQUIC_FUZZ_EXPORT_CORPUS=DIR, writes the inputs as DIR/TARGET/PREFIX-HASH.bin (the fuzz runner's naming).</summary>
    public static void Export(string target, string prefix, params byte[][] inputs)
    {
        if (Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_EXPORT_CORPUS") is not { Length: > 0 } root) return;
        string dir = Path.Combine(root, target);
        Directory.CreateDirectory(dir);
        foreach (byte[] input in inputs)
        {
            File.WriteAllBytes(Path.Combine(dir, $"{prefix}-{Convert.ToHexStringLower(SHA256.HashData(input))[..16]}.bin"), input);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_acceptLoop is not null) await _acceptLoop;
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        var readers = new List<Task>();
        try
        {
            while (true)
            {
                QuicStream stream = await _connection.AcceptInboundStreamAsync(_stop.Token);
                if (stream.Type == QuicStreamType.Bidirectional)
                {
                    _requests.Writer.TryWrite(stream);
                }
                else
                {
                    readers.Add(RecordAsync(stream));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or QuicException or ObjectDisposedException)
        {
            // The connection ended or we stopped.
        }

        _requests.Writer.TryComplete();
        await Task.WhenAll(readers);
    }

    /// <summary>Reads the stream type, then appends everything after it to that type's recording until the stream ends.</summary>
    private async Task RecordAsync(QuicStream stream)
    {
        byte[] buffer = new byte[4096];
        var pending = new List<byte>();
        long type = -1;
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, _stop.Token)) > 0)
            {
                ReadOnlySpan<byte> data = buffer.AsSpan(0, n);
                if (type < 0)
                {
                    pending.AddRange(data);
                    byte[] head = [.. pending];
                    int length = 1 << (head[0] >> 6);
                    if (head.Length < length) continue;
                    type = head[0] & 0x3f;
                    for (int i = 1; i < length; i++) type = (type << 8) | head[i];
                    data = head.AsSpan(length);
                }

                lock (_peerStreams)
                {
                    if (!_peerStreams.TryGetValue(type, out MemoryStream? recording)) _peerStreams[type] = recording = new MemoryStream();
                    recording.Write(data);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or QuicException or ObjectDisposedException)
        {
        }
    }

    private sealed class FieldList : IQpackFieldHandler
    {
        public List<KeyValuePair<string, string>> Fields { get; } = [];

        public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Fields.Add(new(Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));
    }
}
