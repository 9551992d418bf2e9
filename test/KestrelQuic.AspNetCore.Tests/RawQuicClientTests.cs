using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using KestrelQuic.Configuration;
using KestrelQuic.Tests.Shared;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// Stream aborts in both directions between Kestrel and a raw QUIC client of this engine speaking the little HTTP/3
/// needed here (static-table QPACK), to check the transport maps RESET_STREAM/STOP_SENDING and their codes.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class RawQuicClientTests(ITestOutputHelper output)
{
    private readonly ITestOutputHelper _output = output;

    private const long H3InternalError = 0x102;
    private const long H3RequestCancelled = 0x10c;
    private const long H3NoError = 0x100;

    [Fact]
    public async Task ClientResetsRequestStream_RequestAbortedFires()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/hang", async (HttpContext context) =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
        }));
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream request = await SendGetAsync(client, "/hang");
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        request.Abort(QuicAbortDirection.Both, H3RequestCancelled);
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task ApplicationAbortsRequest_ClientSeesStreamResetWithKestrelsCode()
    {
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/abort", (HttpContext context) => context.Abort()));
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream request = await SendGetAsync(client, "/abort");
        var buffer = new byte[4096];
        QuicException e = await Assert.ThrowsAsync<QuicException>(async () =>
        {
            while (await request.ReadAsync(buffer) > 0)
            {
            }
        });
        Assert.Equal(QuicError.StreamAborted, e.QuicError);
        Assert.Equal(H3InternalError, e.ApplicationErrorCode); // Kestrel's code for HttpContext.Abort(), not the transport's default (0x10c)
    }

    [Fact]
    public async Task Response_EndsWithFin_AndStatusOk()
    {
        await using TestServer server = await TestServer.StartAsync();
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream request = await SendGetAsync(client, "/bytes/3000");
        using var received = new MemoryStream();
        await request.CopyToAsync(received); // completes only at the FIN
        byte[] response = received.ToArray();
        // HEADERS frame first (type 0x01, then its length as a varint); the QPACK section starts with the 2-byte
        // prefix, then :status 200 (static index 25 -> 0xd9).
        Assert.Equal(0x01, response[0]);
        int lengthSize = 1 << (response[1] >> 6);
        Assert.Equal(0xd9, response[1 + lengthSize + 2]);
        Assert.Contains("GET /bytes/3000 HTTP/3", server.Requests);
    }

    [Fact]
    public async Task ClientClosesConnection_InFlightRequestAborted()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/hang", async (HttpContext context) =>
        {
            context.RequestAborted.Register(() => aborted.TrySetResult());
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(_ => { }, TaskScheduler.Default);
        }));
        await using QuicConnection client = await ConnectAsync(server.Port);
        await SendGetAsync(client, "/hang");
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await client.CloseAsync(0x100);
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task SecondControlStream_KestrelClosesConnectionWithH3StreamCreationError()
    {
        await using TestServer server = await TestServer.StartAsync();
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream second = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        await second.WriteAsync(new byte[] { 0x00, 0x04, 0x00 });
        QuicCloseReason reason = await client.Closed.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(reason.ClosedByPeer, reason.ToString());
        Assert.True(reason.IsApplicationError, reason.ToString());
        Assert.Equal(0x103UL, reason.ErrorCode); // H3_STREAM_CREATION_ERROR, the code Kestrel set
    }

    [Fact]
    public async Task RouteIgnoresLargeBody_KestrelStopsReadingWithH3NoError_ResponseStillArrives()
    {
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapPost("/ignore", () => "not read"));
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream request = await SendHeadersAsync(client, "POST", "/ignore");

        // Far more body than the flow-control windows (1 MiB per stream, 4 MiB per connection) let through unread:
        // the client can only stop writing because Kestrel tells it to.
        byte[] frame = DataFrame(64 * 1024);
        long sent = 0;
        QuicException stopped = await Assert.ThrowsAsync<QuicException>(async () =>
        {
            for (; sent < 64L * 1024 * 1024; sent += frame.Length) await request.WriteAsync(frame).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        });
        Assert.Equal(QuicError.StreamAborted, stopped.QuicError);
        Assert.Equal(H3NoError, stopped.ApplicationErrorCode); // STOP_SENDING(H3_NO_ERROR), RFC 9114 §4.1.1
        Assert.True(sent < 64L * 1024 * 1024, "the whole body went out: nothing stopped the client");

        // The response is complete (FIN) and carries the route's text.
        using var received = new MemoryStream();
        await request.CopyToAsync(received).WaitAsync(TimeSpan.FromSeconds(30));
        byte[] response = received.ToArray();
        Assert.Equal(0x01, response[0]);
        Assert.Contains("not read", Encoding.ASCII.GetString(response), StringComparison.Ordinal);
        Assert.Contains("POST /ignore HTTP/3", server.Requests);
    }

    [Fact]
    public async Task HttpContextConnection_EndpointsMatchTheClientSocketAndTheServerEndpoint()
    {
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/endpoints", (HttpContext context) =>
        {
            ConnectionInfo c = context.Connection;
            return $"remote={c.RemoteIpAddress}:{c.RemotePort} local={c.LocalIpAddress}:{c.LocalPort} protocol={context.Request.Protocol}";
        }));

        // Bound to a concrete address (not the wildcard) so its local endpoint is what the server sees.
        await using QuicConnection client = await ConnectAsync(server.Port, new IPEndPoint(IPAddress.Loopback, 0));
        IPEndPoint clientEndPoint = client.LocalEndPoint;
        Assert.NotEqual(0, clientEndPoint.Port);
        QuicStream request = await SendGetAsync(client, "/endpoints");
        using var received = new MemoryStream();
        await request.CopyToAsync(received).WaitAsync(TimeSpan.FromSeconds(30));

        string body = Encoding.ASCII.GetString(received.ToArray());
        Assert.Contains($"remote=127.0.0.1:{clientEndPoint.Port} local=127.0.0.1:{server.Port} protocol=HTTP/3", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientClosesConnection_ConnectionClosedLoggedWithTheErrorCode()
    {
        using var logs = new ListLoggerProvider();
        await using TestServer server = await TestServer.StartAsync(configure: builder =>
            builder.Logging.AddProvider(logs).AddFilter("KestrelQuic.AspNetCore", LogLevel.Debug));
        await using QuicConnection client = await ConnectAsync(server.Port);
        QuicStream request = await SendGetAsync(client, "/bytes/10");
        await request.CopyToAsync(Stream.Null).WaitAsync(TimeSpan.FromSeconds(30));
        string accepted = await logs.WaitForAsync("KestrelQuic.AspNetCore|ConnectionAccepted|", TimeSpan.FromSeconds(10));
        string connectionId = Regex.Match(accepted, @"Connection (\S+) accepted").Groups[1].Value;
        Assert.StartsWith("MQ", connectionId, StringComparison.Ordinal);

        await client.CloseAsync(0x1234);

        // Event 4 names the connection and the reason: the peer's application error code.
        string closed = await logs.WaitForAsync($"KestrelQuic.AspNetCore|ConnectionClosed|Connection {connectionId} closed: ", TimeSpan.FromSeconds(30));
        Assert.Contains("peer application error 0x1234", closed, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientOpensAllStreamsAndNeverReads_ResponseWritesBlock_OtherClientDownloads_ClosingEndsEveryRequest()
    {
        const int Response = 64 * 1024 * 1024, Chunk = 64 * 1024;
        long written = 0;
        int started = 0, ended = 0;
        await using TestServer server = await TestServer.StartAsync(map: app => app.MapGet("/big", async (HttpContext context) =>
        {
            Interlocked.Increment(ref started);
            try
            {
                byte[] chunk = new byte[Chunk];
                for (int sent = 0; sent < Response; sent += Chunk)
                {
                    await context.Response.Body.WriteAsync(chunk, context.RequestAborted);
                    Interlocked.Add(ref written, Chunk);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or Microsoft.AspNetCore.Connections.ConnectionAbortedException)
            {
                // The client went away: the write that was blocked fails, the request ends.
            }
            finally
            {
                Interlocked.Increment(ref ended);
            }
        }));

        // Every request stream Kestrel allows, each asking for 64 MiB; the client never reads a byte.
        QuicConnection greedy = await ConnectAsync(server.Port);
        var requests = new List<QuicStream>();
        while (greedy.GetAvailableOutboundStreamCount(QuicStreamType.Bidirectional) > 0) requests.Add(await SendGetAsync(greedy, "/big"));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long last = -1;
        var stable = System.Diagnostics.Stopwatch.StartNew();
        while (stable.Elapsed < TimeSpan.FromSeconds(1) || Volatile.Read(ref started) < requests.Count)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the handlers kept writing: {Interlocked.Read(ref written)} bytes");
            await Task.Delay(100);
            long now = Interlocked.Read(ref written);
            if (now != last) stable.Restart();
            last = now;
        }

        // What the handlers got rid of: what the client's flow control let through (4 MiB, acknowledged and
        // released), the transport's send buffer for the connection (16 MiB), and a little pipe buffering per stream.
        long clientMaxData = new QuicConfiguration().MaxData; // the client ConnectAsync configures keeps the default
        long bound = clientMaxData + (16L << 20) + requests.Count * 256L * 1024;
        _output.WriteLine($"{requests.Count} requests for 64 MiB, never read: the handlers wrote {last / 1048576.0:F1} MiB in all and are blocked (bound {bound / 1048576.0:F1} MiB)");
        Assert.True(last <= bound, $"{requests.Count} handlers wrote {last} bytes (bound {bound})");
        Assert.Equal(0, Volatile.Read(ref ended));

        // Another client meanwhile gets a 16 MiB download from the same server, every byte checked.
        using (var client = new HttpClient(new KestrelQuic.Http.ManagedHttp3Handler(new KestrelQuic.Http.Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { DangerousAcceptAnyServerCertificate = true },
        }))
        {
            DefaultRequestVersion = HttpVersion.Version30,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(60),
        })
        {
            byte[] body = await client.GetByteArrayAsync($"https://127.0.0.1:{server.Port}/bytes/{16 * 1024 * 1024}");
            Assert.Equal(Http3Server.Http3ServerApp.CreatePattern(16 * 1024 * 1024), body);
        }

        // The greedy client closes: every blocked handler ends (Kestrel fails or discards the writes of an aborted request).
        await greedy.DisposeAsync();
        await WaitUntilAsync(() => Volatile.Read(ref ended) == requests.Count, TimeSpan.FromSeconds(30));
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < timeout, "condition not met in time");
            await Task.Delay(50);
        }
    }

    private static async Task<QuicConnection> ConnectAsync(int port, IPEndPoint? localEndPoint = null)
    {
        QuicConnection client = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions
        {
            RemoteEndPoint = new IPEndPoint(IPAddress.Loopback, port),
            LocalEndPoint = localEndPoint,
            Configuration = new QuicConfiguration { ApplicationProtocols = { "h3" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true },
        });

        // Client control stream: type 0x00, empty SETTINGS.
        QuicStream control = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        await control.WriteAsync(new byte[] { 0x00, 0x04, 0x00 });
        return client;
    }

    private static async Task<QuicStream> SendGetAsync(QuicConnection client, string path)
    {
        QuicStream stream = await SendHeadersAsync(client, "GET", path);
        stream.CompleteWrites();
        return stream;
    }

    /// <summary>Opens a request stream and sends its HEADERS frame; the stream stays open for a body.</summary>
    private static async Task<QuicStream> SendHeadersAsync(QuicConnection client, string method, string path)
    {
        // QPACK (RFC 9204): prefix 0,0; :method GET (static 17) or POST (static 20), :scheme https (static 23) as
        // indexed lines; :authority (static 0) and :path (static 1) as literals with a static name reference.
        int methodIndex = method switch { "GET" => 17, "POST" => 20, _ => throw new ArgumentOutOfRangeException(nameof(method)) };
        var section = new List<byte> { 0x00, 0x00, (byte)(0xc0 | methodIndex), 0xc0 | 23, 0x50, 9 };
        section.AddRange("localhost"u8.ToArray());
        section.Add(0x51);
        section.Add((byte)path.Length);
        section.AddRange(Encoding.ASCII.GetBytes(path));
        var frame = new List<byte> { 0x01, (byte)section.Count };
        frame.AddRange(section);
        QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync(frame.ToArray());
        return stream;
    }

    /// <summary>A DATA frame (type 0x00, 4-byte varint length) with <paramref name="length"/> bytes of payload.</summary>
    private static byte[] DataFrame(int length)
    {
        byte[] frame = new byte[5 + length];
        frame[0] = 0x00;
        frame[1] = (byte)(0x80 | (length >> 24));
        frame[2] = (byte)(length >> 16);
        frame[3] = (byte)(length >> 8);
        frame[4] = (byte)length;
        return frame;
    }
}
