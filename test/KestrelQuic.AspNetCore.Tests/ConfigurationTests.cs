using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.RegularExpressions;
using Http3Server;
using KestrelQuic.Tests.Shared;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>Every "ManagedQuic" key reaches the wire or the behaviour it names; bad values stop the start-up naming the key; the Kestrel section works.</summary>
[Collection(ServerCollection.Name)]
public sealed class ConfigurationTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("IdleTimeout", "00:00:07", "max_idle_timeout", "7000")]
    [InlineData("MaxBidirectionalStreams", "17", "initial_max_streams_bidi", "17")]
    [InlineData("MaxUnidirectionalStreams", "9", "initial_max_streams_uni", "9")]
    [InlineData("MaxData", "3000000", "initial_max_data", "3000000")]
    [InlineData("MaxStreamData", "200000", "initial_max_stream_data_bidi_remote", "200000")]
    [InlineData("MaxStreamData", "200000", "initial_max_stream_data_uni", "200000")]
    [InlineData("MaxDatagramFrameSize", "1200", "max_datagram_frame_size", "1200")]
    public async Task Key_ReachesServerTransportParameters(string key, string value, string parameter, string expected)
    {
        PeerResult defaults = await FetchAsync([]);
        PeerResult configured = await FetchAsync([$"--ManagedQuic:{key}={value}"]);
        output.WriteLine($"{parameter}: default {defaults.ServerTransportParameter(parameter)}, configured {configured.ServerTransportParameter(parameter)}");
        Assert.NotEqual(expected, defaults.ServerTransportParameter(parameter));
        Assert.Equal(expected, configured.ServerTransportParameter(parameter));
    }

    [Fact]
    public async Task EnvironmentVariable_ManagedQuicMaxData_ReachesTransportParameters()
    {
        // Environment variables are process-wide: the sample runs as a child process with its own.
        int port = TestServer.GetFreePort();
        await using SampleProcess sample = SampleProcess.Start(["--urls", $"https://127.0.0.1:{port}"], new Dictionary<string, string> { ["ManagedQuic__MaxData"] = "2500000" });
        await sample.WaitForOutputAsync("Application started", TimeSpan.FromSeconds(60));
        PeerResult r = await Peers.GtlsClientAsync(port, ["--exit-on-all-streams-close"], $"https://localhost:{port}/bytes/10");
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
        Assert.Equal("2500000", r.ServerTransportParameter("initial_max_data"));
    }

    [Fact]
    public async Task UseManagedQuicAction_AppliesAfterConfiguration()
    {
        PeerResult r = await FetchAsync(["--ManagedQuic:MaxData=3000000"], b => b.WebHost.UseManagedQuic(o => o.MaxData = 2_000_000));
        Assert.Equal("2000000", r.ServerTransportParameter("initial_max_data"));
    }

    [Theory]
    [InlineData(8)]
    [InlineData(12)]
    [InlineData(20)]
    public async Task ConnectionIdLength_SetsServerConnectionIdLength(int length)
    {
        PeerResult r = await FetchAsync([$"--ManagedQuic:ConnectionIdLength={length}"]);
        string? scid = r.ServerTransportParameter("initial_source_connection_id");
        Assert.NotNull(scid);
        Assert.Equal(2 + (2 * length), scid.Length); // "0x" + hex
    }

    [Fact]
    public async Task RetryAlways_ClientReceivesRetry_RetryNever_DoesNot()
    {
        PeerResult always = await FetchAsync(["--ManagedQuic:Retry=Always"]);
        Assert.Contains("type=Retry", always.StandardError);
        Assert.NotNull(always.ServerTransportParameter("retry_source_connection_id"));
        PeerResult never = await FetchAsync(["--ManagedQuic:Retry=Never"]);
        Assert.DoesNotContain("type=Retry", never.StandardError);
        Assert.Null(never.ServerTransportParameter("retry_source_connection_id"));
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, false)]
    public async Task RetryUnderLoad_RetriesOnlyOnceHandshakesInProgressReachTheThreshold(int threshold, bool retryExpected)
    {
        await using TestServer server = await TestServer.StartAsync(["--ManagedQuic:Retry=UnderLoad", $"--ManagedQuic:RetryHandshakeThreshold={threshold}"]);

        // No handshake in progress: no Retry.
        PeerResult idle = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close"], $"{server.Origin}/bytes/10");
        Assert.True(idle.ExitCode == 0 && !idle.TimedOut, idle.Tail);
        Assert.DoesNotContain("type=Retry", idle.StandardError, StringComparison.Ordinal);

        // One handshake that never completes: a client's Initial sent from a socket that then stays silent. The
        // server answers it with its own Initial, not a Retry (nothing was in progress before it).
        using Socket stalled = await StartStalledHandshakeAsync(server.Port);

        PeerResult loaded = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close"], $"{server.Origin}/bytes/20");
        output.WriteLine(string.Join('\n', loaded.StandardError.Split('\n').Where(l => l.Contains("Retry", StringComparison.Ordinal))));
        Assert.True(loaded.ExitCode == 0 && !loaded.TimedOut, loaded.Tail);
        if (retryExpected)
        {
            Assert.Contains("type=Retry", loaded.StandardError, StringComparison.Ordinal);
            Assert.NotNull(loaded.ServerTransportParameter("retry_source_connection_id"));
        }
        else
        {
            Assert.DoesNotContain("type=Retry", loaded.StandardError, StringComparison.Ordinal);
            Assert.Null(loaded.ServerTransportParameter("retry_source_connection_id"));
        }

        Assert.Contains("GET /bytes/20 HTTP/3", server.Requests);
    }

    /// <summary>
    /// Sends a genuine client Initial (captured from our engine's client) to the server from a fresh socket, and
    /// returns that socket once the server answered with an Initial: the server now has a handshake in progress that
    /// will not complete.
    /// </summary>
    private static async Task<Socket> StartStalledHandshakeAsync(int port)
    {
        byte[] initial;
        using (var capture = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            capture.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            using var stop = new CancellationTokenSource();
            Task connect = QuicConnection.ConnectAsync(
                new QuicClientConnectionOptions
                {
                    RemoteEndPoint = (IPEndPoint)capture.LocalEndPoint!,
                    Configuration = new KestrelQuic.Configuration.QuicConfiguration { ApplicationProtocols = { "h3" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true },
                },
                stop.Token).AsTask();
            byte[] buffer = new byte[65536];
            int n = await capture.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(10));
            initial = buffer[..n];
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => connect);
        }

        var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        stalled.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await stalled.SendToAsync(initial, new IPEndPoint(IPAddress.Loopback, port));
        byte[] answer = new byte[65536];
        await stalled.ReceiveAsync(answer).WaitAsync(TimeSpan.FromSeconds(10));
        // Long header, QUIC v1 packet type in bits 4-5: 0 Initial, 3 Retry.
        Assert.True((answer[0] & 0x80) != 0, "the server's answer has no long header");
        Assert.Equal(0, (answer[0] & 0x30) >> 4);
        return stalled;
    }

    [Fact]
    public async Task SecretsLogFile_ReceivesTheConnectionSecrets()
    {
        string file = Path.Combine(Directory.CreateTempSubdirectory("kq-secrets-").FullName, "keys.log");
        try
        {
            await FetchAsync([$"--ManagedQuic:SecretsLogFile={file}"]);
            string[] lines = await File.ReadAllLinesAsync(file);
            foreach (string label in new[] { "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0" })
            {
                Assert.Contains(lines, l => Regex.IsMatch(l, $"^{label} [0-9a-f]{{64}} [0-9a-f]{{64,96}}$"));
            }
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
        }
    }

    [Fact]
    public async Task QlogDirectory_WritesAQlogFilePerConnection()
    {
        string dir = Directory.CreateTempSubdirectory("kq-qlog-").FullName;
        try
        {
            await FetchAsync([$"--ManagedQuic:QlogDirectory={dir}"]);
            // Written off the hot path by a background writer: wait for the file to appear and fill.
            string[] files = [];
            string text = "";
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                files = Directory.GetFiles(dir, "*.sqlog");
                text = files.Length == 1 ? await File.ReadAllTextAsync(files[0]) : "";
                if (text.Contains("packet_received", StringComparison.Ordinal) && text.Contains("packet_sent", StringComparison.Ordinal)) break;
                await Task.Delay(100);
            }

            Assert.Single(files);
            Assert.EndsWith("_server.sqlog", files[0], StringComparison.Ordinal);
            Assert.Contains("packet_received", text, StringComparison.Ordinal);
            Assert.Contains("packet_sent", text, StringComparison.Ordinal);
            // JSON-SEQ: every complete record (RS-prefixed, newline-terminated) is one JSON document.
            string[] records = text.Split('\u001e', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(records.Length > 3);
            foreach (string record in records.Where(r => r.EndsWith('\n')))
            {
                using System.Text.Json.JsonDocument document = System.Text.Json.JsonDocument.Parse(record);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("NewReno", "NewRenoCongestionController")]
    [InlineData("Cubic", "CubicCongestionController")]
    public async Task CongestionControl_SelectsTheConnectionsController(string value, string controllerType)
    {
        string? seen = null;
        await using TestServer server = await TestServer.StartAsync([$"--ManagedQuic:CongestionControl={value}"], map: app => app.MapGet("/cc", (HttpContext context) =>
        {
            // The engine keeps the controller private; the test looks at its type through the public feature.
            QuicConnection connection = context.Features.Get<IManagedQuicConnectionFeature>()!.Connection;
            object handle = typeof(QuicConnection).GetProperty("Handle", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(connection)!;
            object core = handle.GetType().GetProperty("Core")!.GetValue(handle)!;
            seen = core.GetType().GetField("_congestion", BindingFlags.Instance | BindingFlags.NonPublic)!.GetValue(core)!.GetType().Name;
            return seen;
        }));
        PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close"], $"{server.Origin}/cc");
        Assert.True(r.ExitCode == 0, r.Tail);
        Assert.Equal(controllerType, seen);
    }

    [Theory]
    [InlineData("SocketReceiveBufferSize", "rb")]
    [InlineData("SocketSendBufferSize", "tb")]
    public async Task SocketBufferSize_SetsTheUdpSocketBuffer(string key, string skmemField)
    {
        const int size = 100_000;
        await using TestServer server = await TestServer.StartAsync([$"--ManagedQuic:{key}={size}"]);
        PeerResult ss = await Peers.RunAsync("ss", ["-uampn", $"sport = :{server.Port}"]);
        output.WriteLine(ss.StandardOutput);
        Match m = Regex.Match(ss.StandardOutput, $@"\b{skmemField}(\d+)");
        Assert.True(m.Success, ss.StandardOutput);
        // Linux doubles SO_RCVBUF/SO_SNDBUF for its bookkeeping, capped by net.core.[rw]mem_max.
        string max = await File.ReadAllTextAsync(skmemField == "rb" ? "/proc/sys/net/core/rmem_max" : "/proc/sys/net/core/wmem_max");
        long expected = 2L * Math.Min(size, long.Parse(max.Trim(), CultureInfo.InvariantCulture));
        Assert.Equal(expected, long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    [Theory]
    [InlineData("--ManagedQuic:ConnectionIdLength=99", "ManagedQuic:ConnectionIdLength")]
    [InlineData("--ManagedQuic:MaxData=1", "ManagedQuic:MaxData")]
    [InlineData("--ManagedQuic:CongestionControl=Vegas", "ManagedQuic:CongestionControl")]
    [InlineData("--ManagedQuic:Retry=Sometimes", "ManagedQuic:Retry")]
    [InlineData("--ManagedQuic:IdleTimeout=soon", "ManagedQuic:IdleTimeout")]
    [InlineData("--ManagedQuic:MaxStreams=5", "MaxStreams")]
    [InlineData("--ManagedQuic:MaxUnidirectionalStreams=2", "ManagedQuic:MaxUnidirectionalStreams must be at least 3")]
    [InlineData("--ManagedQuic:MaxBidirectionalStreams=0", "ManagedQuic:MaxBidirectionalStreams must be at least 1")]
    [InlineData("--ManagedQuic:TrustedCertificateAuthoritiesPath=/nonexistent/ca.pem", "ManagedQuic:TrustedCertificateAuthoritiesPath names a file that does not exist: '/nonexistent/ca.pem'")]
    public async Task BadValue_FailsStartup_NamingTheKey(string arg, string named)
    {
        WebApplication app = TestServer.Build([arg], out _);
        try
        {
            Exception? e = await Record.ExceptionAsync(() => app.StartAsync());
            Assert.NotNull(e);
            output.WriteLine(e.Message);
            Assert.Contains(named, e.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task KestrelSection_PemCertificateAndProtocols_ServeHttp3()
    {
        string dir = Directory.CreateTempSubdirectory("kq-pem-").FullName;
        try
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            san.AddDnsName("localhost");
            request.CertificateExtensions.Add(san.Build());
            using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(10));
            await File.WriteAllTextAsync(Path.Combine(dir, "cert.pem"), certificate.ExportCertificatePem());
            await File.WriteAllTextAsync(Path.Combine(dir, "key.pem"), key.ExportPkcs8PrivateKeyPem());

            await using TestServer server = await TestServer.StartAsync(
            [
                $"--Kestrel:Certificates:Default:Path={Path.Combine(dir, "cert.pem")}",
                $"--Kestrel:Certificates:Default:KeyPath={Path.Combine(dir, "key.pem")}",
                "--Kestrel:EndpointDefaults:Protocols=Http3",
            ]);
            Assert.Null(server.Spki); // no ephemeral certificate: the configured one is used

            // Chromium accepts the server only if it presents the PEM certificate (its SPKI is the one pinned).
            PeerResult r = await Peers.ChromiumDumpDomAsync(server.Port, Http3ServerApp.GetSpkiHash(certificate), $"{server.Origin}/");
            Assert.Contains("<span id=\"protocol\">HTTP/3</span>", r.StandardOutput);
            Assert.Contains("GET / HTTP/3", server.Requests);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("alpha.test")]
    [InlineData("beta.test")]
    public async Task KestrelSniSection_ChoosesTheCertificateByServerName(string host)
    {
        string dir = Directory.CreateTempSubdirectory("kq-sni-").FullName;
        try
        {
            var spki = new Dictionary<string, string>();
            foreach (string name in new[] { "alpha.test", "beta.test" })
            {
                using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
                var san = new SubjectAlternativeNameBuilder();
                san.AddDnsName(name);
                request.CertificateExtensions.Add(san.Build());
                using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(10));
                await File.WriteAllTextAsync(Path.Combine(dir, name + ".pem"), certificate.ExportCertificatePem());
                await File.WriteAllTextAsync(Path.Combine(dir, name + ".key"), key.ExportPkcs8PrivateKeyPem());
                spki[name] = Http3ServerApp.GetSpkiHash(certificate);
            }

            // Endpoint SNI from configuration: Kestrel hands the transport a per-connection TLS callback.
            await using TestServer server = await TestServer.StartAsync(port =>
            [
                $"--Kestrel:Endpoints:Quic:Url=https://127.0.0.1:{port}",
                "--Kestrel:Endpoints:Quic:Protocols=Http3",
                $"--Kestrel:Endpoints:Quic:Sni:alpha.test:Certificate:Path={Path.Combine(dir, "alpha.test.pem")}",
                $"--Kestrel:Endpoints:Quic:Sni:alpha.test:Certificate:KeyPath={Path.Combine(dir, "alpha.test.key")}",
                $"--Kestrel:Endpoints:Quic:Sni:beta.test:Certificate:Path={Path.Combine(dir, "beta.test.pem")}",
                $"--Kestrel:Endpoints:Quic:Sni:beta.test:Certificate:KeyPath={Path.Combine(dir, "beta.test.key")}",
            ]);

            // Chromium trusts only the SPKI of the certificate for the name it asks for.
            PeerResult r = await Peers.ChromiumDumpDomAsync(server.Port, spki[host], $"https://{host}:{server.Port}/", host);
            Assert.True(r.StandardOutput.Contains("<span id=\"protocol\">HTTP/3</span>", StringComparison.Ordinal), r.Tail);

            // And the other name's certificate is not what this name gets.
            string other = spki.Keys.Single(k => k != host);
            PeerResult wrong = await Peers.ChromiumDumpDomAsync(server.Port, spki[other], $"https://{host}:{server.Port}/", host);
            Assert.DoesNotContain("<span id=\"protocol\">", wrong.StandardOutput, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task AspNetCoreUrlsVariable_ChoosesTheEndpoint_EphemeralCertificateSpkiIsLogged()
    {
        // No --urls: the variable (set for the child process only) chooses the endpoint.
        int port = TestServer.GetFreePort();
        await using SampleProcess sample = SampleProcess.Start([], new Dictionary<string, string> { ["ASPNETCORE_URLS"] = $"https://127.0.0.1:{port}" });
        await sample.WaitForOutputAsync("Application started", TimeSpan.FromSeconds(60));
        Assert.Contains($"Now listening on: https://127.0.0.1:{port}", sample.Output, StringComparison.Ordinal);
        await Peers.AssertPageServedOverHttp3Async(port);

        // The SPKI hash a browser is told to trust is in the log (base64 of the SHA-256 of the SubjectPublicKeyInfo)
        // and is the certificate's the server presents over QUIC.
        Match logged = Regex.Match(sample.Output, @"SPKI SHA-256 \(base64\): (\S+)");
        Assert.True(logged.Success, sample.Output);
        string spki = logged.Groups[1].Value;
        Assert.Equal(44, spki.Length);
        await using QuicConnection connection = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions
        {
            RemoteEndPoint = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port),
            Configuration = new KestrelQuic.Configuration.QuicConfiguration { ApplicationProtocols = { "h3" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true },
        });
        Assert.Equal(spki, Http3ServerApp.GetSpkiHash(connection.RemoteCertificate!));
    }

    [Fact]
    public void SampleAppsettings_ShowsEveryManagedQuicKeyWithItsDefault()
    {
        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "appsettings.json")));
        JsonElement section = json.RootElement.GetProperty("ManagedQuic");
        string[] contract =
        [
            "IdleTimeout", "MaxBidirectionalStreams", "MaxUnidirectionalStreams", "MaxData", "MaxStreamData", "MaxDatagramFrameSize", "ConnectionIdLength",
            "CongestionControl", "Retry", "SecretsLogFile", "QlogDirectory", "SocketReceiveBufferSize", "SocketSendBufferSize",
        ];
        Assert.Equal(contract, section.EnumerateObject().Select(p => p.Name));
        var defaults = new KestrelQuic.Configuration.QuicConfiguration();
        foreach (JsonProperty property in section.EnumerateObject())
        {
            object? value = typeof(KestrelQuic.Configuration.QuicConfiguration).GetProperty(property.Name)!.GetValue(defaults);
            string? expected = value switch
            {
                null => null,
                TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                _ => value.ToString(),
            };
            string? actual = property.Value.ValueKind switch
            {
                JsonValueKind.Null => null,
                JsonValueKind.String => property.Value.GetString(),
                _ => property.Value.GetRawText(),
            };
            Assert.True(expected == actual, $"{property.Name}: appsettings.json has {actual ?? "null"}, the default is {expected ?? "null"}");
        }
    }

    private static async Task<PeerResult> FetchAsync(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        await using TestServer server = await TestServer.StartAsync(args, configure: configure);
        PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close"], $"{server.Origin}/bytes/10");
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
        Assert.Contains("GET /bytes/10 HTTP/3", server.Requests);
        return r;
    }
}
