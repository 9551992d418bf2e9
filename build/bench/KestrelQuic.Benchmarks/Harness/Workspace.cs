using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>
/// Scratch space shared by the cases: a temporary directory (on tmpfs when available, so disk speed does not
/// enter the figures), a self-signed localhost certificate as an object and as PEM files for the C peers, and
/// process helpers.
/// </summary>
internal sealed class Workspace : IDisposable
{
    public Workspace()
    {
        string root = System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        Directory = System.IO.Directory.CreateDirectory(Path.Combine(root, "kestrelquic-bench-" + Environment.ProcessId)).FullName;
        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using X509Certificate2 created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
        Certificate = X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
        CertificatePath = Path.Combine(Directory, "cert.pem");
        KeyPath = Path.Combine(Directory, "key.pem");
        System.IO.File.WriteAllText(CertificatePath, created.ExportCertificatePem());
        System.IO.File.WriteAllText(KeyPath, key.ExportPkcs8PrivateKeyPem());
    }

    public string Directory { get; }

    public X509Certificate2 Certificate { get; }

    public string CertificatePath { get; }

    public string KeyPath { get; }

    private readonly List<Process> _processes = new();

    /// <summary>Keeps a long-running peer (a server) to be killed when the harness ends.</summary>
    public Process Track(Process process)
    {
        _processes.Add(process);
        return process;
    }

    /// <summary>A file of <paramref name="length"/> pseudo-random bytes in <paramref name="subdirectory"/>, made once.</summary>
    public string DataFile(string subdirectory, string name, long length)
    {
        string dir = System.IO.Directory.CreateDirectory(Path.Combine(Directory, subdirectory)).FullName;
        string path = Path.Combine(dir, name);
        if (new FileInfo(path) is { Exists: true } info && info.Length == length) return path;
        using FileStream f = System.IO.File.Create(path);
        var chunk = new byte[1 << 20];
        new Random(42).NextBytes(chunk);
        for (long written = 0; written < length; written += chunk.Length) f.Write(chunk, 0, (int)Math.Min(chunk.Length, length - written));
        return path;
    }

    /// <summary>A UDP port free right now on the loopback interface.</summary>
    public static int FreeUdpPort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Starts a process with its output captured (stdout lines can be awaited); it dies with the harness.</summary>
    public static Process Start(string file, IEnumerable<string> arguments, bool redirectInput = false)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = redirectInput,
            UseShellExecute = false,
        };
        foreach (string a in arguments) info.ArgumentList.Add(a);
        return Process.Start(info) ?? throw new InvalidOperationException("could not start " + file);
    }

    /// <summary>Runs a process to completion; the elapsed wall time in seconds. Throws on a non-zero exit or timeout.</summary>
    public static async Task<double> RunTimedAsync(string file, IEnumerable<string> arguments, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        using Process p = Start(file, arguments);
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} did not finish in {timeout.TotalSeconds:F0} s");
        }

        double seconds = clock.Elapsed.TotalSeconds;
        await Task.WhenAll(stdout, stderr).ConfigureAwait(false);
        if (p.ExitCode != 0)
        {
            string tail = stderr.Result.Length > 2000 ? stderr.Result[^2000..] : stderr.Result;
            throw new InvalidOperationException($"{file} exited with {p.ExitCode}: {tail}");
        }

        return seconds;
    }

    /// <summary>Resident set size of a process, from /proc (bytes).</summary>
    public static long ResidentSetSize(int pid)
    {
        foreach (string line in System.IO.File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException("no VmRSS for process " + pid);
    }

    public void Dispose()
    {
        foreach (Process p in _processes)
        {
            try
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            p.Dispose();
        }

        Certificate.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: the directory is in a temporary location.
        }
    }
}
