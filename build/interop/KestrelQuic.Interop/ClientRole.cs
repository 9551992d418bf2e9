using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using KestrelQuic.Configuration;
using KestrelQuic.Crypto;
using KestrelQuic.Http;
using KestrelQuic.Testing;
using static KestrelQuic.Interop.CaseFailedException;

namespace KestrelQuic.Interop;

/// <summary>Our HTTP/3 client (<see cref="ManagedHttp3Handler"/>) against ngtcp2's HTTP/3 server, gtlsserver.</summary>
internal sealed partial class ClientRole(InteropWorkspace workspace) : IRole
{
    public string Peer => "gtlsserver";

    public async Task<CaseResult> RunAsync(string testCase, CancellationToken cancellationToken)
    {
        if (testCase == "v2") return CaseResult.Unsupported("ngtcp2 0.12 knows only the QUIC v2 draft (0x709a50c4), not RFC 9369 v2");

        string[] serverOptions = testCase switch
        {
            "retry" => ["-V"],
            "chacha20" => ["--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"],
            "multiplexing" => ["--max-streams-bidi=1000"],
            // gtlsserver abandons a handshake after 10 s by default: 30% loss can take longer (gtlsclient gets the same).
            // Idle timeouts of two minutes, as in the server role: after seconds of handshake loss, PTOs back off far.
            "handshakeloss" or "handshakecorruption" => ["--handshake-timeout=60s", "--timeout=120s"],
            _ => [],
        };
        bool logged = testCase is "retry" or "keyupdate" or "zerortt";
        await using var server = await GtlsServerProcess.StartAsync(workspace, testCase, serverOptions, logged, longChain: testCase == "amplificationlimit", ipv6: testCase == "ipv6", cancellationToken);
        if (testCase is "handshakeloss" or "handshakecorruption") return await LossyHandshakesAsync(testCase, server, cancellationToken);

        UdpRelay? relay = Links.NeedsRelay(testCase) ? Links.Create(testCase, server.EndPoint) : null;
        try
        {
            IPEndPoint target = relay?.LocalEndPoint ?? server.EndPoint;
            return testCase switch
            {
                "handshake" => await DownloadAsync(target, ["1k"], null, cancellationToken),
                "transfer" => await DownloadAsync(target, ["2m", "3m", "5m"], o => { o.Configuration.MaxData = 64 * 1024; o.Configuration.MaxStreamData = 32 * 1024; }, cancellationToken),
                "multiplexing" => await MultiplexingAsync(target, cancellationToken),
                "retry" => await RetryAsync(server, target, cancellationToken),
                "resumption" => await ResumptionAsync(server, target, earlyData: false, cancellationToken),
                "zerortt" => await ResumptionAsync(server, target, earlyData: true, cancellationToken),
                "http3" => await DownloadAsync(target, ["1k", "2m", "m/7"], null, cancellationToken),
                "chacha20" => await DownloadAsync(target, ["1k", "2m"], o => o.Configuration.CipherSuites = [CipherSuite.ChaCha20Poly1305Sha256], cancellationToken),
                "keyupdate" => await KeyUpdateAsync(server, target, cancellationToken),
                "transferloss" or "transfercorruption" => await WithRelayAsync(relay!, DownloadAsync(target, ["5m"], null, cancellationToken)),
                "longrtt" => await WithRelayAsync(relay!, DownloadAsync(target, ["1k", "m/1"], null, cancellationToken)),
                "blackhole" => await BlackholeAsync(relay!, target, cancellationToken),
                "rebind-port" or "rebind-addr" => await RebindAsync(relay!, target, testCase == "rebind-addr", cancellationToken),
                "amplificationlimit" => await AmplificationAsync(relay!, target, cancellationToken),
                "ipv6" => await DownloadAsync(target, ["1k", "2m"], null, cancellationToken),
                _ => throw new ArgumentOutOfRangeException(nameof(testCase), testCase, null),
            };
        }
        finally
        {
            if (relay is not null) await relay.DisposeAsync();
        }
    }

