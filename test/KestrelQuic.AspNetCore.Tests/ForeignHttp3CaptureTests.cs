using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using KestrelQuic.Configuration;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;
using KestrelQuic.Tests.Shared;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Xunit.Abstractions;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// What Chromium (as a client, against a raw HTTP/3 listener of ours) and Kestrel (as a server, behind UseManagedQuic)
/// send on their control, QPACK encoder and request streams, recorded byte for byte and read with our frame reader
/// and QPACK decoder. With KESTRELQUIC_FUZZ_EXPORT_CORPUS=DIR the recordings are written as fuzz corpus inputs
/// (prefixes "chromium" and "kestrel"); a sample is committed under KestrelQuic.Http3.Tests/Fuzz/Corpus.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ForeignHttp3CaptureTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Chromium_RequestToARawHttp3Listener_ReadByOurDecoders_AndPageShown()
    {
        X509Certificate2 certificate = Http3Server.Http3ServerApp.CreateEphemeralCertificate();
        await using QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            Configuration = new QuicConfiguration { ApplicationProtocols = { "h3" }, Certificate = certificate },
        });
        int port = listener.LocalEndPoint.Port;
        const string Page = "<html><body><p id=\"raw\">served by a raw KestrelQuic HTTP/3 listener</p></body></html>";
        Task<PeerResult> chromium = Peers.ChromiumDumpDomAsync(port, Http3Server.Http3ServerApp.GetSpkiHash(certificate), $"https://localhost:{port}/");

        await using QuicConnection connection = await listener.AcceptConnectionAsync().AsTask().WaitAsync(Timeout);
        await using var peer = new RawHttp3Peer(connection);
        await peer.StartAsync();
        var requests = new List<byte[]>();
        Task serve = Task.Run(async () =>
        {
            await foreach (QuicStream request in peer.Requests.ReadAllAsync())
            {
                byte[] bytes = await RawHttp3Peer.ReadToEndAsync(request);
                lock (requests) requests.Add(bytes);
                await RawHttp3Peer.RespondAsync(request, "text/html", Encoding.ASCII.GetBytes(Page));
            }
        });

        PeerResult r = await chromium.WaitAsync(Timeout);
        Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
        Assert.Contains("served by a raw KestrelQuic HTTP/3 listener", r.StandardOutput, StringComparison.Ordinal);

        byte[] control = peer.PeerStream(Http3StreamType.Control);
        byte[] encoderStream = peer.PeerStream(Http3StreamType.QpackEncoder);
        byte[] first;
        lock (requests) first = requests[0];
        List<(long Type, byte[] Payload)> controlFrames = RawHttp3Peer.Frames(control);
        output.WriteLine($"Chromium control stream: {string.Join(", ", controlFrames.Select(f => $"0x{f.Type:x} ({f.Payload.Length} bytes)"))}; encoder stream {encoderStream.Length} bytes; {requests.Count} request(s)");
        Assert.Equal(Http3FrameType.Settings, controlFrames[0].Type);

        (long type, byte[] section) = RawHttp3Peer.Frames(first)[0];
        Assert.Equal(Http3FrameType.Headers, type);
        (QpackDecodeStatus status, List<KeyValuePair<string, string>> fields) = RawHttp3Peer.Decode(encoderStream, section);
        output.WriteLine($"{status}: {string.Join(", ", fields.Select(f => f.Key + "=" + f.Value))}");
        Assert.Equal(QpackDecodeStatus.Completed, status);
        Assert.Contains(new KeyValuePair<string, string>(":method", "GET"), fields);
        Assert.Contains(new KeyValuePair<string, string>(":path", "/"), fields);
        Assert.Contains(new KeyValuePair<string, string>(":authority", $"localhost:{port}"), fields);
        Assert.Contains(fields, f => f.Key == "user-agent" && f.Value.Contains("Chrome", StringComparison.Ordinal));

        await connection.CloseAsync(0);
        await serve.WaitAsync(Timeout);
        RawHttp3Peer.Export("qpack", "chromium", RawHttp3Peer.QpackCorpusInput(encoderStream, section));
        RawHttp3Peer.Export("http3-frames", "chromium",
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Control, readByServer: true, control),
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Request, readByServer: true, first));
    }

    [Fact]
    public async Task Kestrel_ControlQpackAndResponseStreams_ReadByOurDecoders()
    {
        await using TestServer server = await TestServer.StartAsync(map: app =>
            app.MapGet("/corpus", (HttpContext context) =>
            {
                context.Response.Headers.CacheControl = "no-store";
                return Results.Text("kestrel answers a raw HTTP/3 client", "text/plain");
            }));
        await using QuicConnection connection = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions
        {
            RemoteEndPoint = new IPEndPoint(IPAddress.Loopback, server.Port),
            Configuration = new QuicConfiguration { ApplicationProtocols = { "h3" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true },
        }).AsTask().WaitAsync(Timeout);
        await using var peer = new RawHttp3Peer(connection);
        await peer.StartAsync();

        var responses = new List<byte[]>();
        foreach (string path in new[] { "/corpus", "/corpus" })
        {
            QuicStream request = await peer.SendGetAsync($"localhost:{server.Port}", path);
            responses.Add(await RawHttp3Peer.ReadToEndAsync(request).WaitAsync(Timeout));
        }

        byte[] control = peer.PeerStream(Http3StreamType.Control);
        for (int i = 0; i < 100 && RawHttp3Peer.Frames(control).Count == 0; i++)
        {
            await Task.Delay(20);
            control = peer.PeerStream(Http3StreamType.Control);
        }

        Assert.Equal(Http3FrameType.Settings, RawHttp3Peer.Frames(control)[0].Type);
        byte[] encoderStream = peer.PeerStream(Http3StreamType.QpackEncoder);
        var qpackInputs = new List<byte[]>();
        foreach (byte[] response in responses)
        {
            List<(long Type, byte[] Payload)> frames = RawHttp3Peer.Frames(response);
            Assert.Equal(Http3FrameType.Headers, frames[0].Type);
            (QpackDecodeStatus status, List<KeyValuePair<string, string>> fields) = RawHttp3Peer.Decode(encoderStream, frames[0].Payload);
            output.WriteLine($"{status}: {string.Join(", ", fields.Select(f => f.Key + "=" + f.Value))}; {encoderStream.Length} encoder-stream bytes");
            Assert.Equal(QpackDecodeStatus.Completed, status);
            Assert.Equal(new KeyValuePair<string, string>(":status", "200"), fields[0]);
            Assert.Contains(new KeyValuePair<string, string>("cache-control", "no-store"), fields);
            Assert.Equal("kestrel answers a raw HTTP/3 client", Encoding.UTF8.GetString(frames.Where(f => f.Type == Http3FrameType.Data).SelectMany(f => f.Payload).ToArray()));
            qpackInputs.Add(RawHttp3Peer.QpackCorpusInput(encoderStream, frames[0].Payload));
        }

        RawHttp3Peer.Export("qpack", "kestrel", [.. qpackInputs]);
        RawHttp3Peer.Export("http3-frames", "kestrel",
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Control, readByServer: false, control),
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Request, readByServer: false, responses[0]));
    }
}
