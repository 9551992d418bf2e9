using System.Net;
using System.Text;
using KestrelQuic.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// Stream aborts in both directions between Kestrel and a raw QUIC client of this engine speaking the little HTTP/3
/// needed here (static-table QPACK), to check the transport maps RESET_STREAM/STOP_SENDING and their codes.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class RawQuicClientTests
{
    private const long H3InternalError = 0x102;
    private const long H3RequestCancelled = 0x10c;

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

    private static async Task<QuicConnection> ConnectAsync(int port)
    {
        QuicConnection client = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions
        {
            RemoteEndPoint = new IPEndPoint(IPAddress.Loopback, port),
            Configuration = new QuicConfiguration { ApplicationProtocols = { "h3" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true },
        });

        // Client control stream: type 0x00, empty SETTINGS.
        QuicStream control = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        await control.WriteAsync(new byte[] { 0x00, 0x04, 0x00 });
        return client;
    }

    private static async Task<QuicStream> SendGetAsync(QuicConnection client, string path)
    {
        // QPACK (RFC 9204): prefix 0,0; :method GET (static 17), :scheme https (static 23) as indexed lines;
        // :authority (static 0) and :path (static 1) as literals with a static name reference.
        var section = new List<byte> { 0x00, 0x00, 0xc0 | 17, 0xc0 | 23, 0x50, 9 };
        section.AddRange("localhost"u8.ToArray());
        section.Add(0x51);
        section.Add((byte)path.Length);
        section.AddRange(Encoding.ASCII.GetBytes(path));
        var frame = new List<byte> { 0x01, (byte)section.Count };
        frame.AddRange(section);
        QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync(frame.ToArray(), completeWrites: true);
        return stream;
    }
}
