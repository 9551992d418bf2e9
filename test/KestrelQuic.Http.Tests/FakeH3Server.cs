using System.Buffers;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using KestrelQuic.Configuration;
using KestrelQuic.Http3;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// A scriptable HTTP/3 server on our QuicListener for behaviours gtlsserver cannot produce (GOAWAY mid-flight,
/// rejected or reset requests, malformed responses, request bodies). Static-table QPACK only (it advertises a
/// dynamic table capacity of 0). Each request stream is handed to <see cref="FakeH3Server.Handler"/>.
/// </summary>
internal sealed class FakeH3Server : IAsyncDisposable
{
    private static readonly Lazy<X509Certificate2> s_certificate = new(CreateCertificate);
    private readonly QuicListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _acceptLoop;
    private readonly List<FakeH3Connection> _connections = [];

    private FakeH3Server(QuicListener listener, Func<FakeH3Request, Task> handler)
    {
        _listener = listener;
        Handler = handler;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public static X509Certificate2 Certificate => s_certificate.Value;

    public Func<FakeH3Request, Task> Handler { get; set; }

    public Uri BaseUri => new($"https://localhost:{_listener.LocalEndPoint.Port}/");

    public int ConnectionCount
    {
        get
        {
            lock (_connections)
            {
                return _connections.Count;
            }
        }
    }

    public IReadOnlyList<FakeH3Connection> Connections
    {
        get
        {
            lock (_connections)
            {
                return [.. _connections];
            }
        }
    }

    public static async Task<FakeH3Server> StartAsync(Func<FakeH3Request, Task> handler, Action<QuicConfiguration>? configure = null)
    {
        var config = new QuicConfiguration { ApplicationProtocols = ["h3"], Certificate = s_certificate.Value, MaxUnidirectionalStreams = 10 };
        configure?.Invoke(config);
        QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Configuration = config });
        return new FakeH3Server(listener, handler);
    }

    public static Http3HandlerOptions ClientOptions(Action<Http3HandlerOptions>? configure = null)
    {
        var options = new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { UseSystemTrust = false, TrustedCertificateAuthorities = [s_certificate.Value] },
        };
        configure?.Invoke(options);
        return options;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (FakeH3Connection connection in Connections)
        {
            await connection.Quic.DisposeAsync();
        }

        await _listener.DisposeAsync();
        await _acceptLoop.ContinueWith(_ => { }, TaskScheduler.Default);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            QuicConnection quic = await _listener.AcceptConnectionAsync(_stop.Token);
            var connection = new FakeH3Connection(this, quic);
            lock (_connections)
            {
                _connections.Add(connection);
            }

            _ = Task.Run(connection.RunAsync);
        }
    }

    private static X509Certificate2 CreateCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }
}

/// <summary>One connection of <see cref="FakeH3Server"/>.</summary>
internal sealed class FakeH3Connection(FakeH3Server server, QuicConnection quic)
{
    private QuicStream? _control;

    public QuicConnection Quic => quic;

    public List<long> RequestStreamIds { get; } = [];

    public TaskCompletionSource<long> ClientControlStreamType { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The SETTINGS frame that opened the client's control stream.</summary>
    public TaskCompletionSource<Http3Settings> ClientSettings { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Sends GOAWAY with <paramref name="id"/> (the first request stream ID that will not be processed).</summary>
    public async Task SendGoAwayAsync(long id)
    {
        var buffer = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteGoAwayFrame(buffer, id);
        await _control!.WriteAsync(buffer.WrittenMemory);
    }

    public async Task RunAsync()
    {
        try
        {
            var buffer = new ArrayBufferWriter<byte>();
            Http3FrameWriter.WriteStreamType(buffer, Http3StreamType.Control);
            Http3FrameWriter.WriteSettingsFrame(buffer, new Http3Settings());
            _control = await quic.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            await _control.WriteAsync(buffer.WrittenMemory);
            while (true)
            {
                QuicStream stream = await quic.AcceptInboundStreamAsync();
                if (stream.Type == QuicStreamType.Unidirectional)
                {
                    _ = Task.Run(() => DrainAsync(stream));
                    continue;
                }

                lock (RequestStreamIds)
                {
                    RequestStreamIds.Add(stream.Id);
                }

                _ = Task.Run(async () =>
                {
                    var request = new FakeH3Request(this, stream);
                    try
                    {
                        await request.ReadHeadersAsync();
                        await server.Handler(request);
                    }
                    catch (Exception e) when (e is QuicException or ObjectDisposedException or InvalidOperationException)
                    {
                    }
                });
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException or OperationCanceledException)
        {
        }
    }

    private async Task DrainAsync(QuicStream stream)
    {
        byte[] buffer = new byte[4096];
        bool first = true;
        bool control = false;
        var pending = new List<byte>();
        var reader = new Http3FrameReader(Http3StreamKind.Control, isClient: false);
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0)
            {
                int start = 0;
                if (first)
                {
                    first = false;
                    if (buffer[0] == Http3StreamType.Control)
                    {
                        control = true;
                        start = 1;
                        ClientControlStreamType.TrySetResult(buffer[0]);
                    }
                }

                if (control && !ClientSettings.Task.IsCompleted)
                {
                    pending.AddRange(buffer.AsSpan(start, n - start));
                    var sequence = new ReadOnlySequence<byte>(pending.ToArray());
                    if (reader.TryReadFrame(ref sequence, out Http3Frame frame, out _) == Http3FrameReadStatus.Frame && frame.Settings is { } settings)
                    {
                        ClientSettings.TrySetResult(settings);
                    }
                }
            }
        }
        catch (Exception e) when (e is QuicException or ObjectDisposedException)
        {
        }
    }
}

/// <summary>A request stream seen by <see cref="FakeH3Server"/>.</summary>
internal sealed class FakeH3Request(FakeH3Connection connection, QuicStream stream)
{
    private readonly Http3FrameReader _reader = new(Http3StreamKind.Request, isClient: false, maxBufferedPayloadLength: 1 << 20);
    private readonly QpackEncoder _encoder = new();
    private byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;
    private bool _fin;

