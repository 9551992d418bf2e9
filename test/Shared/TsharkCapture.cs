using System.Diagnostics;
using System.Text;
using Xunit;

namespace KestrelQuic.Testing;

/// <summary>A tshark capture of one UDP port on loopback, for the tests that decrypt our traffic with the secrets log.</summary>
internal static class TsharkCapture
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>Starts capturing <paramref name="port"/> into <paramref name="file"/> and returns once tshark is capturing.</summary>
    public static async Task<Process> StartAsync(int port, string file)
    {
        var psi = new ProcessStartInfo("tshark", $"-i lo -f \"udp port {port}\" -w {file}")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        Process process = Process.Start(psi) ?? throw new InvalidOperationException("tshark did not start");
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (log) log.AppendLine(e.Data);
            if (e.Data.Contains("Capturing on", StringComparison.Ordinal)) started.TrySetResult();
        };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        Task exited = process.WaitForExitAsync();
        if (await Task.WhenAny(started.Task, exited, Task.Delay(Timeout)) != started.Task)
        {
            lock (log) Assert.Fail("tshark could not start capturing: " + log);
        }

        await Task.Delay(500); // the filter is compiled and attached just after the banner
        return process;
    }

    /// <summary>Stops the capture with SIGINT, which lets tshark finish the pcapng file.</summary>
    public static async Task StopAsync(Process tshark)
    {
        await RunAsync("kill", $"-INT {tshark.Id}");
        using var cts = new CancellationTokenSource(Timeout);
        await tshark.WaitForExitAsync(cts.Token);
    }

    /// <summary>Runs a command to completion: its exit code, standard output and standard error.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(string file, string arguments)
    {
        var psi = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, await stdout, await stderr);
    }
}