    private Http3HandlerOptions Options(Action<Http3HandlerOptions>? configure)
    {
        var options = new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration
            {
                UseSystemTrust = false,
                TrustedCertificateAuthorities = [workspace.Certificate, workspace.ChainRoot],
                // Our qlog files beside the peers' logs when asked for (as the server role does).
                QlogDirectory = Environment.GetEnvironmentVariable("KESTRELQUIC_INTEROP_QLOG") == "1" ? InteropWorkspace.LogDirectory : null,
            },
            ConnectTimeout = TimeSpan.FromSeconds(60),
        };
        configure?.Invoke(options);
        return options;
    }

    private static Uri Url(IPEndPoint target, string file) =>
        new($"https://{(target.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? "[::1]" : "127.0.0.1")}:{target.Port.ToString(CultureInfo.InvariantCulture)}/{file}");

    /// <summary>GETs <paramref name="files"/> in parallel on one handler and checks every body.</summary>
    private async Task<CaseResult> DownloadAsync(IPEndPoint target, string[] files, Action<Http3HandlerOptions>? configure, CancellationToken cancellationToken)
    {
        using var handler = new ManagedHttp3Handler(Options(configure));
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromMinutes(3) };
        await GetAllAsync(client, target, files, cancellationToken);
        int connections = handler.GetQuicConnections().Count;
        return CaseResult.Pass($"{files.Sum(f => (long)Expected(f).Length):N0} bytes in {files.Length} request(s) verified on {connections} connection(s)");
    }

    private static async Task GetAllAsync(HttpClient client, IPEndPoint target, IEnumerable<string> files, CancellationToken cancellationToken)
    {
        await Task.WhenAll(files.Select(async f =>
        {
            using HttpResponseMessage response = await client.GetAsync(Url(target, f), cancellationToken);
            Check(response.StatusCode == HttpStatusCode.OK, $"/{f}: {(int)response.StatusCode}");
            Check(response.Version == HttpVersion.Version30, $"/{f}: HTTP/{response.Version}");
            byte[] body = await response.Content.ReadAsByteArrayAsync(cancellationToken);
            Check(body.AsSpan().SequenceEqual(Expected(f)), $"/{f}: {body.Length} bytes, content differs");
        }));
    }

    private static byte[] Expected(string file)
    {
        if (file.StartsWith("m/", StringComparison.Ordinal))
        {
            int i = int.Parse(file.AsSpan(2), CultureInfo.InvariantCulture);
            return InteropWorkspace.Content(file, 32 + (i % 64));
        }

        return InteropWorkspace.Content(file, Array.Find(InteropWorkspace.Documents, d => d.Name == file).Size);
    }

    private async Task<CaseResult> MultiplexingAsync(IPEndPoint target, CancellationToken cancellationToken)
    {
        string[] files = Enumerable.Range(0, InteropWorkspace.MultiplexingFiles).Select(i => $"m/{i.ToString(CultureInfo.InvariantCulture)}").ToArray();
        using var handler = new ManagedHttp3Handler(Options(o => { o.MaxConnectionsPerServer = 1; o.MaxConcurrentStreamsPerConnection = 1000; }));
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromMinutes(3) };
        await GetAllAsync(client, target, files, cancellationToken);
        int connections = handler.GetQuicConnections().Count;
        Check(connections == 1, $"{connections} connections were used");
        return CaseResult.Pass($"{files.Length} files on one connection, server limit 1,000 bidirectional streams");
    }

    private async Task<CaseResult> RetryAsync(GtlsServerProcess server, IPEndPoint target, CancellationToken cancellationToken)
    {
        CaseResult result = await DownloadAsync(target, ["1k"], null, cancellationToken);
        Check(await server.WaitForLogAsync(RetrySent(), cancellationToken), "gtlsserver sent no Retry");
        return CaseResult.Pass("Retry followed with its token; " + result.Detail);
    }

    private async Task<CaseResult> ResumptionAsync(GtlsServerProcess server, IPEndPoint target, bool earlyData, CancellationToken cancellationToken)
    {
        var store = new CountingSessionStore();
        using (var firstHandler = new ManagedHttp3Handler(Options(o => o.SessionStore = store)))
        using (var first = new HttpClient(firstHandler))
        {
            await GetAllAsync(first, target, ["1k"], cancellationToken);
            var waited = Stopwatch.StartNew();
            while (store.Tickets == 0 && waited.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20, cancellationToken);
            Check(store.Tickets > 0, "gtlsserver sent no session ticket");
            Check(!Assert1(firstHandler).IsResumed, "the first connection claims to be resumed");
        }

        using var handler = new ManagedHttp3Handler(Options(o =>
        {
            o.SessionStore = store;
            o.EnableEarlyData = earlyData;
        }));
        using var second = new HttpClient(handler);
        await GetAllAsync(second, target, ["1k"], cancellationToken);
        QuicConnection connection = Assert1(handler);
        Check(connection.IsResumed, "the second connection did a full handshake");
        if (!earlyData) return CaseResult.Pass("second handshake resumed (PSK, no Certificate message)");
        Check(connection.IsEarlyDataAccepted, "gtlsserver did not accept 0-RTT");
        Check(await server.WaitForLogAsync(ZeroRttStreamReceived(), cancellationToken), "gtlsserver saw no STREAM frame in a 0-RTT packet");
        return CaseResult.Pass("request sent in 0-RTT and accepted on the resumed connection");
    }

    private static QuicConnection Assert1(ManagedHttp3Handler handler)
    {
        IReadOnlyList<QuicConnection> connections = handler.GetQuicConnections();
        Check(connections.Count == 1, $"{connections.Count} connections");
        return connections[0];
    }

    private async Task<CaseResult> KeyUpdateAsync(GtlsServerProcess server, IPEndPoint target, CancellationToken cancellationToken)
    {
        // Our client starts a key update once it sealed 10 packets under a key (it sends few: mostly ACKs).
        CaseResult result = await DownloadAsync(target, ["2m"], o => o.Configuration.KeyUpdateInterval = 10, cancellationToken);
        Check(await server.WaitForLogAsync(ReceivedPhase1(), cancellationToken), "gtlsserver received no 1-RTT packet with key phase 1");
        Check(await server.WaitForLogAsync(SentPhase1(), cancellationToken), "gtlsserver sent no 1-RTT packet with key phase 1");
        return CaseResult.Pass("our client updated the keys; both sides sent key phase 1; " + result.Detail);
    }

    private static async Task<CaseResult> WithRelayAsync(UdpRelay relay, Task<CaseResult> transfer)
    {
        CaseResult result = await transfer;
        return CaseResult.Pass($"{result.Detail}; relay {ServerRole.Describe(relay)}");
    }

    private async Task<CaseResult> BlackholeAsync(UdpRelay relay, IPEndPoint target, CancellationToken cancellationToken)
    {
        var blackhole = new Blackhole(relay, startAfterBytes: 1 << 20);
        CaseResult result = await DownloadAsync(target, ["10m"], null, cancellationToken);
        Check(blackhole.Outages >= 1 && blackhole.Dropped > 0, "the link never went down during the transfer");
        return CaseResult.Pass($"{result.Detail}; {blackhole.Outages} outage(s) of 2 s, {blackhole.Dropped} datagrams dropped");
    }

    private async Task<CaseResult> RebindAsync(UdpRelay relay, IPEndPoint target, bool newAddress, CancellationToken cancellationToken)
    {
        var rebinder = new Rebinder(relay, everyBytes: 2 << 20, newAddress);
        CaseResult result = await DownloadAsync(target, ["10m"], null, cancellationToken);
        Check(rebinder.Rebinds >= 2, $"only {rebinder.Rebinds} rebinding(s) happened");
        return CaseResult.Pass($"{result.Detail}; client {(newAddress ? "address and port" : "port")} changed {rebinder.Rebinds} times");
    }

    private async Task<CaseResult> AmplificationAsync(UdpRelay relay, IPEndPoint target, CancellationToken cancellationToken)
    {
        // The server is ngtcp2 here: our part is to complete the handshake against a 10-certificate chain with our
        // early datagrams lost; the peer's ratio is reported, not judged.
        var meter = new AmplificationMeter(relay, dropClientDatagrams: 2);
        CaseResult result = await DownloadAsync(target, ["1k"], null, cancellationToken);
        Check(meter.Validated, "gtlsserver never saw a Handshake packet from our client");
        return CaseResult.Pass($"{result.Detail}; chain of 10 validated; gtlsserver's ratio before validation {meter.MaxRatio:F2} ({meter.BytesBeforeValidation:N0} B)");
    }

    private async Task<CaseResult> LossyHandshakesAsync(string testCase, GtlsServerProcess server, CancellationToken cancellationToken)
    {
        const int lanes = 5;
        int done = 0;
        long dropped = 0, corrupted = 0;
        await Parallel.ForAsync(0, lanes, cancellationToken, async (lane, ct) =>
        {
            for (int i = lane; i < InteropCases.LossyHandshakes; i += lanes)
            {
                await using UdpRelay relay = Links.Create(testCase, server.EndPoint, lane: i);
                try
                {
                    await DownloadAsync(relay.LocalEndPoint, ["1k"], o => o.Configuration.IdleTimeout = TimeSpan.FromMinutes(2), ct);
                }
                catch (Exception e) when (e is not CaseFailedException)
                {
                    throw new CaseFailedException($"connection {i + 1}: {e.GetType().Name}: {e.Message}");
                }

                Interlocked.Increment(ref done);
                Interlocked.Add(ref dropped, relay.ToServerCounters.Dropped + relay.ToClientCounters.Dropped);
                Interlocked.Add(ref corrupted, relay.ToServerCounters.Corrupted + relay.ToClientCounters.Corrupted);
            }
        });
        return CaseResult.Pass($"{done} connections, each 1 KB verified; relay dropped {dropped}, corrupted {corrupted} datagrams");
    }

    // gtlsserver's frame log: "pkt tx pkn=… type=Retry", "frm rx 1 0RTT STREAM(0x0b)", "pkt rx pkn=… type=1RTT k=1".
    [GeneratedRegex(@"type=Retry|Retry packet")]
    private static partial Regex RetrySent();

    [GeneratedRegex(@"frm rx \d+ 0RTT STREAM")]
    private static partial Regex ZeroRttStreamReceived();

    [GeneratedRegex(@"pkt tx pkn=\d+ dcid=\S+ type=1RTT k=1")]
    private static partial Regex SentPhase1();

    [GeneratedRegex(@"pkt rx pkn=\d+ dcid=\S+ type=1RTT k=1")]
    private static partial Regex ReceivedPhase1();
}

