using System.Diagnostics;
using System.Text.RegularExpressions;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>What a peer process printed and how it ended.</summary>
internal sealed record PeerResult(int ExitCode, string StandardOutput, string StandardError, bool TimedOut)
{
    /// <summary>The last lines of stderr, for assertion messages.</summary>
    public string Tail => string.Join('\n', StandardError.Split('\n').TakeLast(30));

    /// <summary>The value of a transport parameter of the server as gtlsclient logged it ("cry remote transport_parameters name=value").</summary>
    public string? ServerTransportParameter(string name)
    {
        Match m = Regex.Match(StandardError, $@"remote transport_parameters {Regex.Escape(name)}=(\S+)");
        return m.Success ? m.Groups[1].Value : null;
    }
}

/// <summary>
/// Runs the real peers installed by build/install-peers.sh (ngtcp2's gtlsclient, headless Chromium). A missing peer
/// makes Process.Start throw, so the test fails rather than skips.
/// </summary>
internal static class Peers
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    public static Task<PeerResult> GtlsClientAsync(int port, IEnumerable<string> options, params string[] urls)
    {
        var args = new List<string>(options) { "127.0.0.1", port.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        args.AddRange(urls);
        return RunAsync("gtlsclient", args);
    }

    /// <summary>Downloads https://localhost:PORT/ with gtlsclient and asserts that the sample's page says it was served over HTTP/3.</summary>
    public static async Task AssertPageServedOverHttp3Async(int port)
    {
        string dir = Directory.CreateTempSubdirectory("kq-page-").FullName;
        try
        {
            PeerResult r = await GtlsClientAsync(port, ["--exit-on-all-streams-close", $"--download={dir}"], $"https://localhost:{port}/");
            Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);
            Assert.Contains("<span id=\"protocol\">HTTP/3</span>", await File.ReadAllTextAsync(Path.Combine(dir, "index.html")), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Loads <paramref name="url"/> in headless Chromium with QUIC forced for the origin; returns the DOM on stdout.</summary>
    public static async Task<PeerResult> ChromiumDumpDomAsync(int port, string spki, string url, string host = "localhost")
    {
        string profile = Directory.CreateTempSubdirectory("kq-chromium-").FullName;
        try
        {
            return await RunAsync("chromium",
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--enable-quic",
                $"--origin-to-force-quic-on={host}:{port}", $"--ignore-certificate-errors-spki-list={spki}",
                $"--host-resolver-rules=MAP {host} 127.0.0.1", $"--user-data-dir={profile}", "--dump-dom", url,
            ]);
        }
        finally
        {
            try
            {
                Directory.Delete(profile, recursive: true);
            }
            catch (IOException)
            {
                // Chromium helpers may still hold files for a moment.
            }
        }
    }

    public static async Task<PeerResult> RunAsync(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using Process process = Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {file}.");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        bool timedOut = false;
        using (var cts = new CancellationTokenSource(Timeout))
        {
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
        }

        return new PeerResult(process.ExitCode, await stdout, await stderr, timedOut);
    }
}
