using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace KestrelQuic.Interop;

/// <summary>
/// What the cases share: a scratch directory (tmpfs when there is one), a localhost certificate, a 10-certificate
/// chain for amplificationlimit (leaf, 8 intermediates and a root), the document root gtlsserver serves, and
/// process and port helpers.
/// </summary>
internal sealed class InteropWorkspace : IDisposable
{
    /// <summary>Files gtlsserver serves, by name: size.</summary>
    public static readonly (string Name, int Size)[] Documents =
    [
        ("1k", 1024), ("2m", 2 << 20), ("3m", 3 << 20), ("5m", 5 << 20), ("10m", 10 << 20),
    ];

    /// <summary>Small files for multiplexing, under m/ (m/0 … m/1999).</summary>
    public const int MultiplexingFiles = 2000;

    public InteropWorkspace()
    {
        string root = System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        Directory = System.IO.Directory.CreateDirectory(Path.Combine(root, "kestrelquic-interop-" + Environment.ProcessId)).FullName;

        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(LocalhostNames());
        using X509Certificate2 created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
        Certificate = X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
        CertificatePath = Write("cert.pem", created.ExportCertificatePem());
        KeyPath = Write("key.pem", key.ExportPkcs8PrivateKeyPem());

        (ChainLeaf, ChainIssuers, ChainRoot, string chainKeyPem) = CreateLongChain(9);
        ChainKeyPath = Write("chain-key.pem", chainKeyPem);
        var chainPem = new StringBuilder(ChainLeaf.ExportCertificatePem()).Append('\n');
        foreach (X509Certificate2 issuer in ChainIssuers) chainPem.Append(issuer.ExportCertificatePem()).Append('\n');
        ChainPath = Write("chain.pem", chainPem.ToString());

        DocumentRoot = System.IO.Directory.CreateDirectory(Path.Combine(Directory, "htdocs")).FullName;
        foreach ((string name, int size) in Documents) File.WriteAllBytes(Path.Combine(DocumentRoot, name), Content(name, size));
        string m = System.IO.Directory.CreateDirectory(Path.Combine(DocumentRoot, "m")).FullName;
        for (int i = 0; i < MultiplexingFiles; i++)
        {
            string name = i.ToString(CultureInfo.InvariantCulture);
            File.WriteAllBytes(Path.Combine(m, name), Content("m/" + name, 32 + (i % 64)));
        }
    }

    public string Directory { get; }

    /// <summary>Where the peers' logs go (KESTRELQUIC_INTEROP_LOGS), or null to keep none.</summary>
    public static string? LogDirectory { get; } = Environment.GetEnvironmentVariable("KESTRELQUIC_INTEROP_LOGS") is { Length: > 0 } dir
        ? System.IO.Directory.CreateDirectory(dir).FullName
        : null;

    /// <summary>Self-signed ECDSA P-256 certificate for localhost and 127.0.0.1/::1.</summary>
    public X509Certificate2 Certificate { get; }

    public string CertificatePath { get; }

    public string KeyPath { get; }

    /// <summary>RSA leaf of the long chain, with its private key.</summary>
    public X509Certificate2 ChainLeaf { get; }

    /// <summary>The leaf's issuers, nearest first, the root last.</summary>
    public X509Certificate2Collection ChainIssuers { get; }

    public X509Certificate2 ChainRoot { get; }

    /// <summary>PEM: the leaf then every issuer (what gtlsserver sends).</summary>
    public string ChainPath { get; }

    public string ChainKeyPath { get; }

    public string DocumentRoot { get; }

