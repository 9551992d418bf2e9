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
}
