using System.Diagnostics;
using System.Net;
using System.Text;
using KestrelQuic.Diagnostics;
using KestrelQuic.Tests.Api;
using Xunit.Abstractions;

using KestrelQuic.Testing;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>
/// A real loopback capture with tshark (Debian package, installed by build/install-peers.sh), decrypted with the
/// secrets log: proves the key log lines are what Wireshark needs. Needs capture rights on lo (root here).
/// </summary>
public sealed class WiresharkDecryptionTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-tshark-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task LoopbackCapture_DecryptsWithSecretsLog_ShowsStreamFramesWithPayload()
    {
        string keys = Path.Combine(_directory, "keys.log");
        string capture = Path.Combine(_directory, "capture.pcapng");
        byte[] request = Encoding.ASCII.GetBytes("hello from KestrelQuic to tshark");

        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(address: IPAddress.Loopback));
        int port = listener.LocalEndPoint.Port;

        // On lo the capture sees GSO sends before segmentation: one UDP "packet" holding several QUIC datagrams, which
        // Wireshark cannot split for short-header packets. Send one datagram per sendto, as on a real NIC capture.
        listener.Endpoint.Socket.DisableGso();
        using Process tshark = await TsharkCapture.StartAsync(port, capture);
        try
        {
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.SecretsLogFile = keys)).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            client.Endpoint.Socket.DisableGso();
            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await stream.WriteAsync(request, completeWrites: true);
            await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var received = new MemoryStream();
            await inbound.CopyToAsync(received).WaitAsync(Timeout);
            Assert.Equal(request, received.ToArray());
            await client.CloseAsync(0);
            await server.Closed.WaitAsync(Timeout);
            await Task.Delay(300); // let the last packets reach the capture
        }
        finally
        {
            await TsharkCapture.StopAsync(tshark);
        }

        await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
        (int exit, string fields, string errors) = await TsharkCapture.RunAsync("tshark",
            $"-r {capture} -o tls.keylog_file:{keys} -d udp.port=={port},quic -Y quic.frame_type -T fields -E separator=; -e quic.frame_type -e quic.stream.stream_id -e quic.stream_data");
        output.WriteLine(fields);
        Assert.True(exit == 0, errors);
        string[] lines = fields.Split('\n', StringSplitOptions.RemoveEmptyEntries);

        // CRYPTO frames (handshake packets), HANDSHAKE_DONE (1-RTT, only visible when decrypted), and our STREAM frame.
        Assert.Contains(lines, l => l.Split(';')[0].Split(',').Contains("6"));
        Assert.Contains(lines, l => l.Split(';')[0].Split(',').Contains("30"));
        string payloadHex = Convert.ToHexStringLower(request);
        Assert.Contains(lines, l => l.Contains(payloadHex, StringComparison.Ordinal) && l.Split(';')[1].Split(',').Contains("0"));
    }
}
