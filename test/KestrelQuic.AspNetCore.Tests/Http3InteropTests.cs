using System.Net;
using System.Net.Http.Headers;
using Http3Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>Every test here starts a real Kestrel host; they run one at a time (two CPU cores are shared).</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ServerCollection
{
    /// <summary>The collection name.</summary>
    public const string Name = "Kestrel servers";
}

/// <summary>Kestrel's own HTTP/3 over UseManagedQuic(), against ngtcp2's client and Chromium.</summary>
[Collection(ServerCollection.Name)]
public sealed class Http3InteropTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1024)]
    [InlineData(10 * 1024 * 1024)]
    public async Task GtlsClient_DownloadsBytes_ContentIsExact(int size)
    {
        await using TestServer server = await TestServer.StartAsync();
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        try
        {
            var started = DateTime.UtcNow;
            PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump", $"--download={dir}"], $"{server.Origin}/bytes/{size}");
            output.WriteLine($"{size} bytes in {(DateTime.UtcNow - started).TotalMilliseconds:F0} ms (process included)");
            Assert.False(r.TimedOut, r.Tail);
            Assert.True(r.ExitCode == 0, r.Tail);
            byte[] downloaded = await File.ReadAllBytesAsync(Path.Combine(dir, size.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.Equal(size, downloaded.Length);
            Assert.True(Same(Http3ServerApp.CreatePattern(size), downloaded), "downloaded content differs");
            Assert.Contains($"GET /bytes/{size} HTTP/3", server.Requests);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task GtlsClient_SeveralUrlsOnOneConnection_AllServedOverHttp3()
    {
        await using TestServer server = await TestServer.StartAsync();
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        try
        {
            PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump", $"--download={dir}"],
                $"{server.Origin}/", $"{server.Origin}/bytes/1000", $"{server.Origin}/bytes/70000", $"{server.Origin}/headers");
            Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
            // One process, one handshake: the server's transport parameters were received once.
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(r.StandardError, "remote transport_parameters initial_max_data="));
            Assert.Contains("<span id=\"protocol\">HTTP/3</span>", await File.ReadAllTextAsync(Path.Combine(dir, "index.html")));
            Assert.True(Same(Http3ServerApp.CreatePattern(1000), await File.ReadAllBytesAsync(Path.Combine(dir, "1000"))));
            Assert.True(Same(Http3ServerApp.CreatePattern(70000), await File.ReadAllBytesAsync(Path.Combine(dir, "70000"))));
            Assert.Contains("\"user-agent\"", await File.ReadAllTextAsync(Path.Combine(dir, "headers")), StringComparison.OrdinalIgnoreCase);
            Assert.Equal(4, server.Requests.Count(e => e.EndsWith(" HTTP/3", StringComparison.Ordinal)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task GtlsClient_PostsFiveMegabytes_EchoedExactly()
    {
        await using TestServer server = await TestServer.StartAsync();
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        string body = Path.Combine(dir, "body.bin");
        byte[] data = new byte[5 * 1024 * 1024];
        new Random(42).NextBytes(data);
        await File.WriteAllBytesAsync(body, data);
        string downloads = Directory.CreateDirectory(Path.Combine(dir, "out")).FullName;
        try
        {
            PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump", "-m", "POST", $"--data={body}", $"--download={downloads}"], $"{server.Origin}/echo");
            Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
            Assert.True(Same(data, await File.ReadAllBytesAsync(Path.Combine(downloads, "echo"))), "echoed body differs");
            Assert.Contains("POST /echo HTTP/3", server.Requests);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Chromium_LoadsPage_OverHttp3()
    {
        await using TestServer server = await TestServer.StartAsync();
        PeerResult r = await Peers.ChromiumDumpDomAsync(server.Port, server.Spki!, $"{server.Origin}/");
        output.WriteLine(r.StandardOutput);
        Assert.False(r.TimedOut, r.Tail);
        Assert.Contains("<span id=\"protocol\">HTTP/3</span>", r.StandardOutput);
        Assert.Contains("GET / HTTP/3", server.Requests);
    }

    [Fact]
    public async Task Http1And2Responses_AdvertiseHttp3_WithAltSvc()
    {
        await using TestServer server = await TestServer.StartAsync();
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{server.Port}") };
        foreach (Version version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
            using HttpResponseMessage response = await client.SendAsync(request);
            Assert.Equal(version, response.Version);
            Assert.True(response.Headers.NonValidated.TryGetValues("Alt-Svc", out HeaderStringValues altSvc));
            // Kestrel sends h3=":PORT"; ma=86400 (HttpClient's parser keeps the first part).
            Assert.StartsWith($"h3=\":{server.Port}\"", altSvc.ToString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task BytesRoute_OneGibibyte_StreamsWithContentLength()
    {
        await using TestServer server = await TestServer.StartAsync();
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{server.Port}") };
        using HttpResponseMessage response = await client.GetAsync("/bytes/1073741824", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(1L << 30, response.Content.Headers.ContentLength);
        await using Stream body = await response.Content.ReadAsStreamAsync();
        byte[] head = new byte[1 << 20];
        await body.ReadExactlyAsync(head);
        Assert.True(Same(Http3ServerApp.CreatePattern(head.Length), head));
    }

    [Fact]
    public async Task UseManagedQuic_ReplacesMultiplexedFactory_AndHttp3OnlyEndpointBinds()
    {
        // Http3 alone: Kestrel refuses to start unless a multiplexed transport bound the endpoint.
        await using TestServer server = await TestServer.StartAsync(["--Kestrel:EndpointDefaults:Protocols=Http3"]);
        IMultiplexedConnectionListenerFactory factory = Assert.Single(server.App.Services.GetServices<IMultiplexedConnectionListenerFactory>());
        Assert.IsType<ManagedQuicTransportFactory>(factory);
        PeerResult r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close"], $"{server.Origin}/");
        Assert.True(r.ExitCode == 0, r.Tail);
        Assert.Contains("GET / HTTP/3", server.Requests);
    }

    private static bool Same(byte[] expected, byte[] actual) => expected.AsSpan().SequenceEqual(actual);

    [Fact]
    public async Task StopAsync_WithIdleConnection_SendsGoAwayThenClosesWithH3NoError()
    {
        TestServer server = await TestServer.StartAsync();
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        try
        {
            // No --exit-on-all-streams-close: the client keeps the connection until the server closes it.
            Task<PeerResult> client = Peers.GtlsClientAsync(server.Port, ["--no-http-dump", $"--download={dir}"], $"{server.Origin}/bytes/100000");
            string file = Path.Combine(dir, "100000");
            for (int i = 0; i < 3000 && !(File.Exists(file) && new FileInfo(file).Length == 100000); i++) await Task.Delay(10);
            await server.DisposeAsync();
            PeerResult r = await client;
            Assert.False(r.TimedOut, r.Tail);
            Assert.True(Same(Http3ServerApp.CreatePattern(100000), await File.ReadAllBytesAsync(file)));
            // Kestrel's GOAWAY (type 0x07, ID 4 = the first request stream after the one served) on its control stream (ID 3), then CONNECTION_CLOSE with H3_NO_ERROR.
            System.Text.RegularExpressions.Match goAway = System.Text.RegularExpressions.Regex.Match(r.StandardError, @"STREAM\(0x0e\) id=0x3 [^\n]*\nOrdered STREAM data stream_id=0x3\n00000000  07 01 04 ");
            Assert.True(goAway.Success, r.Tail);
            Assert.Matches(@"frm rx \d+ 1RTT CONNECTION_CLOSE\(0x1d\) error_code=\S*\(0x100\)", r.StandardError[goAway.Index..]);
        }
        finally
        {
            await server.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task StopAsync_WithRequestInFlight_ChromiumStillGetsTheResponse()
    {
        // Kestrel answers an in-flight request during a graceful stop: GOAWAY(2^62-1), the response, the final
        // GOAWAY, then CONNECTION_CLOSE. (ngtcp2 0.12's nghttp3 rejects Kestrel's 2^62-1 GOAWAY, Chromium accepts it.)
        var requestStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/slow", async (HttpContext context) =>
        {
            requestStarted.TrySetResult();
            await release.Task;
            return Results.Content($"<html><body><p id=\"done\">finished over {context.Request.Protocol}</p></body></html>", "text/html");
        }));
        try
        {
            Task<PeerResult> chromium = Peers.ChromiumDumpDomAsync(server.Port, server.Spki!, $"{server.Origin}/slow");
            await requestStarted.Task.WaitAsync(TimeSpan.FromSeconds(60));
            // Release the handler only once Kestrel is stopping (StopAsync below waits for the request).
            server.App.Lifetime.ApplicationStopping.Register(() => _ = Task.Delay(500).ContinueWith(_ => release.TrySetResult(), TaskScheduler.Default));
            await server.DisposeAsync();
            PeerResult r = await chromium;
            Assert.True(r.StandardOutput.Contains("finished over HTTP/3", StringComparison.Ordinal), r.StandardOutput + "\n" + r.Tail);
        }
        finally
        {
            release.TrySetResult();
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task StopAsync_WithRequestInFlight_GtlsClientGetsTheWholeResponse()
    {
        var requestStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        byte[] payload = Http3ServerApp.CreatePattern(200_000);
        TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/slow", async (HttpContext context) =>
        {
            requestStarted.TrySetResult();
            await release.Task;
            await context.Response.Body.WriteAsync(payload);
        }));
        string dir = Directory.CreateTempSubdirectory("kq-dl-").FullName;
        try
        {
            // Kestrel only notices the last request finished after a GOAWAY(max) when the client closes (or at
            // ShutdownTimeout), as a browser does once it has its responses: so the client exits when done.
            Task<PeerResult> client = Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", "--no-http-dump", $"--download={dir}"], $"{server.Origin}/slow");
            await requestStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
            server.App.Lifetime.ApplicationStopping.Register(() => _ = Task.Delay(300).ContinueWith(_ => release.TrySetResult(), TaskScheduler.Default));
            var stopwatch = System.Diagnostics.Stopwatch.StartNew();
            await server.DisposeAsync();
            output.WriteLine($"server stopped after {stopwatch.ElapsedMilliseconds} ms");
            PeerResult r = await client;
            output.WriteLine($"client exited after {stopwatch.ElapsedMilliseconds} ms");
            Assert.False(r.TimedOut, r.Tail);
            byte[] received = await File.ReadAllBytesAsync(Path.Combine(dir, "slow"));
            Assert.True(Same(payload, received), $"response differs: {received.Length} bytes received\n{r.Tail}");
            // The first GOAWAY carries 2^62-4 (Kestrel's 2^62-1 corrected), which the client accepted.
            Assert.Contains("00000000  07 08 ff ff ff ff ff ff  ff fc", r.StandardError, StringComparison.Ordinal);
            Assert.True(r.ExitCode == 0, r.Tail);
        }
        finally
        {
            release.TrySetResult();
            await server.DisposeAsync();
            Directory.Delete(dir, recursive: true);
        }
    }
}
