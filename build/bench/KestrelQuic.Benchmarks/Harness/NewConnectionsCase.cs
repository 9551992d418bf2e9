using System.Diagnostics;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Http;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>
/// P7: new connections per second (handshake + one GET on a fresh connection each) against the same ASP.NET app:
/// HTTP/3 over our transport vs HTTP/2 with TLS over TCP (Kestrel's own), same client process and concurrency.
/// </summary>
internal sealed class NewConnectionsCase : IBenchCase
{
    private const int ConnectionsPerRun = 400;
    private const int Concurrency = 8;
    private int _port;

    public string Id => "P7";

    public string Title => $"new connections per second (handshake + GET /, {Concurrency} at a time): HTTP/3 (ours) vs HTTP/2 over TLS (Kestrel)";

    public string Unit => "conn/s";

    public bool LowerIsBetter => false;

    public bool HasReference => true;

    public string? ReferenceName => "HTTP/2";

    public async Task PrepareAsync(Workspace workspace) => _port = await Peers.StartSampleServerAsync(workspace).ConfigureAwait(false);

    public Task<double> RunOursAsync(Workspace workspace) => RunAsync(() =>
    {
        var options = new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { DangerousAcceptAnyServerCertificate = true },
        };
        return new ManagedHttp3Handler(options);
    }, HttpVersion.Version30);

    public Task<double> RunReferenceAsync(Workspace workspace) => RunAsync(() => new SocketsHttpHandler
    {
        SslOptions = { RemoteCertificateValidationCallback = static (_, _, _, _) => true },
    }, HttpVersion.Version20);

    private async Task<double> RunAsync(Func<HttpMessageHandler> createHandler, Version version)
    {
        var uri = new Uri($"https://127.0.0.1:{Peers.Port(_port)}/");
        int remaining = ConnectionsPerRun;
        var clock = Stopwatch.StartNew();
        Task[] workers = Enumerable.Range(0, Concurrency).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Decrement(ref remaining) >= 0)
            {
                // A fresh handler is a fresh connection: handshake included in every request.
                using var client = new HttpClient(createHandler());
                using var request = new HttpRequestMessage(HttpMethod.Get, uri) { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                using HttpResponseMessage response = await client.SendAsync(request).ConfigureAwait(false);
                response.EnsureSuccessStatusCode();
                if (response.Version != version) throw new InvalidOperationException($"got HTTP/{response.Version}, expected HTTP/{version}");
                await response.Content.ReadAsByteArrayAsync().ConfigureAwait(false);
            }
        })).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        return ConnectionsPerRun / clock.Elapsed.TotalSeconds;
    }
}
