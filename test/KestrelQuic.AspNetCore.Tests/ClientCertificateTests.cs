using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Http3Server;
using KestrelQuic.Tests.Shared;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>Kestrel's ClientCertificateMode over HTTP/3: the certificate reaches HttpContext, and RequireCertificate is enforced in the handshake.</summary>
[Collection(ServerCollection.Name)]
public sealed class ClientCertificateTests
{
    [Theory]
    [InlineData(ClientCertificateMode.RequireCertificate, true, "CN=kq-client")]
    [InlineData(ClientCertificateMode.RequireCertificate, false, null)]
    [InlineData(ClientCertificateMode.AllowCertificate, true, "CN=kq-client")]
    [InlineData(ClientCertificateMode.AllowCertificate, false, "none")]
    public async Task ClientCertificateMode_IsHonoured(ClientCertificateMode mode, bool sendCertificate, string? expected)
    {
        string dir = Directory.CreateTempSubdirectory("kq-cc-").FullName;
        try
        {
            using X509Certificate2 serverCertificate = Http3ServerApp.CreateEphemeralCertificate();
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using X509Certificate2 client = new CertificateRequest("CN=kq-client", key, HashAlgorithmName.SHA256)
                .CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
            await File.WriteAllTextAsync(Path.Combine(dir, "client.pem"), client.ExportCertificatePem());
            await File.WriteAllTextAsync(Path.Combine(dir, "client.key"), key.ExportPkcs8PrivateKeyPem());

            using var logs = new ListLoggerProvider();
            await using TestServer server = await TestServer.StartAsync(
                map: app => app.MapGet("/whoami", (HttpContext context) => context.Connection.ClientCertificate?.Subject ?? "none"),
                configure: builder =>
                {
                    builder.Logging.AddProvider(logs).AddFilter("KestrelQuic.AspNetCore", LogLevel.Debug);
                    builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https =>
                    {
                        https.ServerCertificate = serverCertificate;
                        https.ClientCertificateMode = mode;
                        https.AllowAnyClientCertificate();
                    }));
                });

            string downloads = Directory.CreateDirectory(Path.Combine(dir, "out")).FullName;
            var options = new List<string> { "--exit-on-all-streams-close", $"--download={downloads}", "--timeout=5s" };
            if (sendCertificate) options.AddRange([$"--key={Path.Combine(dir, "client.key")}", $"--cert={Path.Combine(dir, "client.pem")}"]);
            PeerResult r = await Peers.GtlsClientAsync(server.Port, options, $"{server.Origin}/whoami");
            string file = Path.Combine(downloads, "whoami");
            if (expected is null)
            {
                // gtlsclient creates the file when it sends the request: it must stay empty.
                Assert.True(!File.Exists(file) || new FileInfo(file).Length == 0, "a response arrived without the required certificate\n" + r.Tail);
                Assert.Contains("CRYPTO_ERROR(0x174)", r.StandardError, StringComparison.Ordinal); // TLS alert certificate_required (116)
                // Logged once the connection's closing period ended (a few PTOs).
                static bool IsHandshakeFailure(string e) => e.StartsWith("KestrelQuic.AspNetCore|HandshakeFailed|", StringComparison.Ordinal) && e.Contains("0x174", StringComparison.Ordinal);
                for (int i = 0; i < 200 && !logs.Entries.Any(IsHandshakeFailure); i++) await Task.Delay(50);
                Assert.True(logs.Entries.Any(IsHandshakeFailure), string.Join('\n', logs.Entries));
                Assert.DoesNotContain(server.Requests, e => e.StartsWith("GET /whoami", StringComparison.Ordinal));
            }
            else
            {
                Assert.True(r.ExitCode == 0, r.Tail);
                Assert.Contains(logs.Entries, e => e.StartsWith("KestrelQuic.AspNetCore|ConnectionAccepted|", StringComparison.Ordinal));
                Assert.Equal(expected, await File.ReadAllTextAsync(file));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RequireCertificate_ClientCertificateFromTheCaInManagedQuicTrustedCertificateAuthoritiesPath_IsAccepted(bool trustTheCa)
    {
        // Kestrel's own validation (no AllowAnyClientCertificate) accepts a client certificate only when its chain
        // builds: the root comes from the "ManagedQuic:TrustedCertificateAuthoritiesPath" PEM file.
        string dir = Directory.CreateTempSubdirectory("kq-ccca-").FullName;
        try
        {
            using X509Certificate2 serverCertificate = Http3ServerApp.CreateEphemeralCertificate();
            using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var caRequest = new CertificateRequest("CN=kq-client-ca", caKey, HashAlgorithmName.SHA256);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
            using X509Certificate2 ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=kq-ca-client", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
            using X509Certificate2 client = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3, 4]);
            string caFile = Path.Combine(dir, "ca.pem");
            string otherFile = Path.Combine(dir, "other.pem");
            await File.WriteAllTextAsync(caFile, ca.ExportCertificatePem());
            await File.WriteAllTextAsync(otherFile, serverCertificate.ExportCertificatePem());
            await File.WriteAllTextAsync(Path.Combine(dir, "client.pem"), client.ExportCertificatePem());
            await File.WriteAllTextAsync(Path.Combine(dir, "client.key"), key.ExportPkcs8PrivateKeyPem());

            await using TestServer server = await TestServer.StartAsync(
                [$"--ManagedQuic:TrustedCertificateAuthoritiesPath={(trustTheCa ? caFile : otherFile)}"],
                map: app => app.MapGet("/whoami", (HttpContext context) => context.Connection.ClientCertificate?.Subject ?? "none"),
                configure: builder => builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https =>
                {
                    https.ServerCertificate = serverCertificate;
                    https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                })));

            string downloads = Directory.CreateDirectory(Path.Combine(dir, "out")).FullName;
            PeerResult r = await Peers.GtlsClientAsync(
                server.Port,
                ["--exit-on-all-streams-close", $"--download={downloads}", "--timeout=5s", $"--key={Path.Combine(dir, "client.key")}", $"--cert={Path.Combine(dir, "client.pem")}"],
                $"{server.Origin}/whoami");
            string file = Path.Combine(downloads, "whoami");
            if (trustTheCa)
            {
                Assert.True(r.ExitCode == 0, r.Tail);
                Assert.Equal("CN=kq-ca-client", await File.ReadAllTextAsync(file));
            }
            else
            {
                Assert.True(!File.Exists(file) || new FileInfo(file).Length == 0, "a response arrived for an untrusted client certificate\n" + r.Tail);
                Assert.Contains("CRYPTO_ERROR(0x12a)", r.StandardError, StringComparison.Ordinal); // TLS alert bad_certificate (42)
                Assert.DoesNotContain(server.Requests, e => e.StartsWith("GET /whoami", StringComparison.Ordinal));
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
