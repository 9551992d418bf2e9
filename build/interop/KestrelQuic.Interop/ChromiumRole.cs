using System.Globalization;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Crypto;
using KestrelQuic.Testing;
using static KestrelQuic.Interop.CaseFailedException;

namespace KestrelQuic.Interop;

/// <summary>
/// Our Kestrel server against headless Chromium with QUIC forced for the origin. Chromium loads one page per run
/// (--dump-dom) and prints its DOM after the load event: pages whose scripts add to the DOM make it load many
/// resources on one connection (multiplexing) or on a second connection after the server closed the first
/// (resumption, zerortt); the lossy handshake cases start the browser several times.
/// </summary>
internal sealed class ChromiumRole(InteropWorkspace workspace) : IRole
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    // The interop runner asks for 2,000 files against a limit of at most 1,000 streams.
    private const int MuxScripts = 2000;
    private const int MuxStreamLimit = 100;
    private const int LossyBrowserStarts = 10;

    public string Peer => "chromium";

    public async Task<CaseResult> RunAsync(string testCase, CancellationToken cancellationToken)
    {
        switch (testCase)
        {
            case "multiplexing":
                return await MultiplexingAsync(cancellationToken);
            case "resumption" or "zerortt":
                return await ResumptionAsync(testCase, cancellationToken);
            case "v2":
                return await VersionTwoAsync(cancellationToken);
            case "handshakeloss" or "handshakecorruption":
                return await LossyHandshakesAsync(testCase, cancellationToken);
        }

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

    /// <summary>One page pulls <see cref="MuxScripts"/> scripts; the server allows 100 streams at a time.</summary>
    private async Task<CaseResult> MultiplexingAsync(CancellationToken cancellationToken)
    {
        await using OurServer server = await OurServer.StartAsync(workspace, new() { Quic = q => q.MaxBidirectionalStreams = MuxStreamLimit });
        string dom = await LoadAsync(server, server.Port, $"/mux/{MuxScripts.ToString(CultureInfo.InvariantCulture)}", false, cancellationToken);
        Check(dom.Contains($"LOADED-{MuxScripts.ToString(CultureInfo.InvariantCulture)}<", StringComparison.Ordinal), "not every script ran before the load event");
        IReadOnlyList<SeenRequest> seen = server.Seen;
        Check(seen.Count == MuxScripts, $"server saw {seen.Count} script requests, expected {MuxScripts}");
        Check(seen.Select(r => r.Path).Distinct().Count() == MuxScripts, "some scripts were requested twice");
        int connections = seen.Select(r => r.Connection).Distinct().Count();
        Check(connections == 1, $"the scripts came over {connections} connections");
        return CaseResult.Pass($"{MuxScripts:N0} scripts of one page over one connection (server limit {MuxStreamLimit} bidirectional streams), all run before the load event");
    }

    /// <summary>
    /// The page's first script makes the server close the connection (GOAWAY); its second script then needs a new
    /// connection in the same browser, which resumes the session from the first one's ticket (and, for zerortt,
    /// sends the request in 0-RTT).
    /// </summary>
    private async Task<CaseResult> ResumptionAsync(string testCase, CancellationToken cancellationToken)
    {
        bool zeroRtt = testCase == "zerortt";
        await using OurServer server = await OurServer.StartAsync(workspace, new() { Quic = q => q.EnableEarlyData = zeroRtt });
        UdpRelay? relay = Links.NeedsRelay(testCase) ? Links.Create(testCase, server.EndPoint) : null;
        try
        {
            string dom = await LoadAsync(server, relay?.LocalEndPoint.Port ?? server.Port, "/resume", false, cancellationToken);
            IReadOnlyList<SeenRequest> seen = server.Seen;
            SeenRequest? first = seen.FirstOrDefault(r => r.Path == "/resume/first.js");
            SeenRequest? second = seen.FirstOrDefault(r => r.Path == "/resume/second.js");
            Check(first is not null && second is not null, $"the server saw {string.Join(", ", seen.Select(r => r.Path))}; page: {Excerpt(dom)}");
            Check(dom.Contains("SECOND-", StringComparison.Ordinal), $"the second script did not run: {Excerpt(dom)}");
            Check(second!.Connection != first!.Connection, "the second script came over the first connection");
            Check(!first.Resumed, "the first connection was already resumed");
            Check(second.Resumed, "the second connection was not resumed");
            if (!zeroRtt)
            {
                Check(!second.EarlyDataAccepted, "early data although the server does not offer it");
                return CaseResult.Pass("after GOAWAY closed the first connection, the second one resumed its session (PSK, no Certificate)");
            }

            Check(second.EarlyDataAccepted, "the second connection accepted no 0-RTT");
            Check(second.EarlyRequest, "the second script's request did not arrive in 0-RTT");
            string detail = "after GOAWAY closed the first connection, the second one resumed and its request arrived in 0-RTT";
            return CaseResult.Pass(relay is null ? detail : $"{detail}; relay {ServerRole.Describe(relay)}");
        }
        finally
        {
            if (relay is not null) await relay.DisposeAsync();
        }
    }

    /// <summary>Chromium with RFC 9369 v2 as its only QUIC version (<c>--quic-version=RFCv2</c>).</summary>
    private async Task<CaseResult> VersionTwoAsync(CancellationToken cancellationToken)
    {
        await using OurServer server = await OurServer.StartAsync(workspace, new());
        string dom = await LoadAsync(server, server.Port, "/conn", false, cancellationToken, ["--quic-version=RFCv2"]);
        Check(dom.Contains("protocol=HTTP/3", StringComparison.Ordinal), $"no HTTP/3 connection: {Excerpt(dom)}");
        Check(dom.Contains("version=0x6b3343cf", StringComparison.Ordinal), $"not QUIC v2: {Excerpt(dom)}");
        return CaseResult.Pass("Chromium with --quic-version=RFCv2 connected in QUIC v2 (0x6b3343cf), request served over HTTP/3");
    }

    /// <summary>
    /// <see cref="LossyBrowserStarts"/> browser starts, each a fresh profile (so a full handshake) through its own
    /// lossy relay. The interop runner makes 50 connections; a browser start costs seconds of CPU on this 2-core
    /// machine, so fewer, and the gtlsclient/gtlsserver roles make the full 50.
    /// </summary>
    private async Task<CaseResult> LossyHandshakesAsync(string testCase, CancellationToken cancellationToken)
    {
        await using OurServer server = await OurServer.StartAsync(workspace, new());
        long dropped = 0, corrupted = 0;
        for (int i = 0; i < LossyBrowserStarts; i++)
        {
            await using UdpRelay relay = Links.Create(testCase, server.EndPoint, lane: i);
            int size = 1000 + i;
            string dom = await LoadAsync(server, relay.LocalEndPoint.Port, $"/page/{size.ToString(CultureInfo.InvariantCulture)}", false, cancellationToken);
            try
            {
                VerifyPage(dom, size);
            }
            catch (CaseFailedException e)
            {
                throw new CaseFailedException($"browser start {i + 1}: {e.Message}");
            }

            dropped += relay.ToServerCounters.Dropped + relay.ToClientCounters.Dropped;
            corrupted += relay.ToServerCounters.Corrupted + relay.ToClientCounters.Corrupted;
        }

        return CaseResult.Pass($"{LossyBrowserStarts} browser starts (the runner makes 50 connections; each start costs seconds here), each a full handshake and page verified; relay dropped {dropped}, corrupted {corrupted} datagrams");
    }

    private static string Excerpt(string dom) => dom.Length <= 300 ? dom : dom[..300] + "…";

    private async Task<string> LoadAsync(OurServer server, int port, string path, bool ipv6, CancellationToken cancellationToken, string[]? extraArgs = null)
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
                .. extraArgs ?? [], "--dump-dom", $"https://{origin}{path}",
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
