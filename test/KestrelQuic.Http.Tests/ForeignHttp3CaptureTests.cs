using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;
using KestrelQuic.Tests.Shared;
using Xunit.Abstractions;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// What ngtcp2's server (nghttp3) sends on its control, QPACK encoder and request streams, recorded over a raw
/// HTTP/3 exchange and read with our frame reader and QPACK decoder. With KESTRELQUIC_FUZZ_EXPORT_CORPUS=DIR the
/// recordings are written as fuzz corpus inputs (prefix "ngtcp2"); a sample of them is committed under
/// KestrelQuic.Http3.Tests/Fuzz/Corpus, where ForeignHttp3CorpusTests checks them.
/// </summary>
[Collection(nameof(GtlsCollection))]
public sealed class ForeignHttp3CaptureTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task GtlsServer_ControlQpackAndResponseStreams_ReadByOurDecoders()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        await using QuicConnection connection = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions
        {
            RemoteEndPoint = new IPEndPoint(IPAddress.Loopback, server.Port),
            Configuration = new QuicConfiguration
            {
                ApplicationProtocols = { "h3" },
                ServerName = "localhost",
                UseSystemTrust = false,
                TrustedCertificateAuthorities = [GtlsServer.Certificate],
            },
        }).AsTask().WaitAsync(Timeout);
        await using var peer = new RawHttp3Peer(connection);
        await peer.StartAsync();

        // Two requests, so that a server using its dynamic table refers back to what the first one inserted.
        var responses = new List<byte[]>();
        foreach (string path in new[] { "/" + GtlsServer.SmallFile, "/no-such-file" })
        {
            QuicStream request = await peer.SendGetAsync($"127.0.0.1:{server.Port}", path);
            responses.Add(await RawHttp3Peer.ReadToEndAsync(request).WaitAsync(Timeout));
        }

        // The server's control stream starts with SETTINGS (and never ends).
        byte[] control = peer.PeerStream(Http3StreamType.Control);
        for (int i = 0; i < 100 && RawHttp3Peer.Frames(control).Count == 0; i++)
        {
            await Task.Delay(20);
            control = peer.PeerStream(Http3StreamType.Control);
        }

        List<(long Type, byte[] Payload)> controlFrames = RawHttp3Peer.Frames(control);
        Assert.Equal(Http3FrameType.Settings, controlFrames[0].Type);
        Assert.True(Http3Settings.TryParse(controlFrames[0].Payload, out Http3Settings settings, out _));
        output.WriteLine($"gtlsserver SETTINGS: capacity {settings.QpackMaxTableCapacity}, blocked {settings.QpackBlockedStreams}, others {string.Join(",", settings.Others.Select(o => $"0x{o.Key:x}={o.Value}"))}");

        byte[] encoderStream = peer.PeerStream(Http3StreamType.QpackEncoder);
        var qpackInputs = new List<byte[]>();
        for (int i = 0; i < responses.Count; i++)
        {
            List<(long Type, byte[] Payload)> frames = RawHttp3Peer.Frames(responses[i]);
            Assert.Equal(Http3FrameType.Headers, frames[0].Type);
            (QpackDecodeStatus status, List<KeyValuePair<string, string>> fields) = RawHttp3Peer.Decode(encoderStream, frames[0].Payload);
            output.WriteLine($"response {i}: {status}: {string.Join(", ", fields.Select(f => f.Key + "=" + f.Value))}; {encoderStream.Length} encoder-stream bytes");
            Assert.Equal(QpackDecodeStatus.Completed, status);
            Assert.Equal(new KeyValuePair<string, string>(":status", i == 0 ? "200" : "404"), fields[0]);
            qpackInputs.Add(RawHttp3Peer.QpackCorpusInput(encoderStream, frames[0].Payload));
        }

        List<(long Type, byte[] Payload)> ok = RawHttp3Peer.Frames(responses[0]);
        Assert.Equal(GtlsServer.SmallSize, ok.Where(f => f.Type == Http3FrameType.Data).Sum(f => f.Payload.Length));

        RawHttp3Peer.Export("qpack", "ngtcp2", [.. qpackInputs]);
        RawHttp3Peer.Export("http3-frames", "ngtcp2",
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Control, readByServer: false, control),
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Request, readByServer: false, responses[0]),
            RawHttp3Peer.FrameCorpusInput(Http3StreamKind.Request, readByServer: false, responses[1]));
    }
}
