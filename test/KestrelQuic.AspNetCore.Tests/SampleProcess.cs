using System.Diagnostics;
using System.Text;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// samples/Http3Server as a child process, for what must not be done inside the test process: environment variables
/// (the test host's are shared by every test) and the sample's defaults (no arguments at all). Its console output is
/// kept; disposing kills it.
/// </summary>
internal sealed class SampleProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SampleProcess(Process process)
    {
        _process = process;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>
    /// Starts the sample with <paramref name="args"/> and, on top of a copy of this process's environment stripped of
    /// every setting the sample reads (ASPNETCORE_*, DOTNET_URLS, ManagedQuic__*, Kestrel__*), <paramref name="environment"/>.
    /// </summary>
    public static SampleProcess Start(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "Http3Server.dll");
        // env --default-signal: a runner started in the background may have SIGINT ignored, which children inherit.
        var psi = new ProcessStartInfo("env")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory, // the content root, with the sample's appsettings.json
        };
        foreach (string a in new[] { "--default-signal=INT", "dotnet", dll }.Concat(args)) psi.ArgumentList.Add(a);
        foreach (string name in psi.Environment.Keys.ToList())
        {
            if (name.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase) || name.Equals("DOTNET_URLS", StringComparison.OrdinalIgnoreCase)
                || name.StartsWith("ManagedQuic__", StringComparison.OrdinalIgnoreCase) || name.StartsWith("Kestrel__", StringComparison.OrdinalIgnoreCase))
            {
                psi.Environment.Remove(name);
            }
        }

        if (environment is not null)
        {
            foreach ((string name, string value) in environment) psi.Environment[name] = value;
        }

        Process process = Process.Start(psi) ?? throw new InvalidOperationException("the sample did not start");
        var sample = new SampleProcess(process);
        process.OutputDataReceived += (_, e) => sample.Append(e.Data);
        process.ErrorDataReceived += (_, e) => sample.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return sample;
    }

    /// <summary>Waits until the output contains <paramref name="text"/>; fails (with the output) if the process exits or the time runs out.</summary>
    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                await _process.WaitForExitAsync(); // the last lines
                Assert.Fail($"the sample exited with {_process.ExitCode} before printing '{text}':\n{Output}");
            }

            if (clock.Elapsed > timeout) Assert.Fail($"the sample did not print '{text}' within {timeout.TotalSeconds} s:\n{Output}");
            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null) return;
        lock (_output) _output.AppendLine(line);
    }
}
