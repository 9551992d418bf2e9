using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;

namespace KestrelQuic.Http.Tests;

/// <summary>Server certificate validation through ManagedHttp3Handler: the validation callback decides, and a certificate for another name is refused with a message naming the cause.</summary>
public sealed class CertificateValidationTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ValidationCallback_Rejects_HttpRequestExceptionNamesTheCallback()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "ok"));
        X509Certificate2? seen = null;
        SslPolicyErrors seenErrors = SslPolicyErrors.None;
        using var client = new HttpClient(new ManagedHttp3Handler(new Http3HandlerOptions
        {
            // Trusted by its CA: only the callback refuses it.
            Configuration = new QuicConfiguration
            {
                UseSystemTrust = false,
                TrustedCertificateAuthorities = [FakeH3Server.Certificate],
                CertificateValidationCallback = (certificate, _, errors) =>
                {
                    seen = certificate;
                    seenErrors = errors;
                    return false;
                },
            },
        }));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, "/"))).WaitAsync(Timeout);

        Assert.Equal(HttpRequestError.ConnectionError, e.HttpRequestError);
        Assert.Contains("CertificateValidationCallback", e.Message, StringComparison.Ordinal);
        Assert.Equal(FakeH3Server.Certificate.Thumbprint, seen?.Thumbprint);
        Assert.Equal(SslPolicyErrors.None, seenErrors);
        Assert.Empty(server.Connections.SelectMany(c => c.RequestStreamIds));
    }

    [Fact]
    public async Task ValidationCallback_AcceptsAnUntrustedCertificate_RequestSucceeds()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "accepted by the callback"));
        SslPolicyErrors seenErrors = SslPolicyErrors.None;
        using var client = new HttpClient(new ManagedHttp3Handler(new Http3HandlerOptions
        {
            // System trust only, which does not know the self-signed certificate: the callback is told and accepts.
            Configuration = new QuicConfiguration
            {
                CertificateValidationCallback = (certificate, _, errors) =>
                {
                    seenErrors = errors;
                    return certificate.Thumbprint == FakeH3Server.Certificate.Thumbprint;
                },
            },
        }));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout);

        Assert.Equal(HttpVersion.Version30, response.Version);
        Assert.Equal("accepted by the callback", await response.Content.ReadAsStringAsync());
        Assert.Equal(SslPolicyErrors.RemoteCertificateChainErrors, seenErrors);
    }

    [Fact]
    public async Task CertificateForAnotherName_Refused_MessageNamesTheMismatch()
    {
        using X509Certificate2 other = CreateCertificate("other.example");
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "ok"), c => c.Certificate = other);
        using var client = new HttpClient(new ManagedHttp3Handler(new Http3HandlerOptions
        {
            Configuration = new QuicConfiguration { UseSystemTrust = false, TrustedCertificateAuthorities = [other] },
        }));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, "/"))).WaitAsync(Timeout);

        Assert.Equal(HttpRequestError.ConnectionError, e.HttpRequestError);
        Assert.Contains("name mismatch: 'localhost' is not among the certificate's names (DNS:other.example)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IpLiteralNotInTheCertificate_Refused_MessageNamesTheMismatch()
    {
        // The certificate names localhost only (no IP address): a request to https://127.0.0.1 must not accept it.
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "ok"));
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync($"https://127.0.0.1:{server.BaseUri.Port}/")).WaitAsync(Timeout);

        Assert.Contains("name mismatch: '127.0.0.1' is not among the certificate's names (DNS:localhost)", e.Message, StringComparison.Ordinal);

        // The same server by the name its certificate holds.
        Assert.Equal("ok", await client.GetStringAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout));
    }

    private static X509Certificate2 CreateCertificate(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }
}
