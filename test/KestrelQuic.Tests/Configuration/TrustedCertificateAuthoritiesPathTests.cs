using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Configuration;

/// <summary><see cref="QuicConfiguration.TrustedCertificateAuthoritiesPath"/>: validation messages, read once, shared by clones.</summary>
public sealed class TrustedCertificateAuthoritiesPathTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kq-ca-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static QuicConfiguration WithPath(string path) => new() { ApplicationProtocols = { "h3" }, TrustedCertificateAuthoritiesPath = path };

    private static string SingleError(QuicConfiguration c)
    {
        string error = Assert.Single(c.Validate());
        Assert.StartsWith(nameof(QuicConfiguration.TrustedCertificateAuthoritiesPath) + " ", error);
        ArgumentException e = Assert.Throws<ArgumentException>(c.ThrowIfInvalid);
        Assert.Contains(error, e.Message);
        return error;
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void MissingFile_ErrorNamesThePropertyAndThePath()
    {
        string path = Path.Combine(_dir, "nope.pem");
        string error = SingleError(WithPath(path));
        Assert.Contains("does not exist", error);
        Assert.Contains(path, error);
        Assert.Contains("does not exist", SingleError(WithPath(Path.Combine(_dir, "no-such-dir", "ca.pem"))));
    }

    [Fact]
    public void EmptyPath_IsAnError()
    {
        Assert.Contains("must name a PEM file", SingleError(WithPath("")));
        Assert.Contains("must name a PEM file", SingleError(WithPath("  ")));
    }

    [Fact]
    public void FileWithoutCertificates_IsAnError()
    {
        Assert.Contains("no PEM certificate", SingleError(WithPath(Write("empty.pem", ""))));
        Assert.Contains("no PEM certificate", SingleError(WithPath(Write("text.pem", "not a certificate\n"))));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.Contains("no PEM certificate", SingleError(WithPath(Write("key.pem", key.ExportPkcs8PrivateKeyPem()))));
    }

    [Fact]
    public void UnreadableOrMalformedFile_IsAnError()
    {
        // A directory cannot be read as a file (a chmod 000 file would not do: tests may run as root).
        string directory = Directory.CreateDirectory(Path.Combine(_dir, "dir.pem")).FullName;
        string error = SingleError(WithPath(directory));
        Assert.Contains("could not be read", error);
        Assert.Contains(directory, error);

        string malformed = Write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        Assert.Contains("could not be read", SingleError(WithPath(malformed)));
    }

    [Fact]
    public void Bundle_AllCertificatesLoaded_MergedWithInMemoryRoots_ReadOnceAndSharedByClones()
    {
        X509Certificate2 other = Tls.TestCertificates.OtherCa;
        string path = Write("bundle.pem", "# a comment line, as bundles have\n" + TestCertificates.Localhost.ExportCertificatePem() + "\n" + other.ExportCertificatePem() + "\n");
        QuicConfiguration c = WithPath(path);
        Assert.Equal(path, c.TrustedCertificateAuthoritiesPath);
        Assert.Empty(c.Validate());
        Assert.Equal(
            new[] { TestCertificates.Localhost.Thumbprint, other.Thumbprint },
            c.EffectiveTrustedCertificateAuthorities()!.Select(x => x.Thumbprint));

        // Read once: the file is gone, yet the configuration and its clones keep the certificates.
        File.Delete(path);
        QuicConfiguration clone = c.Clone();
        Assert.Empty(clone.Validate());
        Assert.Equal(path, clone.TrustedCertificateAuthoritiesPath);
        Assert.Equal(2, clone.EffectiveTrustedCertificateAuthorities()!.Count);

        // In-memory roots come first, the file's are added.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using X509Certificate2 inMemory = new CertificateRequest("CN=in-memory root", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        clone.TrustedCertificateAuthorities = [inMemory];
        Assert.Equal(
            new[] { inMemory.Thumbprint, TestCertificates.Localhost.Thumbprint, other.Thumbprint },
            clone.EffectiveTrustedCertificateAuthorities()!.Select(x => x.Thumbprint));
        Assert.Single(c.EffectiveTrustedCertificateAuthorities()!.Cast<X509Certificate2>(), x => x.Thumbprint == other.Thumbprint);

        // Setting the property again reads the file again (now missing).
        clone.TrustedCertificateAuthoritiesPath = path;
        Assert.Contains("does not exist", SingleError(clone));
        Assert.Throws<InvalidOperationException>(() => clone.EffectiveTrustedCertificateAuthorities());
        clone.TrustedCertificateAuthoritiesPath = null;
        Assert.Empty(clone.Validate());
        Assert.Same(clone.TrustedCertificateAuthorities, clone.EffectiveTrustedCertificateAuthorities());
    }

    [Fact]
    public void FailedRead_IsNotRemembered_FileCreatedLaterIsRead()
    {
        string path = Path.Combine(_dir, "later.pem");
        QuicConfiguration c = WithPath(path);
        Assert.Contains("does not exist", SingleError(c));
        File.WriteAllText(path, TestCertificates.Localhost.ExportCertificatePem());
        Assert.Empty(c.Validate());
        Assert.Equal(TestCertificates.Localhost.Thumbprint, Assert.Single(c.EffectiveTrustedCertificateAuthorities()!).Thumbprint);
    }
}
