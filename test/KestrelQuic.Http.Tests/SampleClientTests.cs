using System.Security.Cryptography;
using System.Text;
using KestrelQuic.Samples.Http3Client;
using Xunit.Abstractions;

namespace KestrelQuic.Http.Tests;

/// <summary>samples/Http3Client (its Program entry) against gtlsserver.</summary>
[Collection(nameof(GtlsCollection))]
public sealed class SampleClientTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir = Directory.CreateTempSubdirectory("kq-h3client").FullName;
    private readonly string _caFile;

    public SampleClientTests(ITestOutputHelper output)
    {
        _output = output;
        _caFile = Path.Combine(_dir, "ca.pem");
        File.WriteAllText(_caFile, GtlsServer.Certificate.ExportCertificatePem());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task OutputDir_Parallel_FilesVerified_ExitZero()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        string outDir = Path.Combine(_dir, "out");
        string qlogDir = Path.Combine(_dir, "qlog");

        (int exit, _, string log) = await RunAsync("--ca-certs", _caFile, "--output-dir", outDir, "--parallel", "3", "--qlog-dir", qlogDir,
            new Uri(server.BaseUri, GtlsServer.SmallFile).ToString(), new Uri(server.BaseUri, GtlsServer.MediumFile).ToString());

        Assert.Equal(0, exit);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(File.ReadAllBytes(Path.Combine(outDir, $"{i}-{GtlsServer.SmallFile}"))));
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.MediumFile), SHA256.HashData(File.ReadAllBytes(Path.Combine(outDir, $"{i}-{GtlsServer.MediumFile}"))));
        }

        Assert.Contains("Mbps", log);
        Assert.Contains("1 connection(s)", log);
        string trace = Assert.Single(Directory.GetFiles(qlogDir));
        Assert.Contains("\"quic:packet_received\"", File.ReadAllText(trace));
    }

    [Fact]
    public async Task Include_WritesHeadThenBodyToStdout()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();

        (int exit, byte[] stdout, _) = await RunAsync("--ca-certs", _caFile, "--include", new Uri(server.BaseUri, GtlsServer.SmallFile).ToString());

        Assert.Equal(0, exit);
        string text = Encoding.Latin1.GetString(stdout);
        Assert.StartsWith("HTTP/3 200\r\n", text, StringComparison.Ordinal);
        int bodyStart = text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4;
        Assert.Contains("content-length: 1024\r\n", text[..bodyStart], StringComparison.Ordinal);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(stdout.AsSpan(bodyStart)));
    }

    [Fact]
    public async Task UntrustedServer_ExitNonZero_InsecureSucceeds()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        string url = new Uri(server.BaseUri, GtlsServer.SmallFile).ToString();

        (int refused, _, string log) = await RunAsync(url);
        (int insecure, byte[] body, _) = await RunAsync("--insecure", url);

        Assert.Equal(1, refused);
        Assert.Contains("failed", log);
        Assert.Equal(0, insecure);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
    }

    [Fact]
    public async Task MissingFile_ExitNonZero()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();

        (int exit, _, string log) = await RunAsync("--ca-certs", _caFile, new Uri(server.BaseUri, "missing").ToString());

        Assert.Equal(1, exit);
        Assert.Contains("404", log);
    }

    [Fact]
    public async Task SessionTicket_WrittenThenUsedWithZeroRtt_SecretsLogWritten()
    {
        await using GtlsServer server = await GtlsServer.StartAsync(quiet: false, "--no-quic-dump", "--no-http-dump");

        // 20 ms each way, so the second run's request leaves before the handshake can complete (see UdpDelayProxy).
        await using var proxy = new UdpDelayProxy(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, server.Port), TimeSpan.FromMilliseconds(20));
        string ticket = Path.Combine(_dir, "ticket.bin");
        string secrets = Path.Combine(_dir, "secrets.log");
        string url = $"https://127.0.0.1:{proxy.Port}/{GtlsServer.SmallFile}";

        (int first, _, _) = await RunAsync("--ca-certs", _caFile, "--session-ticket", ticket, "--secrets-log", secrets, url);
        Assert.Equal(0, first);
        Assert.True(File.Exists(ticket) && new FileInfo(ticket).Length > 0, "no session ticket was saved");
        byte[] firstTicket = File.ReadAllBytes(ticket);

        (int second, byte[] body, _) = await RunAsync("--ca-certs", _caFile, "--session-ticket", ticket, "--zero-rtt", url);
        Assert.Equal(0, second);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
        Assert.NotEqual(firstTicket, File.ReadAllBytes(ticket));
        Assert.Contains("CLIENT_HANDSHAKE_TRAFFIC_SECRET", File.ReadAllText(secrets));

        // --zero-rtt took effect: the server received the request stream (id 0) in a 0-RTT packet.
        static bool IsZeroRttRequest(string l) =>
            l.Contains("frm rx", StringComparison.Ordinal) && l.Contains(" 0RTT ", StringComparison.Ordinal) && l.Contains("STREAM(", StringComparison.Ordinal) && l.Contains("id=0x0 ", StringComparison.Ordinal);
        for (int i = 0; i < 250 && !server.Log.Split('\n').Any(IsZeroRttRequest); i++)
        {
            await Task.Delay(20);
        }

        Assert.Contains(server.Log.Split('\n'), IsZeroRttRequest);
    }

    [Fact]
    public async Task LegacyHttp_Http09OverQuic_AgainstHqServer()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions
        {
            ListenEndPoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            Configuration = new KestrelQuic.Configuration.QuicConfiguration { ApplicationProtocols = ["hq-interop"], Certificate = FakeH3Server.Certificate },
        });
        Task server = Task.Run(async () =>
        {
            await using QuicConnection connection = await listener.AcceptConnectionAsync();
            for (int i = 0; i < 2; i++)
            {
                await using QuicStream stream = await connection.AcceptInboundStreamAsync();
                var request = new MemoryStream();
                await stream.CopyToAsync(request);
                string line = Encoding.ASCII.GetString(request.ToArray());
                await stream.WriteAsync(Encoding.ASCII.GetBytes("hq says " + line.Trim()), completeWrites: true);
            }

            await connection.Closed;
        });
        string ca = Path.Combine(_dir, "fake-ca.pem");
        File.WriteAllText(ca, FakeH3Server.Certificate.ExportCertificatePem());

        (int exit, byte[] stdout, string log) = await RunAsync("--legacy-http", "--ca-certs", ca, "--parallel", "2", $"https://localhost:{listener.LocalEndPoint.Port}/hello?x=1");

        Assert.Equal(0, exit);
        Assert.Equal("hq says GET /hello?x=1hq says GET /hello?x=1", Encoding.ASCII.GetString(stdout));
        Assert.Contains("HTTP/0.9", log);
        await server.WaitAsync(TimeSpan.FromSeconds(20));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DataOrDataFile_PostsTheBody_EchoOnStdout(bool fromFile)
    {
        var methods = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            methods.Enqueue(request.Method);
            await request.SendHeadersAsync(200);
            await request.ReadBodyAsync(chunk => request.SendDataAsync(chunk));
            request.Stream.CompleteWrites();
        });
        string ca = Path.Combine(_dir, "fake-ca.pem");
        File.WriteAllText(ca, FakeH3Server.Certificate.ExportCertificatePem());
        byte[] body;
        string[] bodyArgs;
        if (fromFile)
        {
            body = new byte[300_000];
            new Random(5).NextBytes(body);
            string file = Path.Combine(_dir, "body.bin");
            File.WriteAllBytes(file, body);
            bodyArgs = ["--data-file", file];
        }
        else
        {
            body = Encoding.UTF8.GetBytes("name=kestrel&value=quic");
            bodyArgs = ["--data", "name=kestrel&value=quic"];
        }

        (int exit, byte[] stdout, _) = await RunAsync([.. bodyArgs, "--ca-certs", ca, new Uri(server.BaseUri, "/echo").ToString()]);

        Assert.Equal(0, exit);
        Assert.Equal(["POST"], methods);
        Assert.Equal(SHA256.HashData(body), SHA256.HashData(stdout));
    }

    [Fact]
    public async Task DataFileMissing_ExitTwo_MessageNamesTheFile()
    {
        string missing = Path.Combine(_dir, "no-such-body.bin");

        (int exit, _, string log) = await RunAsync("--data-file", missing, "https://localhost:4433/echo");

        Assert.Equal(2, exit);
        Assert.Contains($"error: --data-file {missing}: ", log, StringComparison.Ordinal);
        Assert.Contains("Usage", log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DataFile20MB_EchoedExactly_WithContentLength()
    {
        string? contentLength = null;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            contentLength = request.Headers.FirstOrDefault(h => h.Name == "content-length").Value;
            await request.SendHeadersAsync(200);
            await request.ReadBodyAsync(chunk => request.SendDataAsync(chunk));
            request.Stream.CompleteWrites();
        });
        string ca = Path.Combine(_dir, "fake-ca.pem");
        File.WriteAllText(ca, FakeH3Server.Certificate.ExportCertificatePem());
        string file = Path.Combine(_dir, "large.bin");
        byte[] data = new byte[20 * 1024 * 1024];
        new Random(20).NextBytes(data);
        File.WriteAllBytes(file, data);

        (int exit, byte[] stdout, _) = await RunAsync("--data-file", file, "--ca-certs", ca, new Uri(server.BaseUri, "/echo").ToString());

        Assert.Equal(0, exit);
        Assert.Equal(data.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), contentLength);
        Assert.Equal(data.Length, stdout.Length);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(stdout));
    }

    [Fact]
    public async Task DataFileIsAPipe_BodyLeavesBeforeTheFileEnds()
    {
        // A FIFO: whatever reads it whole before sending waits for the writer to close it, which here happens only
        // after the server received the first part of the body.
        string fifo = Path.Combine(_dir, "body.fifo");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        var firstPartArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long received = 0;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.ReadBodyAsync(chunk =>
            {
                if (Interlocked.Add(ref received, chunk.Length) >= 100_000)
                {
                    firstPartArrived.TrySetResult();
                }

                return Task.CompletedTask;
            });
            await request.RespondAsync(200, Interlocked.Read(ref received).ToString(System.Globalization.CultureInfo.InvariantCulture));
        });
        string ca = Path.Combine(_dir, "fake-ca.pem");
        File.WriteAllText(ca, FakeH3Server.Certificate.ExportCertificatePem());

        // On another thread: opening the FIFO for reading blocks until the writer below opens it.
        Task<(int Exit, byte[] Stdout, string Stderr)> run = Task.Run(() => RunAsync("--data-file", fifo, "--ca-certs", ca, new Uri(server.BaseUri, "/upload").ToString()));
        // Opening for writing blocks until the client opens the FIFO for reading.
        FileStream opened = await Task.Run(() => new FileStream(fifo, FileMode.Open, FileAccess.Write)).WaitAsync(TimeSpan.FromSeconds(30));
        await using (FileStream writer = opened)
        {
            await writer.WriteAsync(new byte[100_000]);
            await writer.FlushAsync();
            await firstPartArrived.Task.WaitAsync(TimeSpan.FromSeconds(30)); // fails (rather than hangs) when the client waits for the end of the file
            await writer.WriteAsync(new byte[50_000]);
        }

        (int exit, byte[] stdout, string log) = await run;
        Assert.True(exit == 0, log);
        Assert.Equal("150000", System.Text.Encoding.ASCII.GetString(stdout));
    }

    [Fact]
    public async Task Stdout_ReceivesTheBodyWhileTheResponseIsStillComing()
    {
        using var stdout = new SignallingStream();
        bool streamed = false;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.SendHeadersAsync(200);
            await request.SendDataAsync(new byte[50_000]);
            // The rest only once the first part reached stdout (or after 10 s, which fails the test).
            streamed = await Task.WhenAny(stdout.FirstWrite, Task.Delay(TimeSpan.FromSeconds(10))) == stdout.FirstWrite;
            await request.SendDataAsync(new byte[50_000], fin: true);
        });
        string ca = Path.Combine(_dir, "fake-ca.pem");
        File.WriteAllText(ca, FakeH3Server.Certificate.ExportCertificatePem());
        using var stderr = new StringWriter();

        int exit = await Http3ClientApp.RunAsync(["--ca-certs", ca, new Uri(server.BaseUri, "/slow").ToString()], stdout, stderr).WaitAsync(TimeSpan.FromMinutes(1));

        Assert.Equal(0, exit);
        Assert.True(streamed, "stdout got nothing until the response ended");
        Assert.Equal(100_000, stdout.Length);
    }

    [Fact]
    public async Task MaxDataAndMaxStreamData_ReachTheClientsTransportParameters()
    {
        // gtlsserver logs the transport parameters it received from the client.
        await using GtlsServer server = await GtlsServer.StartAsync(quiet: false, "--no-http-dump");
        string url = new Uri(server.BaseUri, GtlsServer.SmallFile).ToString();

        (int exit, byte[] body, _) = await RunAsync("--ca-certs", _caFile, "--max-data", "3333333", "--max-stream-data", "222222", url);

        Assert.Equal(0, exit);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
        string log = server.Log;
        for (int i = 0; i < 100 && !log.Contains("initial_max_stream_data_uni=", StringComparison.Ordinal); i++)
        {
            await Task.Delay(20);
            log = server.Log;
        }

        string parameters = log.Replace("\r", string.Empty, StringComparison.Ordinal);
        Assert.Contains("remote transport_parameters initial_max_data=3333333\n", parameters, StringComparison.Ordinal);
        Assert.Contains("remote transport_parameters initial_max_stream_data_bidi_local=222222\n", parameters, StringComparison.Ordinal);
        Assert.Contains("remote transport_parameters initial_max_stream_data_uni=222222\n", parameters, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("missing.pem", "does not exist")]
    [InlineData("empty.pem", "no PEM certificate")]
    public async Task CaCertsFileMissingOrEmpty_ExitTwo_NamingTheFile(string name, string problem)
    {
        string file = Path.Combine(_dir, name);
        if (name == "empty.pem") File.WriteAllText(file, string.Empty);

        (int exit, _, string log) = await RunAsync("--ca-certs", file, "https://localhost:4433/");

        Assert.Equal(2, exit);
        Assert.Contains(problem, log);
        Assert.Contains(file, log);
    }

    [Fact]
    public async Task BadArguments_ExitTwo()
    {
        (int exit, _, string log) = await RunAsync("--parallel", "zero", "https://localhost/");

        Assert.Equal(2, exit);
        Assert.Contains("Usage", log);
    }

    private async Task<(int Exit, byte[] Stdout, string Stderr)> RunAsync(params string[] args)
    {
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();
        int exit = await Http3ClientApp.RunAsync(args, stdout, stderr).WaitAsync(TimeSpan.FromMinutes(2));
        _output.WriteLine(stderr.ToString());
        return (exit, stdout.ToArray(), stderr.ToString());
    }

    /// <summary>An in-memory stdout that reports its first write.</summary>
    private sealed class SignallingStream : MemoryStream
    {
        private readonly TaskCompletionSource _firstWrite = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task FirstWrite => _firstWrite.Task;

        public override void Write(byte[] buffer, int offset, int count)
        {
            base.Write(buffer, offset, count);
            _firstWrite.TrySetResult();
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            base.Write(buffer.Span);
            _firstWrite.TrySetResult();
            return ValueTask.CompletedTask;
        }
    }
}
