using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// <c>UseEarlyDataPolicy</c> on requests an intermediary marked <c>Early-Data: 1</c> (RFC 8470 §5.1), here over
/// HTTP/1.1: unsafe methods get 425 unless the endpoint allows early data; unmarked requests pass. The 0-RTT cases over
/// HTTP/3 are in <see cref="GtlsScenarioTests"/>.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class EarlyDataPolicyTests
{
    [Fact]
    public async Task EarlyDataHeader_UnsafeMethodGets425_SafeMethodAndAllowedEndpointPass()
    {
        int orders = 0;
        await using TestServer server = await TestServer.StartAsync(map: app =>
        {
            app.UseEarlyDataPolicy();
            app.MapPost("/order", () => Interlocked.Increment(ref orders));
            app.MapPost("/search", () => "found").AllowEarlyData();
            app.MapGet("/read", () => "read");
        });
        using var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator };
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{server.Port}") };

        async Task<HttpStatusCode> SendAsync(HttpMethod method, string path, bool early)
        {
            using var request = new HttpRequestMessage(method, path) { Version = HttpVersion.Version11, Content = method == HttpMethod.Post ? new StringContent("x") : null };
            if (early) request.Headers.Add("Early-Data", "1");
            using HttpResponseMessage response = await client.SendAsync(request);
            return response.StatusCode;
        }

        Assert.Equal((HttpStatusCode)425, await SendAsync(HttpMethod.Post, "/order", early: true));
        Assert.Equal(0, orders);
        Assert.Equal(HttpStatusCode.OK, await SendAsync(HttpMethod.Post, "/search", early: true));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(HttpMethod.Get, "/read", early: true));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(HttpMethod.Post, "/order", early: false));
        Assert.Equal(1, orders);
    }
}