    /// <summary>SHA-256 of the certificate's SubjectPublicKeyInfo, base64 (Chromium's --ignore-certificate-errors-spki-list).</summary>
    public static string SpkiHash(X509Certificate2 certificate) => Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));

    /// <summary>Deterministic content of a document.</summary>
    public static byte[] Content(string name, int size)
    {
        var data = new byte[size];
        int seed = 17;
        foreach (char c in name) seed = unchecked((seed * 31) + c);
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>A new empty directory under the workspace.</summary>
    public string NewDirectory(string prefix) =>
        System.IO.Directory.CreateDirectory(Path.Combine(Directory, $"{prefix}-{Guid.NewGuid():N}")).FullName;

    /// <summary>A port free for both TCP and UDP on <paramref name="address"/> (Kestrel binds both for HTTP/3).</summary>
    public static int FreePort(IPAddress address)
    {
        for (int attempt = 0; ; attempt++)
        {
            using var tcp = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            tcp.Bind(new IPEndPoint(address, 0));
            int port = ((IPEndPoint)tcp.LocalEndPoint!).Port;
            using var udp = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                udp.Bind(new IPEndPoint(address, port));
                return port;
            }
            catch (SocketException) when (attempt < 50)
            {
            }
        }
    }

    /// <summary>True once something has bound UDP <paramref name="port"/> on <paramref name="address"/>.</summary>
    public static bool IsUdpPortBound(IPAddress address, int port)
    {
        using var probe = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            probe.Bind(new IPEndPoint(address, port));
            return false;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    /// <summary>Runs a peer to completion (killed at <paramref name="timeout"/> or on cancellation).</summary>
    public static async Task<PeerRun> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        Task<string> stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        bool timedOut = false;
        using (var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            cts.CancelAfter(timeout);
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
        }

        return new PeerRun(process.ExitCode, await stdout, await stderr, timedOut);
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Write(string name, string text)
    {
        string path = Path.Combine(Directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static X509Extension LocalhostNames()
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        return san.Build();
    }

    /// <summary>A chain of <paramref name="issuers"/> certificate authorities (the root first) and an RSA leaf.</summary>
    private static (X509Certificate2 Leaf, X509Certificate2Collection Issuers, X509Certificate2 Root, string LeafKeyPem) CreateLongChain(int issuers)
    {
        DateTimeOffset from = DateTimeOffset.UtcNow.AddDays(-1), to = DateTimeOffset.UtcNow.AddDays(7);
        var chain = new List<X509Certificate2>();
        // The issuers' keys live as long as the process: the certificates holding them sign the next one.
        var rootRequest = new CertificateRequest("CN=KestrelQuic interop root", RSA.Create(2048), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        rootRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(rootRequest.PublicKey, false));
        X509Certificate2 issuer = rootRequest.CreateSelfSigned(from, to);
        X509Certificate2 root = X509CertificateLoader.LoadCertificate(issuer.RawData);
        chain.Add(root);
        for (int i = 1; i < issuers; i++)
        {
            RSA key = RSA.Create(2048);
            var request = new CertificateRequest($"CN=KestrelQuic interop intermediate {i}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            byte[] serial = RandomNumberGenerator.GetBytes(8);
            using X509Certificate2 signed = request.Create(issuer, from, to, serial);
            issuer.Dispose();
            issuer = signed.CopyWithPrivateKey(key);
            chain.Add(X509CertificateLoader.LoadCertificate(signed.RawData));
        }

        using RSA leafKey = RSA.Create(2048);
        var leafRequest = new CertificateRequest("CN=localhost", leafKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        leafRequest.CertificateExtensions.Add(LocalhostNames());
        leafRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        using X509Certificate2 leafSigned = leafRequest.Create(issuer, from, to, RandomNumberGenerator.GetBytes(8));
        issuer.Dispose();
        using X509Certificate2 withKey = leafSigned.CopyWithPrivateKey(leafKey);
        X509Certificate2 leaf = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        chain.Reverse(); // nearest issuer first, the root last
        return (leaf, new X509Certificate2Collection(chain.ToArray()), root, leafKey.ExportPkcs8PrivateKeyPem());
    }
}

/// <summary>What a peer process printed and how it ended.</summary>
internal sealed record PeerRun(int ExitCode, string StandardOutput, string StandardError, bool TimedOut)
{
    /// <summary>Exited 0 in time, and did not give up a handshake (ngtcp2's clients exit 0 after ERR_HANDSHAKE_TIMEOUT).</summary>
    public bool Succeeded => ExitCode == 0 && !TimedOut && !StandardError.Contains("ERR_HANDSHAKE_TIMEOUT", StringComparison.Ordinal);

    /// <summary>The last lines of stderr, for a failure reason.</summary>
    public string Tail(int lines = 3) =>
        string.Join(" / ", StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries).TakeLast(lines)).Trim();

    public string Describe() => TimedOut ? "peer timed out" : $"peer exited with {ExitCode}: {Tail()}";
}
