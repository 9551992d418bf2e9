using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Self-signed certificates for tests, created once per process.</summary>
internal static class TestCertificates
{
    private static readonly Lazy<X509Certificate2> s_ecdsa = new(() => Create("localhost", ECDsa.Create(ECCurve.NamedCurves.nistP256)));

    public static X509Certificate2 Localhost => s_ecdsa.Value;

    public static X509Certificate2 Create(string name, ECDsa key)
    {
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        // Round-trip through PKCS#12 so the private key is usable on every platform.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }
}
