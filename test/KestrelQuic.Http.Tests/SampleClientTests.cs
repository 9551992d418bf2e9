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
        await using GtlsServer server = await GtlsServer.StartAsync();
        string ticket = Path.Combine(_dir, "ticket.bin");
        string secrets = Path.Combine(_dir, "secrets.log");
        string url = new Uri(server.BaseUri, GtlsServer.SmallFile).ToString();

        (int first, _, _) = await RunAsync("--ca-certs", _caFile, "--session-ticket", ticket, "--secrets-log", secrets, url);
        Assert.Equal(0, first);
        Assert.True(File.Exists(ticket) && new FileInfo(ticket).Length > 0, "no session ticket was saved");
        byte[] firstTicket = File.ReadAllBytes(ticket);

        (int second, byte[] body, _) = await RunAsync("--ca-certs", _caFile, "--session-ticket", ticket, "--zero-rtt", url);
        Assert.Equal(0, second);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
        Assert.NotEqual(firstTicket, File.ReadAllBytes(ticket));
        Assert.Contains("CLIENT_HANDSHAKE_TRAFFIC_SECRET", File.ReadAllText(secrets));
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
}
