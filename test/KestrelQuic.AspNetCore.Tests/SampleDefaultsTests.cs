using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Http3Server;
using KestrelQuic.Configuration;
using KestrelQuic.Http;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// `dotnet run --project samples/Http3Server` with nothing configured: https://localhost:5001 over HTTP/1.1, HTTP/2
/// and HTTP/3 with an ephemeral certificate. The sample runs as a child process with no arguments and none of the
/// settings it reads in its environment.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SampleDefaultsTests(ITestOutputHelper output)
{
    private const int DefaultPort = 5001;

    [Fact]
    public async Task NoConfiguration_ServesLocalhost5001_OverHttp1And2And3_OnEveryLoopback()
    {
        // Kestrel binds "localhost" to both loopbacks (IPv6 only where the machine has it), TCP and UDP alike.
        IPAddress[] loopbacks = AssertDefaultPortFree();

        await using SampleProcess sample = SampleProcess.Start([]);
        await sample.WaitForOutputAsync("Application started", TimeSpan.FromSeconds(60));
        string log = sample.Output;
        output.WriteLine(log);
        Assert.Contains($"Now listening on: {Http3ServerApp.DefaultUrl}", log, StringComparison.Ordinal);
        foreach (IPAddress address in loopbacks)
        {
            // The transport's event 1 for each address Kestrel handed it for localhost.
            Assert.Contains($"Listening for QUIC on {new IPEndPoint(address, DefaultPort)} (ALPN h3)", log, StringComparison.Ordinal);
        }

        Match logged = Regex.Match(log, @"SPKI SHA-256 \(base64\): (\S+)");
        Assert.True(logged.Success, log);
        string spki = logged.Groups[1].Value;

        // Trust exactly the certificate whose SPKI the sample logged (as a browser is told to).
        using var http3 = new HttpClient(new ManagedHttp3Handler(new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { CertificateValidationCallback = (certificate, _, _) => Http3ServerApp.GetSpkiHash(certificate) == spki },
            ConnectTimeout = TimeSpan.FromSeconds(10),
        }))
        { Timeout = TimeSpan.FromSeconds(30) };
        using var tcpHandler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, certificate, _, _) => certificate is not null && Http3ServerApp.GetSpkiHash(certificate) == spki };
        using var tcp = new HttpClient(tcpHandler) { Timeout = TimeSpan.FromSeconds(30) };
        foreach (IPAddress address in loopbacks)
        {
            string origin = $"https://{new IPEndPoint(address, DefaultPort)}";
            using HttpResponseMessage response = await http3.GetAsync($"{origin}/");
            Assert.Equal(HttpVersion.Version30, response.Version);
            Assert.Contains("<span id=\"protocol\">HTTP/3</span>", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);

            foreach (Version version in new[] { HttpVersion.Version11, HttpVersion.Version20 })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, $"{origin}/") { Version = version, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
                using HttpResponseMessage overTcp = await tcp.SendAsync(request);
                Assert.Contains($"<span id=\"protocol\">HTTP/{(version == HttpVersion.Version11 ? "1.1" : "2")}</span>", await overTcp.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                Assert.True(overTcp.Headers.NonValidated.Contains("Alt-Svc"), $"no Alt-Svc over HTTP/{version}");
            }
        }

        // And by name, as the URL the sample prints.
        using HttpResponseMessage byName = await http3.GetAsync($"{Http3ServerApp.DefaultUrl}/bytes/1000");
        Assert.Equal(HttpVersion.Version30, byName.Version);
        Assert.Equal(Http3ServerApp.CreatePattern(1000), await byName.Content.ReadAsByteArrayAsync());
    }

    /// <summary>
    /// The loopback addresses this machine has, after checking that nothing holds port 5001 on them: a developer
    /// machine may run something there, and the test must say so rather than hang or test the wrong server.
    /// </summary>
    private static IPAddress[] AssertDefaultPortFree()
    {
        var available = new List<IPAddress>();
        foreach (IPAddress address in new[] { IPAddress.Loopback, IPAddress.IPv6Loopback })
        {
            foreach ((SocketType type, ProtocolType protocol) in new[] { (SocketType.Stream, ProtocolType.Tcp), (SocketType.Dgram, ProtocolType.Udp) })
            {
                using var socket = new Socket(address.AddressFamily, type, protocol);
                try
                {
                    socket.Bind(new IPEndPoint(address, DefaultPort));
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                    Assert.Fail($"{protocol} port {DefaultPort} on {address} is in use by another program: this test starts the sample with its defaults, which need that port. Free it and run the test again.");
                }
                catch (SocketException) when (address.AddressFamily == AddressFamily.InterNetworkV6)
                {
                    // No IPv6 loopback on this machine: Kestrel skips it too.
                    goto next;
                }
            }

            available.Add(address);
        next:;
        }

        return [.. available];
    }
}
