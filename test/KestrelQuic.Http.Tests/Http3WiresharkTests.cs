using System.Diagnostics;
using System.Net;
using System.Text;
using Xunit.Abstractions;

using KestrelQuic.Testing;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// An HTTP/3 exchange of our client with ngtcp2's server captured on loopback with tshark (Debian 12: Wireshark 4.0)
/// and decrypted with the secrets log our client wrote: Wireshark's http3 dissector shows the frames. Wireshark 4.0
/// does not decode QPACK field sections (no http3 header fields), so the headers are checked through the frame types
/// and the DATA payloads through their bytes. Needs capture rights on lo (root here).
/// </summary>
[Collection(nameof(GtlsCollection))]
public sealed class Http3WiresharkTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-h3tshark-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task LoopbackCapture_DecryptedWithOurSecretsLog_ShowsHttp3StreamsAndFrames()
    {
        string keys = Path.Combine(_directory, "keys.log");
        string capture = Path.Combine(_directory, "h3.pcapng");
        byte[] body = Encoding.ASCII.GetBytes("posted through KestrelQuic, read back by tshark");

        await using GtlsServer server = await GtlsServer.StartAsync("--max-gso-dgrams=1");
        using Process tshark = await TsharkCapture.StartAsync(server.Port, capture);

        // On lo the capture sees GSO sends before segmentation: one UDP "packet" holding several QUIC datagrams, which
        // Wireshark cannot split after a 1-RTT packet. Both sides send datagram by datagram (gtlsserver: --max-gso-dgrams=1),
        // as a capture on a real NIC sees them.
        AppContext.SetSwitch("KestrelQuic.DisableGso", true);
        try
        {
            using var handler = new ManagedHttp3Handler(GtlsServerTests.TrustingOptions(o => o.Configuration.SecretsLogFile = keys));
            using var client = new HttpClient(handler);
            using HttpResponseMessage get = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile)).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            byte[] small = await get.Content.ReadAsByteArrayAsync();
            Assert.Equal(GtlsServer.SmallSize, small.Length);
            using HttpResponseMessage post = await client.PostAsync(new Uri(server.BaseUri, GtlsServer.SmallFile), new ByteArrayContent(body)).WaitAsync(Timeout);
            await post.Content.ReadAsByteArrayAsync();
            await Task.Delay(300); // let the last packets reach the capture
        }
        finally
        {
            AppContext.SetSwitch("KestrelQuic.DisableGso", false);
            await TsharkCapture.StopAsync(tshark);
        }

        // The secrets are written by a background task: wait for the 1-RTT lines.
        for (int i = 0; i < 100 && !(File.Exists(keys) && File.ReadAllText(keys).Contains("CLIENT_TRAFFIC_SECRET_0", StringComparison.Ordinal)); i++) await Task.Delay(50);
        (int exit, string fields, string errors) = await TsharkCapture.RunAsync("tshark",
            $"-r {capture} -o tls.keylog_file:{keys} -d udp.port=={server.Port},quic -Y http3 -T fields -E separator=; -E occurrence=a " +
            "-e quic.stream.stream_id -e http3.stream_type -e http3.frame_type -e http3.frame_length -e http3.settings.qpack.max_table_capacity -e http3.frame_payload");
        output.WriteLine(fields);
        Assert.True(exit == 0, errors);
        List<string[]> rows = fields.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(';')).ToList();
        Assert.NotEmpty(rows);

        static bool Has(string[] row, int column, string value) => row[column].Split(',').Contains(value);

        // Our control stream (2) and the server's (3): stream type 0 and SETTINGS (4), ours with the QPACK table we offer.
        Assert.Contains(rows, r => Has(r, 0, "2") && Has(r, 1, "0") && Has(r, 2, "4") && Has(r, 4, "4096"));
        Assert.Contains(rows, r => Has(r, 0, "3") && Has(r, 1, "0") && Has(r, 2, "4"));

        // Our QPACK encoder (6) and decoder (10) streams.
        Assert.Contains(rows, r => Has(r, 0, "6") && Has(r, 1, "2"));
        Assert.Contains(rows, r => Has(r, 0, "10") && Has(r, 1, "3"));

        // Requests on streams 0 and 4: HEADERS (1) both ways on each, and the 1,024-byte file in a DATA frame (0). Under
        // load a response's DATA frame may straddle two QUIC packets, which Wireshark 4.0 does not show as a frame:
        // one of the two responses is enough.
        Assert.True(rows.Count(r => Has(r, 0, "0") && Has(r, 2, "1")) >= 2, "HEADERS both ways on stream 0");
        Assert.True(rows.Count(r => Has(r, 0, "4") && Has(r, 2, "1")) >= 2, "HEADERS both ways on stream 4");
        Assert.Contains(rows, r => (Has(r, 0, "0") || Has(r, 0, "4")) && Has(r, 2, "0") && Has(r, 3, "1024"));

        // The POST on stream 4: our DATA frame carries the body, byte for byte.
        string bodyHex = Convert.ToHexStringLower(body);
        Assert.Contains(rows, r => Has(r, 0, "4") && Has(r, 2, "0") && r[5].Contains(bodyHex, StringComparison.Ordinal));
    }
}
