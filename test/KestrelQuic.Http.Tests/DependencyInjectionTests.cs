using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using KestrelQuic.Tests.Shared;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KestrelQuic.Http.Tests;

/// <summary>IHttpClientFactory integration: typed and named clients with UseManagedHttp3 make HTTP/3 requests.</summary>
[Collection(nameof(GtlsCollection))]
public sealed class DependencyInjectionTests
{
    [Fact]
    public async Task TypedClient_FromServiceProvider_GetsOverHttp3()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        var services = new ServiceCollection();
        services.AddHttpClient<FileClient>(c => c.BaseAddress = server.BaseUri)
            .UseManagedHttp3(o =>
            {
                o.Configuration.UseSystemTrust = false;
                o.Configuration.TrustedCertificateAuthorities = [GtlsServer.Certificate];
            });
        await using ServiceProvider provider = services.BuildServiceProvider();

        FileClient client = provider.GetRequiredService<FileClient>();
        (Version version, byte[] body) = await client.GetAsync(GtlsServer.SmallFile);

        Assert.Equal(HttpVersion.Version30, version);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(body));
    }

    [Fact]
    public async Task NamedClient_OptionsBoundFromConfiguration()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["MaxConnectionsPerServer"] = "3",
                ["EnableEarlyData"] = "true",
                ["Configuration:IdleTimeout"] = "00:00:05",
            })
            .Build();
        var services = new ServiceCollection();
        services.AddHttpClient("h3")
            .UseManagedHttp3(configuration, o =>
            {
                o.Configuration.UseSystemTrust = false;
                o.Configuration.TrustedCertificateAuthorities = [GtlsServer.Certificate];
            });
        await using ServiceProvider provider = services.BuildServiceProvider();

        Http3HandlerOptions options = provider.GetRequiredService<IOptionsMonitor<Http3HandlerOptions>>().Get("h3");
        Assert.Equal(3, options.MaxConnectionsPerServer);
        Assert.True(options.EnableEarlyData);
        Assert.Equal(TimeSpan.FromSeconds(5), options.Configuration.IdleTimeout);

        HttpClient client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("h3");
        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile));
        Assert.Equal(HttpVersion.Version30, response.Version);
        Assert.Equal(GtlsServer.Sha256Of(GtlsServer.SmallFile), SHA256.HashData(await response.Content.ReadAsByteArrayAsync()));
    }

    [Fact]
    public async Task UseManagedHttp3_EngineLogsThroughTheContainersLoggerFactory()
    {
        await using GtlsServer server = await GtlsServer.StartAsync();
        using var logs = new ListLoggerProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        services.AddHttpClient("h3")
            .UseManagedHttp3(o =>
            {
                o.Configuration.UseSystemTrust = false;
                o.Configuration.TrustedCertificateAuthorities = [GtlsServer.Certificate];
            });
        await using ServiceProvider provider = services.BuildServiceProvider();

        HttpClient client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("h3");
        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile));

        Assert.Equal(HttpVersion.Version30, response.Version);
        string connected = await logs.WaitForAsync("KestrelQuic|ConnectionConnected|", TimeSpan.FromSeconds(10));
        Assert.Contains("ALPN h3", connected, StringComparison.Ordinal);
    }

    [Fact]
    public void UseManagedHttp3WithAltSvc_PrimaryHandlerIsAltSvcHandler()
    {
        var services = new ServiceCollection();
        services.AddHttpClient("discovering").UseManagedHttp3WithAltSvc(o => o.MaxConnectionsPerServer = 2);
        using ServiceProvider provider = services.BuildServiceProvider();

        HttpMessageHandler handler = provider.GetRequiredService<IHttpMessageHandlerFactory>().CreateHandler("discovering");
        while (handler is DelegatingHandler delegating)
        {
            handler = delegating.InnerHandler!;
        }

        Assert.IsType<AltSvcHttp3Handler>(handler);
    }

    /// <summary>A typed client as an application would write it.</summary>
    public sealed class FileClient
    {
        private readonly HttpClient _http;

        public FileClient(HttpClient http) => _http = http;

        public async Task<(Version Version, byte[] Body)> GetAsync(string path)
        {
            using HttpResponseMessage response = await _http.GetAsync(new Uri(path, UriKind.Relative));
            response.EnsureSuccessStatusCode();
            return (response.Version, await response.Content.ReadAsByteArrayAsync());
        }
    }
}
