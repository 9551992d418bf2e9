using System.Net;
using System.Security.Cryptography.X509Certificates;
using Http3Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// UseManagedQuic() on a host where Kestrel already registered its own QUIC factory (it does when libmsquic is
/// installed, which this machine lacks: a stand-in takes its place here).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class TransportRegistrationTests
{
    [Fact]
    public async Task UseManagedQuic_ReplacesARegisteredQuicFactory_TcpFactoriesUntouched()
    {
        int port = TestServer.GetFreePort();
        using X509Certificate2 certificate = Http3ServerApp.CreateEphemeralCertificate();
        var msquicStandIn = new RecordingQuicFactory();
        WebApplicationBuilder builder = WebApplication.CreateBuilder(["--urls", $"https://127.0.0.1:{port}"]);
        builder.Logging.ClearProviders();

        // What Kestrel's UseQuic() registers when System.Net.Quic is supported.
        builder.Services.AddSingleton<IMultiplexedConnectionListenerFactory>(msquicStandIn);
        Type?[] tcpBefore = TcpFactories(builder.Services);
        Assert.Contains(tcpBefore, t => t?.Name == "SocketTransportFactory"); // Kestrel's sockets transport

        builder.WebHost.UseManagedQuic();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(listen =>
        {
            listen.Protocols = HttpProtocols.Http1AndHttp2AndHttp3;
            listen.UseHttps(certificate);
        }));

        Assert.Equal(tcpBefore, TcpFactories(builder.Services));
        ServiceDescriptor quic = Assert.Single(builder.Services, d => d.ServiceType == typeof(IMultiplexedConnectionListenerFactory));
        Assert.Equal(typeof(ManagedQuicTransportFactory), quic.ImplementationType);

        await using WebApplication app = builder.Build();
        app.MapGet("/", (HttpContext context) => context.Request.Protocol);
        await app.StartAsync();
        try
        {
            Assert.IsType<ManagedQuicTransportFactory>(Assert.Single(app.Services.GetServices<IMultiplexedConnectionListenerFactory>()));

            // HTTP/3 went through our factory, never the stand-in.
            string dir = Directory.CreateTempSubdirectory("kq-reg-").FullName;
            try
            {
                PeerResult r = await Peers.GtlsClientAsync(port, ["--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump", $"--download={dir}"], $"https://localhost:{port}/");
                Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
                Assert.Equal("HTTP/3", await File.ReadAllTextAsync(Path.Combine(dir, "index.html")));
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }

            Assert.Equal(0, msquicStandIn.BindCalls);

            // TCP still serves HTTP/1.1 and HTTP/2.
            using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
            using var client = new HttpClient(handler);
            foreach (Version version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"https://127.0.0.1:{port}/") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                using HttpResponseMessage response = await client.SendAsync(request);
                Assert.Equal(version == HttpVersion.Version11 ? "HTTP/1.1" : "HTTP/2", await response.Content.ReadAsStringAsync());
            }
        }
        finally
        {
            await app.StopAsync();
        }
    }

    private static Type?[] TcpFactories(IServiceCollection services) =>
        [.. services.Where(d => d.ServiceType == typeof(IConnectionListenerFactory)).Select(d => d.ImplementationType ?? d.ImplementationInstance?.GetType())];

    /// <summary>Stands in for Kestrel's msquic factory; binding through it would fail the test.</summary>
    private sealed class RecordingQuicFactory : IMultiplexedConnectionListenerFactory
    {
        private int _bindCalls;

        public int BindCalls => Volatile.Read(ref _bindCalls);

        public ValueTask<IMultiplexedConnectionListener> BindAsync(EndPoint endpoint, IFeatureCollection? features = null, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _bindCalls);
            throw new InvalidOperationException("the msquic stand-in was asked to bind");
        }
    }
}
