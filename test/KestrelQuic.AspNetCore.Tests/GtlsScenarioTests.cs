using System.Text.RegularExpressions;
using Http3Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>Kestrel over the engine under what ngtcp2's client can throw at it: many requests, loss, key update, resumption, migration, cipher and group choices.</summary>
[Collection(ServerCollection.Name)]
public sealed class GtlsScenarioTests(ITestOutputHelper output)
{
    private const string Quiet = "--no-quic-dump";

    [Fact]
    public async Task ThousandRequests_OnOneConnection_AllServedOverHttp3()
    {
        await using TestServer server = await TestServer.StartAsync();
        PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", Quiet, "--no-http-dump", "-n", "1000"], $"{server.Origin}/bytes/100");
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
        Assert.Equal(1000, server.Requests.Count(e => e == "GET /bytes/100 HTTP/3"));
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(r.StandardError, "remote transport_parameters initial_max_data="));
    }

    [Fact]
    public async Task TenPercentLossEachWay_DownloadIsExact()
    {
        await using TestServer server = await TestServer.StartAsync();
        await DownloadAsync(server, 1024 * 1024, ["-t", "0.1", "-r", "0.1"]);
    }

    [Fact]
    public async Task KeyUpdate_DuringDownload_DownloadIsExact()
    {
        await using TestServer server = await TestServer.StartAsync();
        PeerResult r = await DownloadAsync(server, 4 * 1024 * 1024, ["--key-update=1ms"]);

        // gtlsclient logs the key phase bit of every packet ("pkt rx ... type=1RTT k=0|1"): the server's 1-RTT
        // packets carry phase 0 until the client's update, then phase 1 (RFC 9001 §6.2: the server responded with
        // its own new keys), and the client confirms the update.
        string log = r.StandardError;
        int initiated = log.IndexOf("Initiate key update", StringComparison.Ordinal);
        Assert.True(initiated > 0, r.Tail);
        var serverPhase = new Regex(@"pkt rx pkn=\d+ [^\n]*type=1RTT k=(\d)");
        string[] before = [.. serverPhase.Matches(log[..initiated]).Select(m => m.Groups[1].Value)];
        string[] after = [.. serverPhase.Matches(log[initiated..]).Select(m => m.Groups[1].Value)];
        output.WriteLine($"server 1-RTT packets: {before.Length} before the update (phases {string.Join(",", before.Distinct())}), {after.Length} after ({after.Count(k => k == "1")} in phase 1)");
        Assert.NotEmpty(before);
        Assert.All(before, k => Assert.Equal("0", k));
        Assert.True(after.Count(k => k == "1") > 100, "the server's packets did not switch to key phase 1");
        Assert.Equal("1", after[^1]); // and stayed there to the end of the download
        Assert.Contains("key update confirmed", log[initiated..], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305", null, "CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256")]
    [InlineData("NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-256-GCM", null, "AES-256-GCM", "TLS_AES_256_GCM_SHA384")]
    [InlineData(null, "-GROUP-ALL:+GROUP-SECP256R1", "AES-128-GCM", "TLS_AES_128_GCM_SHA256")]
    public async Task CipherOrGroupRestricted_HandshakeAndDownloadSucceed(string? ciphers, string? groups, string gnutlsSuite, string serverSuite)
    {
        string? seen = null;
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/suite", (HttpContext context) =>
            seen = context.Features.Get<IManagedQuicConnectionFeature>()!.Connection.NegotiatedCipherSuite.ToString()));
        var options = new List<string>();
        if (ciphers is not null) options.Add($"--ciphers={ciphers}");
        if (groups is not null) options.Add($"--groups={groups}"); // the only key share offered: success means secp256r1 was used
        PeerResult r = await DownloadAsync(server, 100_000, options);
        Assert.Contains($"Negotiated cipher suite is {gnutlsSuite}\n", r.StandardError, StringComparison.Ordinal);

        // And the server agrees on the suite the request came in with.
        PeerResult check = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", Quiet, "--no-http-dump", .. options], $"{server.Origin}/suite");
        Assert.True(check.ExitCode == 0 && !check.TimedOut, check.Tail);
        Assert.Equal(serverSuite, seen);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ClientAddressChange_DuringUpload_EchoIsExact(bool natRebinding)
    {
        // An upload keeps the client sending after the change, so the server sees the new address (a client that
        // only receives goes silent after --nat-rebinding and stalls against any server, ngtcp2's own included).
        await using TestServer server = await TestServer.StartAsync();
        string dir = Directory.CreateTempSubdirectory("kq-migrate-").FullName;
        try
        {
            byte[] data = new byte[4 * 1024 * 1024];
            new Random(7).NextBytes(data);
            string body = Path.Combine(dir, "body.bin");
            await File.WriteAllBytesAsync(body, data);
            string downloads = Directory.CreateDirectory(Path.Combine(dir, "out")).FullName;
            var options = new List<string> { "--exit-on-all-streams-close", Quiet, "--no-http-dump", "--change-local-addr=5ms", "-m", "POST", $"--data={body}", $"--download={downloads}" };
            if (natRebinding) options.Add("--nat-rebinding");
            PeerResult r = await Peers.GtlsClientAsync(server.Port, options, $"{server.Origin}/echo");
            Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
            Assert.Contains("Local address is now", r.StandardError, StringComparison.Ordinal);
            byte[] echoed = await File.ReadAllBytesAsync(Path.Combine(downloads, "echo"));
            Assert.True(data.AsSpan().SequenceEqual(echoed), "echoed body differs");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("v1,v2draft,0x1a2a3a4a,0xff00001d")]
    public async Task ServerPreferringV2_ClientOfferingOnlyV1AndUnknownVersions_StaysOnV1(string? otherVersions)
    {
        // ngtcp2 0.12 knows QUIC v2 only as a draft (0x709a50c4): whatever it lists besides v1 (the draft, a reserved
        // or an unknown version), a server preferring RFC 9369 v2 must not switch and the request must be served.
        uint? version = null;
        await using TestServer server = await TestServer.StartAsync(
            map: app => app.MapGet("/version", (HttpContext context) => (version = context.Features.Get<IManagedQuicConnectionFeature>()!.Connection.Version).ToString()),
            configure: b => b.Services.PostConfigure<KestrelQuic.Configuration.QuicConfiguration>(c => c.SupportedVersions = [KestrelQuic.Protocol.QuicVersion.Version2, KestrelQuic.Protocol.QuicVersion.Version1]));
        string[] options = otherVersions is null ? ["--exit-on-all-streams-close", Quiet, "--no-http-dump"] : ["--exit-on-all-streams-close", Quiet, "--no-http-dump", $"--other-versions={otherVersions}"];
        PeerResult r = await Peers.GtlsClientAsync(server.Port, options, $"{server.Origin}/version");
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
        Assert.Equal(KestrelQuic.Protocol.QuicVersion.Version1, version);
    }

    [Fact]
    public async Task SecondConnection_ResumesWithZeroRtt_EarlyDataAccepted()
    {
        await using TestServer server = await TestServer.StartAsync(["--ManagedQuic:EnableEarlyData=true"]);
        string dir = Directory.CreateTempSubdirectory("kq-resume-").FullName;
        try
        {
            string[] options = ["--exit-on-all-streams-close", $"--session-file={Path.Combine(dir, "session")}", $"--tp-file={Path.Combine(dir, "tp")}"];
            PeerResult first = await Peers.GtlsClientAsync(server.Port, options, $"{server.Origin}/bytes/10");
            Assert.True(first.ExitCode == 0, first.Tail);
            Assert.True(File.Exists(Path.Combine(dir, "session")), "no session ticket was saved");
            PeerResult second = await Peers.GtlsClientAsync(server.Port, options, $"{server.Origin}/bytes/20");
            Assert.True(second.ExitCode == 0, second.Tail);
            output.WriteLine(string.Join('\n', second.StandardError.Split('\n').Where(l => l.Contains("arly", StringComparison.Ordinal) || l.Contains("esum", StringComparison.Ordinal))));
            Assert.Contains("0RTT", second.StandardError, StringComparison.Ordinal);
            Assert.DoesNotContain("Early data was rejected", second.StandardError, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("GET /bytes/20 HTTP/3", server.Requests);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task ZeroRttRequests_AppSeesEarlyData_PolicyAnswersUnsafeOnesWith425_UnlessTheEndpointAllowsThem()
    {
        var seen = new List<string>();
        bool policy = true;
        void Record(HttpContext context, string what)
        {
            IManagedQuicStreamFeature stream = context.Features.Get<IManagedQuicStreamFeature>()!;
            QuicConnection connection = context.Features.Get<IManagedQuicConnectionFeature>()!.Connection;
            lock (seen) seen.Add($"{what} early={stream.IsEarlyData} handshake={connection.HandshakeCompleted.IsCompleted}");
        }

        await using TestServer server = await TestServer.StartAsync(["--ManagedQuic:EnableEarlyData=true"], app =>
        {
            app.UseWhen(_ => policy, b => b.UseEarlyDataPolicy());
            app.MapGet("/read", (HttpContext context) => Record(context, "GET /read"));
            app.MapPost("/order", async (HttpContext context) =>
            {
                long length = 0;
                var buffer = new byte[4096];
                int n;
                while ((n = await context.Request.Body.ReadAsync(buffer)) > 0) length += n;
                Record(context, $"POST /order {length}");
            });
            app.MapPost("/search", (HttpContext context) => Record(context, "POST /search")).AllowEarlyData();
        });
        string dir = Directory.CreateTempSubdirectory("kq-early-").FullName;
        try
        {
            string body = Path.Combine(dir, "body");
            await File.WriteAllBytesAsync(body, new byte[3000]);
            string[] resume = [$"--session-file={Path.Combine(dir, "session")}", $"--tp-file={Path.Combine(dir, "tp")}"];

            // Each connection receives a new ticket, so every next one can send its request in 0-RTT again.
            async Task<PeerResult> RequestAsync(string[] options, string path, bool post)
            {
                string[] all = ["--exit-on-all-streams-close", .. options, .. post ? new[] { "-m", "POST", $"--data={body}" } : []];
                PeerResult r = await Peers.GtlsClientAsync(server.Port, all, $"{server.Origin}{path}");
                Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
                return r;
            }

            static void AssertSentIn0Rtt(PeerResult r)
            {
                Assert.Matches(@"0RTT STREAM\(0x0[a-f]\) id=0x0 ", r.StandardError); // the request stream went out in 0-RTT
                Assert.DoesNotContain("Early data was rejected", r.StandardError, StringComparison.OrdinalIgnoreCase);
            }

            static string Status(PeerResult r) => System.Text.RegularExpressions.Regex.Match(r.StandardError, @"stream 0x0 \[:status: (\d+)\]").Groups[1].Value;

            await RequestAsync(resume, "/read", post: false); // full handshake: the first ticket

            PeerResult get = await RequestAsync(resume, "/read", post: false);
            AssertSentIn0Rtt(get);
            Assert.Equal("200", Status(get));

            PeerResult order = await RequestAsync(resume, "/order", post: true);
            AssertSentIn0Rtt(order);
            Assert.Equal("425", Status(order));

            PeerResult search = await RequestAsync(resume, "/search", post: true);
            AssertSentIn0Rtt(search);
            Assert.Equal("200", Status(search));

            policy = false; // without the policy the application decides itself: it sees the flag
            PeerResult unguarded = await RequestAsync(resume, "/order", post: true);
            AssertSentIn0Rtt(unguarded);
            Assert.Equal("200", Status(unguarded));

            policy = true; // a fresh client, no ticket: 1-RTT, so the policy has nothing to refuse
            PeerResult fresh = await RequestAsync([], "/order", post: true);
            Assert.DoesNotContain("0RTT", fresh.StandardError, StringComparison.Ordinal);
            Assert.Equal("200", Status(fresh));

            output.WriteLine(string.Join('\n', seen));
            Assert.Equal(
            [
                "GET /read early=False handshake=True",
                "GET /read early=True handshake=True",
                "POST /search early=True handshake=True",
                "POST /order 3000 early=True handshake=True",
                "POST /order 3000 early=False handshake=True",
            ], seen);

            // The refused request never reached the application; Kestrel logged all of them.
            Assert.Equal(3, server.Requests.Count(e => e == "POST /order HTTP/3"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private async Task<PeerResult> DownloadAsync(TestServer server, int size, IEnumerable<string> extra)
    {
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        try
        {
            var started = DateTime.UtcNow;
            PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", Quiet, "--no-http-dump", $"--download={dir}", .. extra], $"{server.Origin}/bytes/{size}");
            output.WriteLine($"{size} bytes in {(DateTime.UtcNow - started).TotalMilliseconds:F0} ms");
            Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
            byte[] downloaded = await File.ReadAllBytesAsync(Path.Combine(dir, size.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.True(Http3ServerApp.CreatePattern(size).AsSpan().SequenceEqual(downloaded), $"downloaded {downloaded.Length} bytes, content differs");
            return r;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
