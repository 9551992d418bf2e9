using System.Globalization;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Crypto;
using KestrelQuic.Testing;
using static KestrelQuic.Interop.CaseFailedException;

namespace KestrelQuic.Interop;

/// <summary>
/// Our Kestrel server against headless Chromium with QUIC forced for the origin. Chromium loads one page per run
/// (--dump-dom), so it drives the cases about one connection; the others are listed with the reason.
/// </summary>
internal sealed class ChromiumRole(InteropWorkspace workspace) : IRole
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    public string Peer => "chromium";

    public async Task<CaseResult> RunAsync(string testCase, CancellationToken cancellationToken)
    {
        string? unsupported = testCase switch
        {
            "multiplexing" => "one --dump-dom page load cannot request 2,000 files",
            "resumption" or "zerortt" => "headless --dump-dom keeps no session between runs",
            "v2" => "Chromium offers only QUIC v1 for a forced origin",
            "handshakeloss" or "handshakecorruption" => "50 browser starts per case; the gtlsclient and gtlsserver roles cover it",
            _ => null,
        };
        if (unsupported is not null) return CaseResult.Unsupported(unsupported);

        string? qlog = testCase == "keyupdate" ? workspace.NewDirectory("qlog") : null;
        ServerSettings settings = testCase switch
        {
            "retry" => new() { Quic = q => q.Retry = RetryMode.Always },
            "chacha20" => new() { Quic = q => q.CipherSuites = [CipherSuite.ChaCha20Poly1305Sha256] },
            "keyupdate" => new() { Quic = q => { q.KeyUpdateInterval = 100; q.QlogDirectory = qlog; } },
            "transfer" => new() { Quic = q => { q.MaxData = 64 * 1024; q.MaxStreamData = 32 * 1024; } },
            "ipv6" => new() { Ipv6 = true },
            "amplificationlimit" => new() { LongChain = true, Quic = q => q.Retry = RetryMode.Never },
            _ => new(),
        };
        await using OurServer server = await OurServer.StartAsync(workspace, settings);
        UdpRelay? relay = Links.NeedsRelay(testCase) ? Links.Create(testCase, server.EndPoint) : null;
        Blackhole? blackhole = testCase == "blackhole" ? new Blackhole(relay!, startAfterBytes: 1 << 20) : null;
        Rebinder? rebinder = testCase is "rebind-port" or "rebind-addr" ? new Rebinder(relay!, everyBytes: 2 << 20, newAddress: testCase == "rebind-addr") : null;
        AmplificationMeter? meter = testCase == "amplificationlimit" ? new AmplificationMeter(relay!, dropClientDatagrams: 2) : null;
        try
        {
            int port = relay?.LocalEndPoint.Port ?? server.Port;
            int size = testCase switch
            {
                "handshake" or "http3" or "retry" or "chacha20" or "longrtt" or "ipv6" => 10_000,
                "keyupdate" => 2_000_000,
                "rebind-port" or "rebind-addr" or "blackhole" => 10_000_000,
                _ => 5_000_000,
            };
            string dom = await LoadAsync(server, port, $"/page/{size.ToString(CultureInfo.InvariantCulture)}", testCase == "ipv6", cancellationToken);
            VerifyPage(dom, size);
            string protocols = string.Join(", ", server.Requests.Select(r => r[(r.LastIndexOf(' ') + 1)..]).Distinct());
            Check(protocols == "HTTP/3", $"requests arrived over {protocols}");
            string detail = $"page of {size:N0} B loaded over HTTP/3";
            if (relay is not null) detail += $"; relay {ServerRole.Describe(relay)}";
            if (blackhole is not null)
            {
                Check(blackhole.Outages >= 1, "the link never went down during the page load");
                detail += $"; {blackhole.Outages} outage(s) of 2 s";
            }

            if (rebinder is not null)
            {
                Check(rebinder.Rebinds >= 2, $"only {rebinder.Rebinds} rebinding(s) happened");
                detail += $"; client {(testCase == "rebind-addr" ? "address and port" : "port")} changed {rebinder.Rebinds} times";
            }

            if (meter is not null)
            {
                Check(meter.Validated, "the server never saw a Handshake packet from Chromium");
                Check(meter.MaxRatio <= 3.0, $"server sent {meter.MaxRatio:F2}x what it received before validating the address");
                detail += $"; before address validation the server sent {meter.BytesBeforeValidation:N0} B for {meter.BytesReceivedBeforeValidation:N0} B: max ratio {meter.MaxRatio:F2}";
            }

            if (qlog is not null)
            {
                // Our server renews its keys every 100 packets; it may start the next update only once Chromium
                // acknowledged a packet of the current phase, so several updates mean Chromium followed each one.
                int updates = 0;
                foreach (string file in Directory.GetFiles(qlog)) updates += CountLocalKeyUpdates(await File.ReadAllTextAsync(file, cancellationToken));
                Check(updates >= 2, $"our server made {updates} key update(s)");
                detail += $"; {updates} key updates by our server, each acknowledged by Chromium in the new phase";
            }

            return CaseResult.Pass(detail);
        }
        finally
        {
            if (relay is not null) await relay.DisposeAsync();
        }
    }

    private async Task<string> LoadAsync(OurServer server, int port, string path, bool ipv6, CancellationToken cancellationToken)
    {
        string profile = workspace.NewDirectory("chromium");
        string origin = $"localhost:{port.ToString(CultureInfo.InvariantCulture)}";
        PeerRun run = await InteropWorkspace.RunAsync(
            "chromium",
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                "--disable-component-update", "--disable-sync", "--enable-quic", $"--origin-to-force-quic-on={origin}",
                $"--ignore-certificate-errors-spki-list={InteropWorkspace.SpkiHash(server.Certificate)}",
                $"--host-resolver-rules=MAP localhost {(ipv6 ? "[::1]" : "127.0.0.1")}", $"--user-data-dir={profile}",
                "--dump-dom", $"https://{origin}{path}",
            ],
            PeerTimeout,
            cancellationToken);
        Check(!run.TimedOut, "chromium timed out");
        Check(run.StandardOutput.Length > 0, $"chromium printed no page: {run.Tail()}");
        return run.StandardOutput;
    }

    private static void VerifyPage(string dom, int size)
    {
        const string open = "<pre id=\"filler\">";
        int start = dom.IndexOf(open, StringComparison.Ordinal);
        int end = start < 0 ? -1 : dom.IndexOf("</pre>", start, StringComparison.Ordinal);
        Check(start >= 0 && end > start, "the page did not load (no filler in the DOM)");
        int length = end - start - open.Length;
        Check(length == size, $"filler of {length} B, expected {size}");
        Check(dom.Contains(OurServer.PageMarker(size), StringComparison.Ordinal), "the page's end marker is missing");
    }

    private static int CountLocalKeyUpdates(string qlog)
    {
        int count = 0;
        foreach (string line in qlog.Split('\n'))
        {
            if (line.Contains("\"quic:key_updated\"", StringComparison.Ordinal) && line.Contains("\"local_update\"", StringComparison.Ordinal)
                && line.Contains("server_1rtt_secret", StringComparison.Ordinal))
            {
                count++;
            }
        }

        return count;
    }
}
