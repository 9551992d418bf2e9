using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// ngtcp2's HTTP/3 server (<c>gtlsserver</c>, Debian package ngtcp2-server) on a loopback port, serving a document
/// root with deterministic files, behind a fresh self-signed certificate. Throws (the test fails) when the binary is
/// missing.
/// </summary>
internal sealed class GtlsServer : IAsyncDisposable
{
    public const string SmallFile = "small.bin";
    public const string MediumFile = "medium.bin";
    public const string LargeFile = "large.bin";
    public const int SmallSize = 1024;
    public const int MediumSize = 2 * 1024 * 1024;
    public const int LargeSize = 50 * 1024 * 1024;

    private static readonly Lazy<Documents> s_documents = new(Documents.Create);

    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private GtlsServer(Process process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public Uri BaseUri => new($"https://127.0.0.1:{Port}/");

    public static X509Certificate2 Certificate => s_documents.Value.Certificate;

    public static string DocumentRoot => s_documents.Value.Root;

    public static byte[] Sha256Of(string file) => s_documents.Value.Hashes[file];

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public static string FindTool(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Append("/usr/sbin").Append("/usr/bin"))
        {
            string path = Path.Combine(dir, name);
            if (File.Exists(path))
            {
                return path;
            }
        }

        throw new InvalidOperationException($"{name} is not installed (Debian package ngtcp2-server / ngtcp2-client; build/install-peers.sh installs it).");
    }

    /// <summary>Starts the server with extra options (e.g. "-t 0.1", "--ciphers=...").</summary>
    public static Task<GtlsServer> StartAsync(params string[] options) => StartAsync(quiet: true, options);

    /// <summary>Starts the server; without <paramref name="quiet"/> its frame log is kept in <see cref="Log"/>.</summary>
    public static async Task<GtlsServer> StartAsync(bool quiet, params string[] options)
    {
        string exe = FindTool("gtlsserver");
        Documents docs = s_documents.Value;
        int port = GetFreeUdpPort();
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (quiet)
        {
            psi.ArgumentList.Add("-q");
        }

        foreach (string option in options)
        {
            psi.ArgumentList.Add(option);
        }

        psi.ArgumentList.Add("-d");
        psi.ArgumentList.Add(docs.Root);
        psi.ArgumentList.Add("127.0.0.1");
        psi.ArgumentList.Add(port.ToString(CultureInfo.InvariantCulture));
        psi.ArgumentList.Add(docs.KeyFile);
        psi.ArgumentList.Add(docs.CertFile);
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("gtlsserver did not start.");
        var server = new GtlsServer(process, port);
        process.OutputDataReceived += (_, e) => server.Append(e.Data);
        process.ErrorDataReceived += (_, e) => server.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        // Ready once the UDP port is bound.
        for (int i = 0; i < 200 && !IsUdpPortBound(port); i++)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"gtlsserver exited with {process.ExitCode}: {server.Log}");
            }

            await Task.Delay(25);
        }

        return server;
    }

    /// <summary>Runs gtlsclient against this server to download <paramref name="path"/>; returns the elapsed time.</summary>
    public async Task<TimeSpan> RunGtlsClientAsync(string path, string downloadDir)
    {
        string exe = FindTool("gtlsclient");
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "-q", "--exit-on-all-streams-close", "--download=" + downloadDir, "127.0.0.1", Port.ToString(CultureInfo.InvariantCulture), new Uri(BaseUri, path).ToString() })
        {
            psi.ArgumentList.Add(arg);
        }

        var watch = Stopwatch.StartNew();
        using Process process = Process.Start(psi)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        watch.Stop();
        await Task.WhenAll(stdout, stderr);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"gtlsclient exited with {process.ExitCode}: {await stderr}");
        }

        return watch.Elapsed;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            if (_log.Length < 16 * 1024 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }

    private static int GetFreeUdpPort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    private static bool IsUdpPortBound(int port)
    {
        string hex = ":" + port.ToString("X4", CultureInfo.InvariantCulture) + " ";
        return File.ReadAllText("/proc/net/udp").Contains(hex, StringComparison.Ordinal);
    }

    private sealed class Documents
    {
        public required string Root { get; init; }

        public required string KeyFile { get; init; }

        public required string CertFile { get; init; }

        public required X509Certificate2 Certificate { get; init; }

        public required Dictionary<string, byte[]> Hashes { get; init; }

        public static Documents Create()
        {
            string dir = Path.Combine(Path.GetTempPath(), "kq-h3-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            string root = Path.Combine(dir, "htdocs");
            Directory.CreateDirectory(root);

            // 50 MB per test run: do not leave it behind.
            AppDomain.CurrentDomain.ProcessExit += (_, _) =>
            {
                try
                {
                    Directory.Delete(dir, recursive: true);
                }
                catch (IOException)
                {
                }
            };
            var hashes = new Dictionary<string, byte[]>
            {
                [SmallFile] = WriteFile(Path.Combine(root, SmallFile), SmallSize, 1),
                [MediumFile] = WriteFile(Path.Combine(root, MediumFile), MediumSize, 3),
                [LargeFile] = WriteFile(Path.Combine(root, LargeFile), LargeSize, 2),
            };

            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            san.AddDnsName("localhost");
            san.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(san.Build());
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
            using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
            string keyFile = Path.Combine(dir, "server.key");
            string certFile = Path.Combine(dir, "server.crt");
            File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(certFile, cert.ExportCertificatePem());
            return new Documents
            {
                Root = root,
                KeyFile = keyFile,
                CertFile = certFile,
                Certificate = X509CertificateLoader.LoadCertificate(cert.RawData),
                Hashes = hashes,
            };
        }

        private static byte[] WriteFile(string path, int size, int seed)
        {
            var random = new Random(seed);
            byte[] chunk = new byte[1024 * 1024];
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using FileStream file = File.Create(path);
            for (int written = 0; written < size; written += chunk.Length)
            {
                int n = Math.Min(chunk.Length, size - written);
                random.NextBytes(chunk.AsSpan(0, n));
                file.Write(chunk, 0, n);
                hash.AppendData(chunk, 0, n);
            }

            return hash.GetHashAndReset();
        }
    }
}