/// <summary>Keeps tickets and tokens in memory and counts the tickets stored.</summary>
internal sealed class CountingSessionStore : IQuicSessionStore
{
    private readonly InMemoryQuicSessionStore _inner = new();
    private int _tickets;

    public int Tickets => Volatile.Read(ref _tickets);

    public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

    public void StoreSessionTicket(string serverName, byte[] ticket)
    {
        Interlocked.Increment(ref _tickets);
        _inner.StoreSessionTicket(serverName, ticket);
    }

    public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

    public void StoreToken(string serverName, byte[] token) => _inner.StoreToken(serverName, token);
}

/// <summary>gtlsserver serving the workspace's document root on a loopback port.</summary>
internal sealed class GtlsServerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private readonly string? _logFile;

    private GtlsServerProcess(Process process, IPEndPoint endPoint, string? logFile)
    {
        _process = process;
        EndPoint = endPoint;
        _logFile = logFile;
    }

    public IPEndPoint EndPoint { get; }

    public static async Task<GtlsServerProcess> StartAsync(InteropWorkspace workspace, string testCase, string[] options, bool logged, bool longChain, bool ipv6, CancellationToken cancellationToken)
    {
        IPAddress address = ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        int port = InteropWorkspace.FreePort(address);
        var psi = new ProcessStartInfo("gtlsserver") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        // With KESTRELQUIC_INTEROP_LOGS set, every case keeps gtlsserver's frame log for debugging.
        psi.ArgumentList.Add(logged || InteropWorkspace.LogDirectory is not null ? "--no-http-dump" : "-q");
        foreach (string o in options) psi.ArgumentList.Add(o);
        foreach (string a in (string[])["-d", workspace.DocumentRoot, address.ToString(), port.ToString(CultureInfo.InvariantCulture)]) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(longChain ? workspace.ChainKeyPath : workspace.KeyPath);
        psi.ArgumentList.Add(longChain ? workspace.ChainPath : workspace.CertificatePath);
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("could not start gtlsserver");
        string? logFile = InteropWorkspace.LogDirectory is { } logs ? Path.Combine(logs, $"{testCase}.gtlsserver.log") : null;
        var server = new GtlsServerProcess(process, new IPEndPoint(address, port), logFile);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (int i = 0; i < 400 && !InteropWorkspace.IsUdpPortBound(address, port); i++)
        {
            if (process.HasExited) throw new CaseFailedException($"gtlsserver exited with {process.ExitCode}: {server.Log()}");
            await Task.Delay(25, cancellationToken);
        }

        return server;
    }

    /// <summary>Waits a moment for <paramref name="pattern"/> to show in the log (it arrives through a pipe).</summary>
    public async Task<bool> WaitForLogAsync(Regex pattern, CancellationToken cancellationToken)
    {
        for (int i = 0; i < 100; i++)
        {
            if (pattern.IsMatch(Log())) return true;
            await Task.Delay(20, cancellationToken);
        }

        return false;
    }

    private string Log()
    {
        lock (_log)
        {
            return _log.ToString();
        }
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
        }

        await _process.WaitForExitAsync();
        _process.Dispose();
        if (_logFile is not null) await File.WriteAllTextAsync(_logFile, Log());
    }
}
