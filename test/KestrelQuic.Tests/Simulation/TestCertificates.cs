using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Self-signed certificates for tests, created once per process.</summary>
internal static class TestCertificates
{
    /// <summary>
    /// Validity of the certificates: fixed, so that both the real clock (loopback tests) and the simulated one
    /// (<see cref="SimulationClock.Epoch"/>: connections read wall time from the time they are driven with) fall inside.
    /// </summary>
    public static readonly DateTimeOffset NotBefore = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static readonly DateTimeOffset NotAfter = new(2036, 1, 1, 0, 0, 0, TimeSpan.Zero);

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
        using X509Certificate2 cert = request.CreateSelfSigned(NotBefore, NotAfter);
        // Round-trip through PKCS#12 so the private key is usable on every platform.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }
}

/// <summary>Where simulated time starts: simulated ticks are UTC ticks to the connection's TLS (ticket ages, certificate validity).</summary>
internal static class SimulationClock
{
    /// <summary>2026-01-01T00:00:00Z in ticks.</summary>
    public const long Epoch = 639_028_224_000_000_000;

    /// <summary>Start of a connection that obtains a session ticket for a later one: a minute before <see cref="Epoch"/>.</summary>
    public const long EarlierConnection = Epoch - 60 * TimeSpan.TicksPerSecond;
}
