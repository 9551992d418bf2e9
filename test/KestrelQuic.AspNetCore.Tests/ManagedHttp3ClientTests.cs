using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>Our HTTP/3 client (KestrelQuic.Http) against our Kestrel sample: both ends managed, Kestrel's HTTP/3 in between.</summary>
[Collection(ServerCollection.Name)]
public sealed class ManagedHttp3ClientTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly ITestOutputHelper _output;

    public ManagedHttp3ClientTests(ITestOutputHelper output) => _output = output;

    private static HttpClient CreateClient() => new(new ManagedHttp3Handler(new Http3HandlerOptions
    {
        Configuration = new QuicConfiguration { DangerousAcceptAnyServerCertificate = true },
    }))
    {
        DefaultRequestVersion = HttpVersion.Version30,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = Timeout,
    };

    [Fact]
    public async Task Post20Megabytes_ToEcho_ComesBackIdentical()
    {
        await using TestServer server = await TestServer.StartAsync();
        using HttpClient client = CreateClient();
        byte[] body = RandomNumberGenerator.GetBytes(20 * 1024 * 1024);

        var clock = Stopwatch.StartNew();
        using var content = new StreamContent(new MemoryStream(body));
        using HttpResponseMessage response = await client.PostAsync($"https://127.0.0.1:{server.Port}/echo", content);
        response.EnsureSuccessStatusCode();
        byte[] echoed = await response.Content.ReadAsByteArrayAsync();
        _output.WriteLine($"20 MB POST /echo over HTTP/3: {clock.ElapsedMilliseconds} ms");

        Assert.Equal(HttpVersion.Version30, response.Version);
        Assert.Equal(SHA256.HashData(body), SHA256.HashData(echoed));
        Assert.Contains("POST /echo HTTP/3", server.Requests);
    }

    [Fact]
    public async Task BytesRoute_OneGibibyte_OverHttp3_EveryByteCounted()
    {
        const long Size = 1L << 30;
        await using TestServer server = await TestServer.StartAsync();
        using HttpClient client = CreateClient();
        client.Timeout = TimeSpan.FromMinutes(3);

        var clock = Stopwatch.StartNew();
        using HttpResponseMessage response = await client.GetAsync($"https://127.0.0.1:{server.Port}/bytes/{Size}", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpVersion.Version30, response.Version);
        Assert.Equal(Size, response.Content.Headers.ContentLength);
        await using Stream body = await response.Content.ReadAsStreamAsync();

        // Byte i is i mod 251: each read is compared with the pattern at its offset (vectorized, so all of it).
        const int BufferSize = 256 * 1024;
        byte[] buffer = new byte[BufferSize];
        byte[] pattern = Http3Server.Http3ServerApp.CreatePattern(BufferSize + 251);
        long total = 0;
        int n;
        while ((n = await body.ReadAsync(buffer)) > 0)
        {
            if (!buffer.AsSpan(0, n).SequenceEqual(pattern.AsSpan((int)(total % 251), n)))
            {
                Assert.Fail($"the body differs from the pattern within bytes {total}..{total + n}");
            }

            total += n;
        }

        clock.Stop();
        _output.WriteLine($"1 GiB GET /bytes over HTTP/3 (ManagedHttp3Handler, Kestrel over the managed engine, loopback): {clock.Elapsed.TotalSeconds:F1} s, {Size / clock.Elapsed.TotalSeconds / (1 << 20):F0} MiB/s");
        Assert.Equal(Size, total);
        Assert.Contains($"GET /bytes/{Size} HTTP/3", server.Requests);
    }

    [Fact]
    public async Task CancelMidUpload_ServerSeesTheRequestAborted()
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstBytes = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapPost("/sink", async (HttpContext context) =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            var buffer = new byte[16 * 1024];
            try
            {
                while (await context.Request.Body.ReadAsync(buffer, context.RequestAborted) > 0) firstBytes.TrySetResult();
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or BadHttpRequestException)
            {
                aborted.TrySetResult(); // the stream was reset under the read
            }
        }));
        using HttpClient client = CreateClient();
        using var cts = new CancellationTokenSource();
        var upload = new EndlessStream(); // never ends: only cancellation can stop the request
        Task<HttpResponseMessage> send = client.PostAsync($"https://127.0.0.1:{server.Port}/sink", new StreamContent(upload), cts.Token);

        await firstBytes.Task.WaitAsync(Timeout);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send);
        await aborted.Task.WaitAsync(Timeout);
    }

    [Fact]
    public async Task CancelMidDownload_ServerSeesTheRequestAborted()
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/endless", async (HttpContext context) =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            var chunk = new byte[16 * 1024];
            try
            {
                while (!context.RequestAborted.IsCancellationRequested) await context.Response.Body.WriteAsync(chunk, context.RequestAborted);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
                aborted.TrySetResult();
            }
        }));
        using HttpClient client = CreateClient();
        using var cts = new CancellationTokenSource();
        using HttpResponseMessage response = await client.GetAsync($"https://127.0.0.1:{server.Port}/endless", HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Stream body = await response.Content.ReadAsStreamAsync(cts.Token);
        var buffer = new byte[64 * 1024];
        long read = 0;
        while (read < 1024 * 1024) read += await body.ReadAsync(buffer, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            while (await body.ReadAsync(buffer, cts.Token) > 0)
            {
            }
        });
        await aborted.Task.WaitAsync(Timeout);
    }

    [Fact]
    public async Task ServerShutsDownWithRequestsInFlight_EveryResponseCompletesIntact()
    {
        const int Requests = 8;
        int started = 0;
        var allStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/slow/{n:int}", async (HttpContext context, int n) =>
        {
            if (Interlocked.Increment(ref started) == Requests) allStarted.TrySetResult();
            await release.Task; // held until the server is stopping
            byte[] body = Payload(n);
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
        }));
        try
        {
            using HttpClient client = CreateClient();
            Task<byte[]>[] requests = Enumerable.Range(0, Requests)
                .Select(i => client.GetByteArrayAsync($"https://127.0.0.1:{server.Port}/slow/{i}"))
                .ToArray();
            await allStarted.Task.WaitAsync(Timeout);

            // Graceful stop: Kestrel sends GOAWAY, lets the requests in flight finish, then closes.
            var clock = Stopwatch.StartNew();
            Task stop = server.App.StopAsync();
            await Task.Delay(200);
            release.TrySetResult();
            byte[][] bodies = await Task.WhenAll(requests).WaitAsync(Timeout);
            for (int i = 0; i < Requests; i++) Assert.Equal(Payload(i), bodies[i]);
            await stop.WaitAsync(Timeout);
            _output.WriteLine($"stop completed {clock.ElapsedMilliseconds} ms after it began, {Requests} responses intact");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static byte[] Payload(int seed)
    {
        var data = new byte[100_000 + (seed * 1000)];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>An upload body that never ends.</summary>
    private sealed class EndlessStream : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => count;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Yield();
            cancellationToken.ThrowIfCancellationRequested();
            return buffer.Length;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
