using System.Diagnostics;
using System.Net;
using KestrelQuic.Configuration;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>
/// P3: 100 MB over one stream between our client and our server on loopback, in MB/s (target ≥ 200 MB/s on the
/// 2-core machine). Reference: ngtcp2's client downloading a 100 MB file from ngtcp2's server, same machine.
/// </summary>
internal sealed class LoopbackThroughputCase : IBenchCase
{
    private const long Length = 100L * 1024 * 1024;
    private int _referencePort;

    public string Id => "P3";

    public string Title => "100 MB over one stream, our client ↔ our server on loopback";

    public string Unit => "MB/s";

    public bool LowerIsBetter => false;

    public bool HasReference => true;

    public string? ReferenceName => "ngtcp2";

    public async Task PrepareAsync(Workspace workspace)
    {
        string dir = Path.GetDirectoryName(workspace.DataFile("www", "file", Length))!;
        _referencePort = Workspace.FreeUdpPort();
        workspace.Track(Workspace.Start("gtlsserver", ["-q", "127.0.0.1", _referencePort.ToString(System.Globalization.CultureInfo.InvariantCulture), workspace.KeyPath, workspace.CertificatePath, "-d", dir]));
        await Task.Delay(500).ConfigureAwait(false); // the server binds at start; no readiness line in quiet mode
    }

    public async Task<double> RunOursAsync(Workspace workspace)
    {
        var serverConfig = new QuicConfiguration { ApplicationProtocols = { "bench" }, Certificate = workspace.Certificate };
        var clientConfig = new QuicConfiguration { ApplicationProtocols = { "bench" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true };
        await using QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions { ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0), Configuration = serverConfig }).ConfigureAwait(false);
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(new QuicClientConnectionOptions { RemoteEndPoint = listener.LocalEndPoint, Configuration = clientConfig }).ConfigureAwait(false);
        await using QuicConnection server = await accept.ConfigureAwait(false);
        Task<long> sink = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync().ConfigureAwait(false);
            var buffer = new byte[256 * 1024];
            long total = 0;
            int n;
            while ((n = await s.ReadAsync(buffer).ConfigureAwait(false)) > 0) total += n;
            return total;
        });

        var clock = Stopwatch.StartNew();
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional).ConfigureAwait(false);
        var data = new byte[256 * 1024];
        for (long sent = 0; sent < Length; sent += data.Length)
        {
            await stream.WriteAsync(data.AsMemory(0, (int)Math.Min(data.Length, Length - sent))).ConfigureAwait(false);
        }

        stream.CompleteWrites();
        long received = await sink.WaitAsync(TimeSpan.FromMinutes(2)).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        if (received != Length) throw new InvalidOperationException($"received {received} of {Length} bytes");
        return Length / seconds / 1e6;
    }

    public async Task<double> RunReferenceAsync(Workspace workspace)
    {
        string port = _referencePort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        double seconds = await Workspace.RunTimedAsync(
            "gtlsclient",
            ["-q", "--exit-on-all-streams-close", "127.0.0.1", port, $"https://localhost:{port}/file"],
            TimeSpan.FromMinutes(2)).ConfigureAwait(false);
        return Length / seconds / 1e6;
    }
}
