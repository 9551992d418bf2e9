using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Tests.Shared;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace KestrelQuic.Http.Tests;

/// <summary>The handler against ngtcp2's HTTP/3 server (gtlsserver): downloads verified by SHA-256, loss, ciphers, resumption.</summary>
[Collection(nameof(GtlsCollection))]
public sealed class GtlsServerTests
{
    private readonly ITestOutputHelper _output;

    public GtlsServerTests(ITestOutputHelper output) => _output = output;

    internal static Http3HandlerOptions TrustingOptions(Action<Http3HandlerOptions>? configure = null)
    {
        var options = new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration
            {
                UseSystemTrust = false,
                TrustedCertificateAuthorities = [GtlsServer.Certificate],
            },
        };
        configure?.Invoke(options);
        return options;
    }

    internal static async Task<byte[]> GetSha256Async(HttpClient client, Uri uri, CancellationToken cancellationToken = default)
    {
        using HttpResponseMessage response = await client.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version30, response.Version);
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken);

        // Large reads, as an application streaming a download to disk would do.
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[256 * 1024];
        int n;
        while ((n = await body.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, n);
        }

        return hash.GetHashAndReset();
    }

    [Fact]
    public async Task Get_SmallFile_ContentVerified()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var handler = new ManagedHttp3Handler(TrustingOptions());
        using var client = new HttpClient(handler);

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile));
        byte[] body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(HttpVersion.Version30, response.Version);
        Assert.Equal(GtlsServer.SmallSize, body.Length);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
        Assert.Equal(GtlsServer.SmallSize, response.Content.Headers.ContentLength);
    }

    [Fact]
    public async Task Get_MissingFile_Is404()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var client = new HttpClient(new ManagedHttp3Handler(TrustingOptions()));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "no-such-file"));

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal(HttpVersion.Version30, response.Version);
    }

    [Fact]
    public async Task Get_UntrustedCertificate_FailsByDefault_HandshakeFailureLogged()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var logs = new ListLoggerProvider();
        using ILoggerFactory loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(logs));
        using var client = new HttpClient(new ManagedHttp3Handler(new Http3HandlerOptions { LoggerFactory = loggerFactory }));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile)));

        Assert.Equal(HttpRequestError.ConnectionError, e.HttpRequestError);
        Assert.IsType<QuicException>(e.InnerException);

        // Event 4 through Http3HandlerOptions.LoggerFactory: our client refused the certificate with a TLS alert.
        string failed = await logs.WaitForAsync("KestrelQuic|HandshakeFailed|", TimeSpan.FromSeconds(10));
        _output.WriteLine(failed);
        Assert.Matches("TLS alert (bad_certificate|unknown_ca)", failed);
    }

    [Fact]
    public async Task Get_50MB_ContentVerified_ComparedWithGtlsclient()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var client = new HttpClient(new ManagedHttp3Handler(TrustingOptions()));
        Uri uri = new(server.BaseUri, GtlsServer.LargeFile);

        // The first download runs on freshly jitted code (gtlsclient is compiled ahead of time); the second, on a new
        // connection, shows the steady state. Both are reported.
        var cold = Stopwatch.StartNew();
        byte[] hash = await GetSha256Async(client, uri);
        cold.Stop();
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.LargeFile), hash);
        using var secondClient = new HttpClient(new ManagedHttp3Handler(TrustingOptions()));
        var watch = Stopwatch.StartNew();
        hash = await GetSha256Async(secondClient, uri);
        watch.Stop();
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.LargeFile), hash);

        string download = Directory.CreateTempSubdirectory("kq-gtlsclient").FullName;
        try
        {
            TimeSpan reference = await server.RunGtlsClientAsync(GtlsServer.LargeFile, download);
            byte[] referenceHash = SHA256.HashData(File.ReadAllBytes(Path.Combine(download, GtlsServer.LargeFile)));
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.LargeFile), referenceHash);
            double mb = GtlsServer.LargeSize / (1024.0 * 1024.0);
            _output.WriteLine($"50 MB from gtlsserver: ManagedHttp3Handler {watch.Elapsed.TotalSeconds:F2} s ({mb / watch.Elapsed.TotalSeconds:F1} MB/s; first download in the process {cold.Elapsed.TotalSeconds:F2} s); gtlsclient {reference.TotalSeconds:F2} s ({mb / reference.TotalSeconds:F1} MB/s, process start included)");
        }
        finally
        {
            Directory.Delete(download, recursive: true);
        }
    }

    [Fact]
    public async Task Parallel200Requests_OneConnection_AllVerified()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var handler = new ManagedHttp3Handler(TrustingOptions(o => o.MaxConnectionsPerServer = 1));
        using var client = new HttpClient(handler);
        Uri uri = new(server.BaseUri, GtlsServer.SmallFile);

        byte[][] hashes = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => GetSha256Async(client, uri)));

        Assert.All(hashes, h => Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), h));
        Assert.Equal(1, handler.ConnectionsOpened);
    }

    [Fact]
    public async Task ServerStreamLimitReached_OpensAnotherConnection()
    {
        await using GtlsServer server = await GtlsServer.StartAsync("--max-streams-bidi=10");
        using var handler = new ManagedHttp3Handler(TrustingOptions());
        using var client = new HttpClient(handler);
        Uri uri = new(server.BaseUri, GtlsServer.SmallFile);

        // Warm up so the pool knows the server's limit, then exceed it.
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(client, uri));
        byte[][] hashes = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => GetSha256Async(client, uri)));

        Assert.All(hashes, h => Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), h));
        Assert.True(handler.ConnectionsOpened > 1, $"connections opened: {handler.ConnectionsOpened}");
    }

    [Fact]
    public async Task TenPercentLossEachWay_ContentVerified()
    {
        await using GtlsServer server = await GtlsServer.StartAsync("-t", "0.1", "-r", "0.1");
        using var client = new HttpClient(new ManagedHttp3Handler(TrustingOptions(o => o.ConnectTimeout = TimeSpan.FromSeconds(30))));

        var watch = Stopwatch.StartNew();
        byte[][] hashes = await Task.WhenAll(
            GetSha256Async(client, new Uri(server.BaseUri, GtlsServer.MediumFile)),
            GetSha256Async(client, new Uri(server.BaseUri, GtlsServer.SmallFile)),
            GetSha256Async(client, new Uri(server.BaseUri, GtlsServer.SmallFile)));

        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.MediumFile), hashes[0]);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), hashes[1]);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), hashes[2]);
        _output.WriteLine($"2 MB + 2 KB with 10% loss each way: {watch.Elapsed.TotalSeconds:F2} s");
    }

    [Fact]
    public async Task ChaCha20OnlyServer_ContentVerified_AndAesOnlyClientRefused()
    {
        await using GtlsServer server = await GtlsServer.StartAsync("--ciphers=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305");
        Uri uri = new(server.BaseUri, GtlsServer.SmallFile);
        using (var client = new HttpClient(new ManagedHttp3Handler(TrustingOptions(o => o.Configuration.CipherSuites = [KestrelQuic.Crypto.CipherSuite.ChaCha20Poly1305Sha256]))))
        {
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(client, uri));
        }

        using var aesOnly = new HttpClient(new ManagedHttp3Handler(TrustingOptions(o => o.Configuration.CipherSuites = [KestrelQuic.Crypto.CipherSuite.Aes128GcmSha256])));
        await Assert.ThrowsAsync<HttpRequestException>(() => aesOnly.GetAsync(uri));
    }

    [Fact]
    public async Task Cancellation_MidBody_AbortsStream_ConnectionStaysUsable()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var handler = new ManagedHttp3Handler(TrustingOptions());
        using var client = new HttpClient(handler);

        using var cts = new CancellationTokenSource();
        using (HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.LargeFile), HttpCompletionOption.ResponseHeadersRead))
        {
            Stream body = await response.Content.ReadAsStreamAsync();
            byte[] buffer = new byte[64 * 1024];
            int read = await body.ReadAsync(buffer);
            Assert.True(read > 0);
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                while (await body.ReadAsync(buffer, cts.Token) > 0)
                {
                }
            });
        }

        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(client, new Uri(server.BaseUri, GtlsServer.SmallFile)));
        Assert.Equal(1, handler.ConnectionsOpened);
    }

    [Fact]
    public async Task Trailers_LandInTrailingHeaders()
    {
        await using GtlsServer server = await GtlsServer.StartAsync("--send-trailers");
        using var client = new HttpClient(new ManagedHttp3Handler(TrustingOptions()));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile));
        byte[] body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
        Assert.NotEmpty(response.TrailingHeaders);
        _output.WriteLine(string.Join(", ", response.TrailingHeaders.Select(h => h.Key + ": " + string.Join(",", h.Value))));
    }

    [Fact]
    public async Task SecondConnection_ResumesSession_RequestSentIn0Rtt()
    {
        await using GtlsServer server = await GtlsServer.StartAsync(quiet: false, "--no-quic-dump", "--no-http-dump");

        // 20 ms each way: the request is written long before the server's handshake reply can arrive.
        await using var proxy = new UdpDelayProxy(new IPEndPoint(IPAddress.Loopback, server.Port), TimeSpan.FromMilliseconds(20));
        var store = new TicketCountingStore();
        Uri uri = new($"https://127.0.0.1:{proxy.Port}/{GtlsServer.SmallFile}");
        var watch = Stopwatch.StartNew();
        using (var first = new HttpClient(new ManagedHttp3Handler(TrustingOptions(o => o.SessionStore = store))))
        {
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(first, uri));
            TimeSpan full = watch.Elapsed;
            for (int i = 0; i < 100 && store.Stored == 0; i++)
            {
                await Task.Delay(20);
            }

            _output.WriteLine($"first connection (full handshake): {full.TotalMilliseconds:F0} ms to the verified body");
        }

        Assert.True(store.Stored > 0, "no session ticket was received");
        int firstConnectionLogLength = server.Log.Length;
        using var handler = new ManagedHttp3Handler(TrustingOptions(o =>
        {
            o.SessionStore = store;
            o.EnableEarlyData = true;
        }));
        using var second = new HttpClient(handler);

        watch.Restart();
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(second, uri));
        _output.WriteLine($"second connection (resumed, 0-RTT): {watch.Elapsed.TotalMilliseconds:F0} ms to the verified body");
        QuicConnection connection = Assert.Single(handler.GetQuicConnections());
        Assert.True(connection.IsResumed);
        Assert.True(connection.IsEarlyDataAccepted);

        // The server saw the request stream (id 0) in a 0-RTT packet (its log arrives through a pipe: wait for it).
        static bool IsZeroRttRequest(string l) =>
            l.Contains("frm rx", StringComparison.Ordinal) && l.Contains(" 0RTT ", StringComparison.Ordinal) && l.Contains("STREAM(", StringComparison.Ordinal) && l.Contains("id=0x0 ", StringComparison.Ordinal);
        for (int i = 0; i < 250 && !server.Log[firstConnectionLogLength..].Split('\n').Any(IsZeroRttRequest); i++)
        {
            await Task.Delay(20);
        }

        Assert.Contains(server.Log[firstConnectionLogLength..].Split('\n'), IsZeroRttRequest);
    }

    [Fact]
    public async Task RepeatedRequests_QpackDynamicTable_InsertsAcknowledgedByServer()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var handler = new ManagedHttp3Handler(TrustingOptions());
        using var client = new HttpClient(handler);
        client.DefaultRequestHeaders.UserAgent.ParseAdd("KestrelQuic-test/1.0");
        client.DefaultRequestHeaders.Add("x-repeated", "the same value on every request");
        Uri uri = new(server.BaseUri, GtlsServer.SmallFile);

        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), await GetSha256Async(client, uri));
        }

        byte[][] parallel = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => GetSha256Async(client, uri)));
        Assert.All(parallel, h => Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), h));

        Http3ClientConnection connection = Assert.Single(handler.GetHttp3Connections());
        long inserts, known;
        lock (connection.Encoder)
        {
            inserts = connection.Encoder.InsertCount;
            known = connection.Encoder.KnownReceivedCount;
        }

        _output.WriteLine($"server QPACK capacity {connection.Encoder.PeerMaxTableCapacity}, blocked streams {connection.Encoder.PeerBlockedStreams}; inserts {inserts}, acknowledged {known}");
        Assert.True(inserts > 0, "nothing was inserted into the dynamic table");
        Assert.Equal(inserts, known);
    }

    [Fact]
    public async Task ServerUsesOurQpackDynamicTable_ResponseHeadersDecodedFromIt()
    {
        // Our SETTINGS offer the server a dynamic table (QpackMaxTableCapacity, default 4096); nghttp3 inserts the
        // response fields it repeats and refers to them in later HEADERS.
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var handler = new ManagedHttp3Handler(TrustingOptions());
        using var client = new HttpClient(handler);
        Uri uri = new(server.BaseUri, GtlsServer.SmallFile);

        for (int i = 0; i < 20; i++)
        {
            using HttpResponseMessage response = await client.GetAsync(uri);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(GtlsServer.SmallSize, response.Content.Headers.ContentLength);
            Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(await response.Content.ReadAsByteArrayAsync()));
        }

        Http3ClientConnection connection = Assert.Single(handler.GetHttp3Connections());
        long inserts, capacity, acknowledged;
        lock (connection.Decoder)
        {
            inserts = connection.Decoder.InsertCount;
            capacity = connection.Decoder.TableCapacity;
            acknowledged = connection.Decoder.KnownReceivedCount;
        }

        long sections = connection.DynamicFieldSectionsDecoded;
        _output.WriteLine($"our decoder: capacity {capacity} set by the server, {inserts} inserts received ({acknowledged} acknowledged), {sections} of 20 response sections referred to the table");
        Assert.Equal(4096, new Http3HandlerOptions().QpackMaxTableCapacity);
        Assert.True(capacity > 0, "the server never set a dynamic table capacity");
        Assert.True(inserts > 0, "the server inserted nothing into our decoder's table");
        Assert.True(sections > 0, "no response header section referred to the dynamic table");
    }

    private sealed class TicketCountingStore : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _inner = new();

        public int Stored;

        public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            Interlocked.Increment(ref Stored);
            _inner.StoreSessionTicket(serverName, ticket);
        }

        public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token) => _inner.StoreToken(serverName, token);
    }
}

/// <summary>Runs the gtlsserver tests one after another (the 50 MB timings should not compete with other downloads).</summary>
[CollectionDefinition(nameof(GtlsCollection), DisableParallelization = true)]
public sealed class GtlsCollection
{
}
