using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// The sample server as a real process: the first Ctrl+C stops gracefully (a download in flight keeps going), the
/// second aborts the connections still open and the process exits, with no error logged for the aborted request.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class SampleShutdownTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task FirstInterruptIsGraceful_SecondAbortsTheDownloadInFlight()
    {
        int port = TestServer.GetFreePort();
        string dll = Path.Combine(AppContext.BaseDirectory, "Http3Server.dll");
        // env --default-signal: a runner started in the background may have SIGINT ignored, which children inherit.
        var psi = new ProcessStartInfo("env") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { "--default-signal=INT", "dotnet", dll, "--urls", $"https://127.0.0.1:{port}" }) psi.ArgumentList.Add(a);
        using Process server = Process.Start(psi)!;
        var output = new StringBuilder();
        server.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        server.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        Process? download = null;
        try
        {
            // Ready when it answers over HTTP/3.
            var clock = Stopwatch.StartNew();
            while (true)
            {
                PeerResult probe = await Peers.GtlsClientAsync(port, ["-q", "--exit-on-all-streams-close", "--timeout=2s"], $"https://localhost:{port}/");
                if (probe.ExitCode == 0) break;
                Assert.True(clock.Elapsed < Timeout, "the sample never answered");
                await Task.Delay(250);
            }

            // A download far too long to finish during the test (4 GiB).
            var dpsi = new ProcessStartInfo("gtlsclient") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in new[] { "-q", "--exit-on-all-streams-close", "127.0.0.1", port.ToString(CultureInfo.InvariantCulture), $"https://localhost:{port}/bytes/4294967296" }) dpsi.ArgumentList.Add(a);
            download = Process.Start(dpsi)!;
            _ = download.StandardOutput.ReadToEndAsync();
            _ = download.StandardError.ReadToEndAsync();
            await Task.Delay(1000);

            await SignalAsync(server, "INT");
            await Task.Delay(1500);
            Assert.False(server.HasExited, "the first interrupt must let the download in flight continue");
            Assert.False(download.HasExited, "the download must still be running during the graceful stop");

            await SignalAsync(server, "INT");
            await server.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            await download.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15)); // the client saw the connection end
            string log;
            lock (output) log = output.ToString();
            Assert.Contains("Stopping gracefully", log);
            Assert.Contains("Aborting the remaining connections", log);
            Assert.False(log.Contains("fail:", StringComparison.Ordinal), log);
            Assert.False(log.Contains("Unhandled exception", StringComparison.Ordinal), log);
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
            if (download is { HasExited: false }) download.Kill();
            download?.Dispose();
        }
    }

    private static async Task SignalAsync(Process process, string signal)
    {
        // `env` exec()s dotnet, so the process id is the server's.
        PeerResult kill = await Peers.RunAsync("kill", [$"-{signal}", process.Id.ToString(CultureInfo.InvariantCulture)]);
        Assert.Equal(0, kill.ExitCode);
    }
}