    public FakeH3Connection Connection => connection;

    public QuicStream Stream => stream;

    public List<(string Name, string Value)> Headers { get; } = [];

    public string Method => Headers.First(h => h.Name == ":method").Value;

    public string Path => Headers.First(h => h.Name == ":path").Value;

    public async Task ReadHeadersAsync()
    {
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
            Http3FrameReadStatus status = _reader.TryReadFrame(ref sequence, out Http3Frame frame, out _);
            _start = _end - (int)sequence.Length;
            if (status == Http3FrameReadStatus.Frame && frame.Type == Http3FrameType.Headers)
            {
                var decoder = new QpackDecoder(0, 0);
                var collector = new Collector(Headers);
                decoder.DecodeFieldSection(stream.Id, frame.Payload, collector);
                return;
            }

            if (status != Http3FrameReadStatus.NeedMoreData || !await FillAsync())
            {
                throw new InvalidOperationException("No HEADERS.");
            }
        }
    }

    /// <summary>Reads the request body (DATA payloads) to the end, passing each chunk to <paramref name="onData"/>.</summary>
    public async Task ReadBodyAsync(Func<ReadOnlyMemory<byte>, Task> onData)
    {
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
            Http3FrameReadStatus status = _reader.TryReadFrame(ref sequence, out Http3Frame frame, out _);
            if (status == Http3FrameReadStatus.Frame && frame.Type == Http3FrameType.Data)
            {
                byte[] chunk = frame.Payload.ToArray();
                _start = _end - (int)sequence.Length;
                await onData(chunk);
                continue;
            }

            _start = _end - (int)sequence.Length;
            if (status == Http3FrameReadStatus.Frame)
            {
                continue;
            }

            if (!await FillAsync())
            {
                return;
            }
        }
    }

    public async Task SendHeadersAsync(int status, params (string Name, string Value)[] headers)
    {
        await stream.WriteAsync(EncodeHeaders([(":status", status.ToString(System.Globalization.CultureInfo.InvariantCulture)), .. headers]));
    }

    public byte[] EncodeHeaders(IEnumerable<(string Name, string Value)> fields)
    {
        var section = new ArrayBufferWriter<byte>();
        _encoder.EncodeFieldSection(section, fields.Select(f => KeyValuePair.Create(f.Name, f.Value)));
        var frame = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteHeadersFrame(frame, section.WrittenSpan);
        return frame.WrittenSpan.ToArray();
    }

    public async Task SendDataAsync(ReadOnlyMemory<byte> data, bool fin = false)
    {
        var frame = new ArrayBufferWriter<byte>();
        Http3FrameWriter.WriteDataFrame(frame, data.Span);
        await stream.WriteAsync(frame.WrittenMemory, fin);
    }

    public async Task RespondAsync(int status, string body)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(body);
        await SendHeadersAsync(status, ("content-length", bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        await SendDataAsync(bytes, fin: true);
    }

    private async Task<bool> FillAsync()
    {
        if (_fin)
        {
            return false;
        }

        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }

        int n = await stream.ReadAsync(_buffer.AsMemory(_end));
        if (n == 0)
        {
            _fin = true;
            return false;
        }

        _end += n;
        return true;
    }

    private sealed class Collector(List<(string, string)> fields) : IQpackFieldHandler
    {
        public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => fields.Add((Encoding.Latin1.GetString(name), Encoding.Latin1.GetString(value)));
    }
}
