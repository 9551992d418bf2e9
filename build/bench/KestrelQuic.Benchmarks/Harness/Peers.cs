using System.Diagnostics;
using System.Globalization;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>The long-running servers the cases talk to: our Kestrel sample and ngtcp2's gtlsserver.</summary>
internal static class Peers
{
    /// <summary>Built by build/bench.sh next to this harness (Release).</summary>
    public static string SampleServerDll => Path.Combine("samples", "Http3Server", "bin", "Release", "net10.0", "Http3Server.dll");

    /// <summary>Published ReadyToRun by build/bench.sh, the way a command-line tool ships (startup is part of P2).</summary>
    public static string SampleClientDll => Path.Combine("build", "bench", "client", "Http3Client.dll");

    public static string Port(int port) => port.ToString(CultureInfo.InvariantCulture);

    /// <summary>Starts samples/Http3Server on 127.0.0.1 (TCP and UDP, the same port) and waits until it answers over HTTP/3.</summary>
    public static async Task<int> StartSampleServerAsync(Workspace workspace)
    {
        if (!File.Exists(SampleServerDll)) throw new InvalidOperationException($"{SampleServerDll} is missing: run build/bench.sh, which builds it");
        int port = Workspace.FreeUdpPort();
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(SampleServerDll);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add($"https://127.0.0.1:{Port(port)}");
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        info.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Warning";
        info.Environment["Logging__LogLevel__KestrelQuic"] = "Warning";
        Process server = workspace.Track(Process.Start(info) ?? throw new InvalidOperationException("could not start the sample server"));
        _ = server.StandardOutput.ReadToEndAsync();
        _ = server.StandardError.ReadToEndAsync();
        await WaitUntilServingAsync(port, "/").ConfigureAwait(false);
        return port;
    }

    /// <summary>Starts gtlsserver serving <paramref name="directory"/> on 127.0.0.1 and waits until it answers.</summary>
    public static async Task<int> StartNgtcp2ServerAsync(Workspace workspace, string directory, string probePath)
    {
        int port = Workspace.FreeUdpPort();
        workspace.Track(Workspace.Start("gtlsserver", ["-q", "127.0.0.1", Port(port), workspace.KeyPath, workspace.CertificatePath, "-d", directory]));
        await WaitUntilServingAsync(port, probePath).ConfigureAwait(false);
        return port;
    }

    /// <summary>ngtcp2's client, quiet, exiting when its streams are done; the wall time in seconds.</summary>
    public static Task<double> Ngtcp2ClientAsync(int port, string path, params string[] options) =>
        Workspace.RunTimedAsync(
            "gtlsclient",
            ["-q", "--exit-on-all-streams-close", .. options, "127.0.0.1", Port(port), $"https://localhost:{Port(port)}{path}"],
            TimeSpan.FromMinutes(3));

    private static async Task WaitUntilServingAsync(int port, string path)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await Workspace.RunTimedAsync("gtlsclient", ["-q", "--exit-on-all-streams-close", "--timeout=2s", "127.0.0.1", Port(port), $"https://localhost:{Port(port)}{path}"], TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException && clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                await Task.Delay(250).ConfigureAwait(false);
            }
        }
    }
}
