using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Http3Server;
using KestrelQuic.Configuration;
using KestrelQuic.Testing;
using static KestrelQuic.Interop.CaseFailedException;

namespace KestrelQuic.Interop;

/// <summary>Our Kestrel server (samples/Http3Server) against ngtcp2's HTTP/3 client, gtlsclient.</summary>
internal sealed partial class ServerRole(InteropWorkspace workspace) : IRole
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(180);

    private static readonly TimeSpan LossyIdleTimeout = TimeSpan.FromMinutes(2);

    private string _case = "";

    public string Peer => "gtlsclient";

    public async Task<CaseResult> RunAsync(string testCase, CancellationToken cancellationToken)
    {
        _case = testCase;
        switch (testCase)
        {
            case "v2":
                return CaseResult.Unsupported("ngtcp2 0.12 knows only the QUIC v2 draft (0x709a50c4), not RFC 9369 v2");
            case "handshakeloss" or "handshakecorruption":
                return await LossyHandshakesAsync(testCase, cancellationToken);
        }

        ServerSettings settings = testCase switch
        {
            // Small windows both ways: flow control has to open for 10 MB to move.
            "transfer" => new() { Quic = q => { q.MaxData = 64 * 1024; q.MaxStreamData = 32 * 1024; } },
            "multiplexing" => new() { Quic = q => q.MaxBidirectionalStreams = 1000 },
            "retry" => new() { Quic = q => q.Retry = RetryMode.Always },
            "zerortt" => new() { Quic = q => q.EnableEarlyData = true },
            "amplificationlimit" => new() { LongChain = true, Quic = q => q.Retry = RetryMode.Never },
            "ipv6" => new() { Ipv6 = true },
            _ => new(),
        };
        await using OurServer server = await OurServer.StartAsync(workspace, settings);
        UdpRelay? relay = Links.NeedsRelay(testCase) ? Links.Create(testCase, server.EndPoint) : null;
        try
        {
            IPEndPoint target = relay?.LocalEndPoint ?? server.EndPoint;
            return testCase switch
            {
                "handshake" => await DownloadAsync(target, [1024], [], cancellationToken),
                "transfer" => await DownloadAsync(target, [2 << 20, 3 << 20, 5 << 20], ["--max-data=64K", "--max-stream-data-bidi-local=32K"], cancellationToken),
                "multiplexing" => await MultiplexingAsync(server, target, cancellationToken),
                "retry" => await RetryAsync(target, cancellationToken),
                "resumption" => await ResumptionAsync(target, earlyData: false, cancellationToken),
                "zerortt" => await ResumptionAsync(target, earlyData: true, cancellationToken),
                "http3" => await Http3Async(target, cancellationToken),
                "chacha20" => await ChaCha20Async(target, cancellationToken),
                "keyupdate" => await KeyUpdateAsync(target, cancellationToken),
                "transferloss" or "transfercorruption" or "longrtt" => await ImpairedTransferAsync(testCase, relay!, target, cancellationToken),
                "blackhole" => await BlackholeAsync(relay!, target, cancellationToken),
                "rebind-port" or "rebind-addr" => await RebindAsync(relay!, target, testCase == "rebind-addr", cancellationToken),
                "amplificationlimit" => await AmplificationAsync(relay!, target, cancellationToken),
                "ipv6" => await DownloadAsync(target, [1024, 100_000], [], cancellationToken),
                _ => throw new ArgumentOutOfRangeException(nameof(testCase), testCase, null),
            };
        }
        finally
        {
            if (relay is not null) await relay.DisposeAsync();
        }
    }

    /// <summary>Runs gtlsclient for <paramref name="paths"/> on one connection, downloading into <paramref name="downloads"/>.</summary>
    private static async Task<PeerRun> GtlsClientAsync(string label, IPEndPoint target, IEnumerable<string> options, IEnumerable<string> paths, string downloads, CancellationToken cancellationToken, bool quiet = true)
    {
        string port = target.Port.ToString(CultureInfo.InvariantCulture);
        var args = new List<string> { "--exit-on-all-streams-close", "--no-http-dump", $"--download={downloads}", "--timeout=30s" };
        // Frame logs (without the data dumps) when a check reads them or logs are kept (KESTRELQUIC_INTEROP_LOGS).
        args.Add(quiet && Environment.GetEnvironmentVariable("KESTRELQUIC_INTEROP_PEER_LOGS") != "1" ? "-q" : "--no-quic-dump");
        args.AddRange(options);
        args.Add(target.Address.ToString());
        args.Add(port);
        args.AddRange(paths.Select(p => $"https://localhost:{port}{p}"));
        PeerRun run = await InteropWorkspace.RunAsync("gtlsclient", args, PeerTimeout, cancellationToken);
        if (InteropWorkspace.LogDirectory is { } logs) await File.AppendAllTextAsync(Path.Combine(logs, $"{label}.gtlsclient.log"), run.StandardError, CancellationToken.None);
        return run;
    }

    private async Task<CaseResult> DownloadAsync(IPEndPoint target, int[] sizes, string[] options, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("dl");
        PeerRun run = await GtlsClientAsync(_case, target, options, sizes.Select(s => $"/bytes/{s}"), dir, cancellationToken);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, sizes);
        return CaseResult.Pass($"{sizes.Sum(s => (long)s):N0} bytes in {sizes.Length} stream(s) verified");
    }

    private async Task<CaseResult> MultiplexingAsync(OurServer server, IPEndPoint target, CancellationToken cancellationToken)
    {
        // 2,000 requests, each for its own size (so each file name is unique), against a stream limit of 1,000.
        int[] sizes = Enumerable.Range(1, InteropWorkspace.MultiplexingFiles).ToArray();
        string dir = workspace.NewDirectory("mx");
        PeerRun run = await GtlsClientAsync(_case, target, [], sizes.Select(s => $"/bytes/{s}"), dir, cancellationToken);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, sizes);
        int served = server.Requests.Count(r => r.EndsWith("HTTP/3", StringComparison.Ordinal));
        Check(served == sizes.Length, $"server saw {served} HTTP/3 requests, expected {sizes.Length}");
        return CaseResult.Pass($"{sizes.Length} files on one connection, server limit 1,000 bidirectional streams");
    }

    private async Task<CaseResult> RetryAsync(IPEndPoint target, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("retry");
        PeerRun run = await GtlsClientAsync(_case, target, [], ["/bytes/1024"], dir, cancellationToken, quiet: false);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, [1024]);
        Check(RetryReceived().IsMatch(run.StandardError), "gtlsclient received no Retry packet");
        return CaseResult.Pass("Retry received and its token accepted; 1 KB verified");
    }

    private async Task<CaseResult> ResumptionAsync(IPEndPoint target, bool earlyData, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("resume");
        string session = Path.Combine(dir, "session"), tp = Path.Combine(dir, "tp");
        string[] options = [$"--session-file={session}", $"--tp-file={tp}", .. earlyData ? Array.Empty<string>() : ["--disable-early-data"]];
        string first = Path.Combine(dir, "1"), second = Path.Combine(dir, "2");
        Directory.CreateDirectory(first);
        Directory.CreateDirectory(second);
        PeerRun run1 = await GtlsClientAsync(_case, target, options, ["/conn"], first, cancellationToken);
        Check(run1.Succeeded, "first connection: " + run1.Describe());
        Check(File.Exists(session), "gtlsclient saved no session ticket");
        PeerRun run2 = await GtlsClientAsync(_case, target, options, ["/conn"], second, cancellationToken, quiet: false);
        Check(run2.Succeeded, "second connection: " + run2.Describe());
        string before = await File.ReadAllTextAsync(Path.Combine(first, "conn"), cancellationToken);
        string after = await File.ReadAllTextAsync(Path.Combine(second, "conn"), cancellationToken);
        Check(before.Contains("resumed=False", StringComparison.Ordinal), "first connection: " + before);
        Check(after.Contains("resumed=True", StringComparison.Ordinal), "second connection was not resumed: " + after);
        if (!earlyData)
        {
            Check(after.Contains("early_data=False", StringComparison.Ordinal), "early data although disabled: " + after);
            return CaseResult.Pass("second handshake resumed (PSK, no Certificate message)");
        }

        Check(after.Contains("early_data=True", StringComparison.Ordinal), "0-RTT not accepted: " + after);
        Check(ZeroRttStreamSent().IsMatch(run2.StandardError), "gtlsclient sent no STREAM frame in a 0-RTT packet");
        Check(!run2.StandardError.Contains("Early data was rejected", StringComparison.OrdinalIgnoreCase), "gtlsclient says early data was rejected");
        return CaseResult.Pass("request sent in 0-RTT and accepted on the resumed connection");
    }

    private async Task<CaseResult> Http3Async(IPEndPoint target, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("h3");
        PeerRun run = await GtlsClientAsync(_case, target, [], ["/", "/bytes/10000", "/bytes/250000"], dir, cancellationToken);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, [10000, 250000]);
        string page = await File.ReadAllTextAsync(Path.Combine(dir, "index.html"), cancellationToken);
        Check(page.Contains("<span id=\"protocol\">HTTP/3</span>", StringComparison.Ordinal), "page does not say HTTP/3");
        return CaseResult.Pass("3 requests on one HTTP/3 connection, page says HTTP/3, bodies verified");
    }

    private async Task<CaseResult> ChaCha20Async(IPEndPoint target, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("chacha");
        PeerRun run = await GtlsClientAsync(_case, target, ["--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"], ["/conn", "/bytes/100000"], dir, cancellationToken);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, [100000]);
        string conn = await File.ReadAllTextAsync(Path.Combine(dir, "conn"), cancellationToken);
        Check(conn.Contains("cipher=TLS_CHACHA20_POLY1305_SHA256", StringComparison.Ordinal), "negotiated " + conn);
        return CaseResult.Pass("TLS_CHACHA20_POLY1305_SHA256 negotiated, 100 KB verified");
    }

    private async Task<CaseResult> KeyUpdateAsync(IPEndPoint target, CancellationToken cancellationToken)
    {
        string dir = workspace.NewDirectory("ku");
        PeerRun run = await GtlsClientAsync(_case, target, ["--key-update=1ms"], ["/bytes/1000000"], dir, cancellationToken, quiet: false);
        Check(run.Succeeded, run.Describe());
        VerifyPattern(dir, [1_000_000]);
        Check(OneRttPhase1(true).IsMatch(run.StandardError), "gtlsclient sent no 1-RTT packet with key phase 1");
        Check(OneRttPhase1(false).IsMatch(run.StandardError), "our server sent no 1-RTT packet with key phase 1");
        return CaseResult.Pass("both sides sent key phase 1; 1 MB verified");
    }

    private async Task<CaseResult> ImpairedTransferAsync(string testCase, UdpRelay relay, IPEndPoint target, CancellationToken cancellationToken)
    {
        int[] sizes = testCase == "longrtt" ? [100_000, 100_000 + 1] : [5 << 20];
        CaseResult result = await DownloadAsync(target, sizes, [], cancellationToken);
        return CaseResult.Pass($"{result.Detail}; relay {Describe(relay)}");
    }

    private async Task<CaseResult> BlackholeAsync(UdpRelay relay, IPEndPoint target, CancellationToken cancellationToken)
    {
        var blackhole = new Blackhole(relay, startAfterBytes: 1 << 20);
        CaseResult result = await DownloadAsync(target, [10 << 20], [], cancellationToken);
        Check(blackhole.Outages >= 1 && blackhole.Dropped > 0, "the link never went down during the transfer");
        return CaseResult.Pass($"{result.Detail}; {blackhole.Outages} outage(s) of 2 s, {blackhole.Dropped} datagrams dropped");
    }

    private async Task<CaseResult> RebindAsync(UdpRelay relay, IPEndPoint target, bool newAddress, CancellationToken cancellationToken)
    {
        var rebinder = new Rebinder(relay, everyBytes: 2 << 20, newAddress);
        CaseResult result = await DownloadAsync(target, [10 << 20], [], cancellationToken);
        Check(rebinder.Rebinds >= 2, $"only {rebinder.Rebinds} rebinding(s) happened");
        return CaseResult.Pass($"{result.Detail}; client {(newAddress ? "address and port" : "port")} changed {rebinder.Rebinds} times");
    }

    private async Task<CaseResult> AmplificationAsync(UdpRelay relay, IPEndPoint target, CancellationToken cancellationToken)
    {
        var meter = new AmplificationMeter(relay, dropClientDatagrams: 2);
        CaseResult result = await DownloadAsync(target, [1024], [], cancellationToken);
        Check(meter.Validated, "the server never saw a Handshake packet from the client");
        Check(meter.MaxRatio <= 3.0, $"server sent {meter.MaxRatio:F2}x what it received before validating the address");
        // The chain is larger than three client Initials: the server must have reached its limit and waited.
        Check(meter.MaxRatio >= 2.5, $"the server never reached its limit (ratio {meter.MaxRatio:F2}): the chain was not sent");
        return CaseResult.Pass($"{result.Detail}; before address validation the server sent {meter.BytesBeforeValidation:N0} B for {meter.BytesReceivedBeforeValidation:N0} B received: max ratio {meter.MaxRatio:F2}");
    }

    private async Task<CaseResult> LossyHandshakesAsync(string testCase, CancellationToken cancellationToken)
    {
        // Idle timeouts of two minutes both ways: a handshake stretched over seconds of loss gives the client an RTT
        // sample of seconds (RFC 9002 §5.2 takes the first sample as it is), so its PTO after the handshake backs off
        // 9 s, 18 s, 36 s; with the default 30 s a connection whose request and probes fall into loss bursts idles out.
        await using OurServer server = await OurServer.StartAsync(workspace, new ServerSettings { Quic = q => q.IdleTimeout = LossyIdleTimeout });
        const int lanes = 5;
        int done = 0;
        long dropped = 0, corrupted = 0;
        await Parallel.ForAsync(0, lanes, cancellationToken, async (lane, ct) =>
        {
            for (int i = lane; i < InteropCases.LossyHandshakes; i += lanes)
            {
                await using UdpRelay relay = Links.Create(testCase, server.EndPoint, lane: i);
                string dir = workspace.NewDirectory("hl");
                int size = 1000 + i;
                // gtlsclient gives up a handshake after 10 s by default (and exits 0): bursts of loss can take longer.
                PeerRun run = await GtlsClientAsync(_case, relay.LocalEndPoint, ["--handshake-timeout=60s", "--timeout=120s"], [$"/bytes/{size}"], dir, ct);
                Check(run.Succeeded, $"connection {i + 1}: {run.Describe()}");
                VerifyPattern(dir, [size]);
                Interlocked.Increment(ref done);
                Interlocked.Add(ref dropped, relay.ToServerCounters.Dropped + relay.ToClientCounters.Dropped);
                Interlocked.Add(ref corrupted, relay.ToServerCounters.Corrupted + relay.ToClientCounters.Corrupted);
            }
        });
        return CaseResult.Pass($"{done} connections, each 1 KB verified; relay dropped {dropped}, corrupted {corrupted} datagrams");
    }

    internal static string Describe(UdpRelay relay) =>
        $"dropped {relay.ToServerCounters.Dropped + relay.ToClientCounters.Dropped}, corrupted {relay.ToServerCounters.Corrupted + relay.ToClientCounters.Corrupted} datagrams";

    /// <summary>Each /bytes/{n} download (saved as <c>n</c>) holds exactly the sample's pattern of n bytes.</summary>
    private static void VerifyPattern(string dir, int[] sizes)
    {
        int largest = sizes.Max();
        byte[] pattern = Http3ServerApp.CreatePattern(largest);
        foreach (int size in sizes)
        {
            string path = Path.Combine(dir, size.ToString(CultureInfo.InvariantCulture));
            Check(File.Exists(path), $"/bytes/{size} was not downloaded");
            byte[] data = File.ReadAllBytes(path);
            Check(data.AsSpan().SequenceEqual(pattern.AsSpan(0, size)), $"/bytes/{size}: {data.Length} bytes, content differs");
        }
    }

    // ngtcp2's frame log: "pkt rx pkn=0 dcid=… type=Retry", "frm tx 3 0RTT STREAM(0x0b)", "pkt tx pkn=9 dcid=… type=1RTT k=1".
    [GeneratedRegex(@"pkt rx \S+ dcid=\S+ (scid=\S+ )?type=Retry|Received Retry|type=Retry")]
    private static partial Regex RetryReceived();

    [GeneratedRegex(@"frm tx \d+ 0RTT STREAM")]
    private static partial Regex ZeroRttStreamSent();

    private static Regex OneRttPhase1(bool sent) => sent ? SentPhase1() : ReceivedPhase1();

    [GeneratedRegex(@"pkt tx pkn=\d+ dcid=\S+ type=1RTT k=1")]
    private static partial Regex SentPhase1();

    [GeneratedRegex(@"pkt rx pkn=\d+ dcid=\S+ type=1RTT k=1")]
    private static partial Regex ReceivedPhase1();
}
