using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using Http3Server;
using KestrelQuic.Configuration;
using KestrelQuic.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// AltSvcHttp3Handler with its default SocketsHttpHandler against Kestrel: the first request goes over TCP, Kestrel's
/// Alt-Svc sends the next ones to HTTP/3 over the managed engine.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class AltSvcEndToEndTests
{
    [Fact]
    public async Task DefaultFallback_FirstRequestOverTcp_LaterOnesOverHttp3()
    {
        await using TestServer server = await TestServer.StartAsync(map: MapProtocol);
        using X509Certificate2 certificate = ServerCertificate(server);
        using var handler = new AltSvcHttp3Handler(new Http3HandlerOptions
        {
            // The one trust setting applies to both the TCP fallback and HTTP/3.
            Configuration = new QuicConfiguration { UseSystemTrust = false, TrustedCertificateAuthorities = [certificate] },
        });
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
        var uri = new Uri($"https://127.0.0.1:{server.Port}/protocol");

        using (HttpResponseMessage first = await client.GetAsync(uri))
        {
            Assert.Equal(HttpVersion.Version11, first.Version);
            Assert.Equal("HTTP/1.1", await first.Content.ReadAsStringAsync());
            Assert.True(first.Headers.NonValidated.TryGetValues("Alt-Svc", out HeaderStringValues altSvc));
            Assert.StartsWith($"h3=\":{server.Port}\"", altSvc.ToString(), StringComparison.Ordinal);
        }

        for (int i = 0; i < 2; i++)
        {
            using HttpResponseMessage later = await client.GetAsync(uri);
            Assert.Equal(HttpVersion.Version30, later.Version);
            Assert.Equal("HTTP/3", await later.Content.ReadAsStringAsync());
        }

        Assert.Equal(["GET /protocol HTTP/1.1", "GET /protocol HTTP/3", "GET /protocol HTTP/3"], server.Requests.Where(e => e.StartsWith("GET /protocol ", StringComparison.Ordinal)));
        Assert.Equal(1, handler.Http3Handler.ConnectionsOpened);
    }

    [Fact]
    public async Task DefaultFallback_CertificateNotTrustedByTheOptions_FirstRequestRefused()
    {
        await using TestServer server = await TestServer.StartAsync(map: MapProtocol);
        using X509Certificate2 stranger = Http3ServerApp.CreateEphemeralCertificate(); // same names, another key
        using var handler = new AltSvcHttp3Handler(new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { UseSystemTrust = false, TrustedCertificateAuthorities = [stranger] },
        });
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"https://127.0.0.1:{server.Port}/protocol"));
        Assert.IsType<System.Security.Authentication.AuthenticationException>(e.InnerException);
        Assert.DoesNotContain(server.Requests, r => r.StartsWith("GET /protocol ", StringComparison.Ordinal));
    }

    private static void MapProtocol(WebApplication app) => app.MapGet("/protocol", (HttpContext context) => context.Request.Protocol);

    /// <summary>The sample's ephemeral certificate, without its private key (what a client is given to trust).</summary>
    private static X509Certificate2 ServerCertificate(TestServer server) =>
        X509CertificateLoader.LoadCertificate(server.App.Services.GetRequiredService<EphemeralCertificate>().Certificate.RawData);
}
