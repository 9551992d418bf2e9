using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;
using KestrelQuic.Tests.Diagnostics;
using KestrelQuic.Tests.Simulation;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// The client validates the server certificate over real UDP: untrusted, expired and wrong-host certificates are
/// refused with a QuicException naming the reason, the server learns the TLS alert; custom roots and the callback work.
/// </summary>
public sealed class CertificateValidationLoopbackTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly Lazy<(X509Certificate2 Ca, X509Certificate2 Leaf)> s_caAndLeaf = new(() => CreateCaAndLeaf("localhost"));
    private static readonly Lazy<X509Certificate2> s_dnsOnly = new(() => CreateSelfSigned("localhost", DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30)));
    private static readonly Lazy<X509Certificate2> s_expired = new(() => CreateSelfSigned("localhost", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1)));

    /// <summary>Connects a client with <paramref name="configureClient"/> to a server presenting <paramref name="serverCertificate"/>; returns the client's failure and the server's log.</summary>
    private async Task<(QuicException Error, CapturingLoggerProvider ServerLog)> ConnectExpectingFailure(X509Certificate2 serverCertificate, Action<QuicConfiguration> configureClient)
    {
        var log = new CapturingLoggerProvider();
        QuicListenerOptions listenerOptions = LoopbackTests.ListenerOptions(c => c.Certificate = serverCertificate);
        listenerOptions.LoggerFactory = log;
        await using QuicListener listener = await QuicListener.ListenAsync(listenerOptions);
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, configureClient);
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => QuicConnection.ConnectAsync(clientOptions).AsTask()).WaitAsync(Timeout);
        output.WriteLine($"client: {e.QuicError} 0x{e.TransportErrorCode:x}: {e.Message}");
        return (e, log);
    }

    private async Task AssertServerSawAlert(CapturingLoggerProvider log, string alert)
    {
        CapturingLoggerProvider.Entry entry = await log.WaitFor(e => e.EventId.Id == 4, Timeout);
        output.WriteLine($"server: {entry.Message}");
        Assert.Equal(alert, entry["TlsAlert"]);
        Assert.Equal("peer", entry["Sender"]);
    }

    [Fact]
    public async Task UntrustedSelfSigned_RefusedWithUnknownCa()
    {
        (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(TestCertificates.Localhost, c =>
        {
            c.TrustedCertificateAuthorities = null;
            c.UseSystemTrust = true;
        });
        Assert.Equal(QuicError.TransportError, e.QuicError);
        Assert.Equal(0x100 + 48, e.TransportErrorCode); // unknown_ca
        Assert.Contains("unknown_ca", e.Message);
        Assert.Contains("UntrustedRoot", e.Message);
        await AssertServerSawAlert(log, "unknown_ca");
    }

    [Fact]
    public async Task Expired_RefusedWithCertificateExpired()
    {
        X509Certificate2 expired = s_expired.Value;
        (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(expired, c => c.TrustedCertificateAuthorities = [expired]);
        Assert.Equal(0x100 + 45, e.TransportErrorCode); // certificate_expired
        Assert.Contains("certificate_expired", e.Message);
        Assert.Contains("NotTimeValid", e.Message);
        await AssertServerSawAlert(log, "certificate_expired");
    }

    [Fact]
    public async Task WrongHost_RefusedWithBadCertificate()
    {
        (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(TestCertificates.Localhost, c => c.ServerName = "wrong.example");
        Assert.Equal(0x100 + 42, e.TransportErrorCode); // bad_certificate
        Assert.Contains("bad_certificate", e.Message);
        Assert.Contains("wrong.example", e.Message);
        Assert.Contains("name mismatch", e.Message, StringComparison.OrdinalIgnoreCase);
        await AssertServerSawAlert(log, "bad_certificate");
    }

    [Fact]
    public async Task AddressWithoutServerName_CheckedAgainstTheCertificatesIpAddresses()
    {
        // A trusted certificate naming only "localhost" does not vouch for 127.0.0.1: connecting by address is refused...
        X509Certificate2 dnsOnly = s_dnsOnly.Value;
        (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(dnsOnly, c =>
        {
            c.ServerName = null;
            c.TrustedCertificateAuthorities = [dnsOnly];
            c.UseSystemTrust = false;
        });
        Assert.Equal(0x100 + 42, e.TransportErrorCode); // bad_certificate
        Assert.Contains("127.0.0.1", e.Message);
        await AssertServerSawAlert(log, "bad_certificate");

        // ...while one with 127.0.0.1 among its IP addresses is accepted for it.
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Certificate = TestCertificates.Localhost));
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
        {
            c.ServerName = null;
            c.TrustedCertificateAuthorities = [TestCertificates.Localhost];
            c.UseSystemTrust = false;
        })).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await accept.WaitAsync(Timeout);
        Assert.Equal(TestCertificates.Localhost.Thumbprint, client.RemoteCertificate!.Thumbprint);
    }

    [Fact]
    public async Task CallbackRejects_RefusedNamingTheCallback()
    {
        (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(TestCertificates.Localhost, c => c.CertificateValidationCallback = (_, _, _) => false);
        Assert.Equal(0x100 + 42, e.TransportErrorCode);
        Assert.Contains(nameof(QuicConfiguration.CertificateValidationCallback), e.Message);
        await AssertServerSawAlert(log, "bad_certificate");
    }

    [Fact]
    public async Task CustomCa_ChainsToTrustedRoot_Connects()
    {
        (X509Certificate2 ca, X509Certificate2 leaf) = s_caAndLeaf.Value;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Certificate = leaf));
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
        {
            c.TrustedCertificateAuthorities = [ca];
            c.UseSystemTrust = false;
        })).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await accept.WaitAsync(Timeout);
        Assert.Equal(leaf.Thumbprint, client.RemoteCertificate!.Thumbprint);

        // The same leaf without its root configured is refused.
        await using QuicListener listener2 = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Certificate = leaf));
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener2.LocalEndPoint, c =>
        {
            c.TrustedCertificateAuthorities = [TestCertificates.Localhost];
            c.UseSystemTrust = false;
        })).AsTask()).WaitAsync(Timeout);
        output.WriteLine(e.Message);
        Assert.Equal(0x100 + 48, e.TransportErrorCode);
    }

    [Fact]
    public async Task CaFile_TrustingTheRootConnects_WithoutItRefusedWithUnknownCa()
    {
        (X509Certificate2 ca, X509Certificate2 leaf) = s_caAndLeaf.Value;
        string dir = Directory.CreateTempSubdirectory("kq-cafile-").FullName;
        try
        {
            // A bundle: an unrelated root first, then the one that signed the server's certificate.
            string bundle = Path.Combine(dir, "bundle.pem");
            await File.WriteAllTextAsync(bundle, TestCertificates.Localhost.ExportCertificatePem() + "\n" + ca.ExportCertificatePem() + "\n");
            string unrelated = Path.Combine(dir, "unrelated.pem");
            await File.WriteAllTextAsync(unrelated, TestCertificates.Localhost.ExportCertificatePem());

            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Certificate = leaf));
            Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
            {
                c.TrustedCertificateAuthorities = null;
                c.UseSystemTrust = false;
                c.TrustedCertificateAuthoritiesPath = bundle;
            })).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await accept.WaitAsync(Timeout);
            Assert.Equal(leaf.Thumbprint, client.RemoteCertificate!.Thumbprint);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 1000);

            // A file without the server's root: unknown_ca, and the server hears the alert.
            (QuicException e, CapturingLoggerProvider log) = await ConnectExpectingFailure(leaf, c =>
            {
                c.TrustedCertificateAuthorities = null;
                c.UseSystemTrust = false;
                c.TrustedCertificateAuthoritiesPath = unrelated;
            });
            Assert.Equal(QuicError.TransportError, e.QuicError);
            Assert.Equal(0x100 + 48, e.TransportErrorCode); // unknown_ca
            Assert.Contains("unknown_ca", e.Message);
            await AssertServerSawAlert(log, "unknown_ca");

            // A missing file stops ConnectAsync before any packet, naming the property.
            ArgumentException invalid = await Assert.ThrowsAsync<ArgumentException>(() => QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
                c.TrustedCertificateAuthoritiesPath = Path.Combine(dir, "missing.pem"))).AsTask());
            Assert.Contains(nameof(QuicConfiguration.TrustedCertificateAuthoritiesPath), invalid.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Callback_SeesPolicyErrorsAndCanAccept()
    {
        SslPolicyErrors seen = SslPolicyErrors.None;
        X509Certificate2? seenLeaf = null;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
        {
            c.TrustedCertificateAuthorities = null;
            c.UseSystemTrust = true;
            c.ServerName = "pinned.example";
            c.CertificateValidationCallback = (leaf, _, errors) =>
            {
                seen = errors;
                seenLeaf = leaf;
                return leaf.Thumbprint == TestCertificates.Localhost.Thumbprint; // pinning
            };
        })).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await accept.WaitAsync(Timeout);
        Assert.Equal(SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNameMismatch, seen);
        Assert.Equal(TestCertificates.Localhost.Thumbprint, seenLeaf!.Thumbprint);
    }

    private static X509Certificate2 CreateSelfSigned(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        using X509Certificate2 cert = request.CreateSelfSigned(notBefore, notAfter);
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    private static (X509Certificate2 Ca, X509Certificate2 Leaf) CreateCaAndLeaf(string name)
    {
        using ECDsa caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=KestrelQuic Test Root", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        X509Certificate2 ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));

        using ECDsa leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest($"CN={name}", leafKey, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        leafRequest.CertificateExtensions.Add(san.Build());
        leafRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 signed = leafRequest.Create(ca, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddDays(30), RandomNumberGenerator.GetBytes(8));
        using X509Certificate2 withKey = signed.CopyWithPrivateKey(leafKey);
        X509Certificate2 leaf = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        return (X509CertificateLoader.LoadCertificate(ca.RawData), leaf);
    }
}
