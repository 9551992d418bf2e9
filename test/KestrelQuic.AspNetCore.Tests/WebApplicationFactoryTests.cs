using System.Net;
using Http3Server;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>The sample through Microsoft.AspNetCore.Mvc.Testing's WebApplicationFactory running real Kestrel.</summary>
[Collection(ServerCollection.Name)]
public sealed class WebApplicationFactoryTests
{
    [Fact]
    public async Task Factory_WithKestrel_ServesHttp3OverManagedQuic()
    {
        int port = TestServer.GetFreePort();
        using X509Certificate2Holder certificate = new(Http3ServerApp.CreateEphemeralCertificate());
        await using WebApplicationFactory<Program> factory = new WebApplicationFactory<Program>()
            .WithWebHostBuilder(builder => builder.ConfigureLogging(logging => logging.ClearProviders()));
        factory.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen =>
        {
            listen.Protocols = HttpProtocols.Http1AndHttp2AndHttp3;
            listen.UseHttps(certificate.Certificate);
        }));
        factory.StartServer();

        await Peers.AssertPageServedOverHttp3Async(port);
        Assert.Contains("GET / HTTP/3", factory.Services.GetRequiredService<RequestLog>().Entries);
    }

    private sealed class X509Certificate2Holder(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate) : IDisposable
    {
        public System.Security.Cryptography.X509Certificates.X509Certificate2 Certificate { get; } = certificate;

        public void Dispose() => Certificate.Dispose();
    }
}
