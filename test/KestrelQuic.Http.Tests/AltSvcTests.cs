using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace KestrelQuic.Http.Tests;

/// <summary>AltSvcHttp3Handler: start on the fallback handler, move to HTTP/3 when h3 is advertised, fall back when UDP fails.</summary>
[Collection(nameof(GtlsCollection))]
public sealed class AltSvcTests
{
    [Fact]
    public async Task AdvertisedH3_SecondRequestGoesOverHttp3ToGtlsserver()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        var fallback = new StubHandler($"h3=\":{server.Port}\"; ma=3600, h2=\":443\"");
        using var client = new HttpClient(new AltSvcHttp3Handler(GtlsServerTests.TrustingOptions(), fallback));
        Uri uri = new($"https://127.0.0.1:{server.Port}/{GtlsServer.SmallFile}");

        using (HttpResponseMessage first = await client.GetAsync(uri))
        {
            Assert.Equal(HttpVersion.Version11, first.Version);
            Assert.Equal("from fallback", await first.Content.ReadAsStringAsync());
        }

        using HttpResponseMessage second = await client.GetAsync(uri);
        Assert.Equal(HttpVersion.Version30, second.Version);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(await second.Content.ReadAsByteArrayAsync()));
        Assert.Equal(1, fallback.Calls);
    }

    [Fact]
    public async Task UdpUnreachable_FallsBack_AndDoesNotRetryWhileBroken()
    {
        int deadPort;
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            deadPort = ((IPEndPoint)socket.LocalEndPoint!).Port;
        }

        var fallback = new StubHandler($"h3=\":{deadPort}\"");
        using var handler = new AltSvcHttp3Handler(GtlsServerTests.TrustingOptions(o => o.ConnectTimeout = TimeSpan.FromMilliseconds(500)), fallback);
        using var client = new HttpClient(handler);
        Uri uri = new("https://127.0.0.1:8443/resource");

        for (int i = 0; i < 3; i++)
        {
            using HttpResponseMessage response = await client.GetAsync(uri);
            Assert.Equal("from fallback", await response.Content.ReadAsStringAsync());
        }

        Assert.Equal(3, fallback.Calls);
        Assert.Equal(1, handler.Http3Handler.ConnectionsOpened);
    }

    [Theory]
    [InlineData("h3=\":443\"", null, 443, 86400)]
    [InlineData("h3-29=\":8443\", h3=\"alt.example.com:9443\"; ma=60; persist=1", "alt.example.com", 9443, 60)]
    [InlineData("h3=\"[::1]:4433\";ma=5", "::1", 4433, 5)]
    public void Parser_FindsH3(string value, string? host, int port, int maxAgeSeconds)
    {
        Assert.True(AltSvcParser.TryGetHttp3(value, out string? parsedHost, out int parsedPort, out TimeSpan maxAge));
        Assert.Equal(host, parsedHost);
        Assert.Equal(port, parsedPort);
        Assert.Equal(TimeSpan.FromSeconds(maxAgeSeconds), maxAge);
    }

    [Theory]
    [InlineData("h2=\":443\"")]
    [InlineData("h3=\"nohost\"")]
    [InlineData("h3=\":99999\"")]
    [InlineData("")]
    public void Parser_RejectsOthers(string value) => Assert.False(AltSvcParser.TryGetHttp3(value, out _, out _, out _));

    /// <summary>Stands in for an HTTP/1.1 server that advertises HTTP/3.</summary>
    private sealed class StubHandler(string altSvc) : HttpMessageHandler
    {
        private int _calls;

        public int Calls => _calls;

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            var response = new HttpResponseMessage(HttpStatusCode.OK)
            {
                Version = HttpVersion.Version11,
                Content = new StringContent("from fallback"),
                RequestMessage = request,
            };
            response.Headers.TryAddWithoutValidation("Alt-Svc", altSvc);
            return Task.FromResult(response);
        }
    }
}
