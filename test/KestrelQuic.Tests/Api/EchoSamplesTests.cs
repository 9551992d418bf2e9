using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// samples/EchoServer and samples/EchoClient as real processes (the built .dll files, run with <c>dotnet</c>): the
/// echo comes back intact with --insecure and with --pin (the fingerprint the server printed), a wrong pin or no
/// trust option fails to connect, and Ctrl+C stops the server cleanly.
/// </summary>
public sealed class EchoSamplesTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task EchoClient_InsecureAndPinned_EchoVerified_WrongPinAndUntrustedRefused_ServerStopsOnInterrupt()
    {
        int port = FreeDualStackUdpPort();
        await using var server = SampleProcess.Start("EchoServer", ["--port", port.ToString(CultureInfo.InvariantCulture)], interruptible: true);
        string banner = await server.WaitForOutputAsync(o => o.Contains("press Ctrl+C", StringComparison.Ordinal), Timeout);
        Assert.Contains($"echo server listening on [::]:{port}", banner);
        string fingerprint = Regex.Match(banner, "certificate SHA-256 fingerprint: ([0-9A-F]{64})").Groups[1].Value;
        Assert.Equal(64, fingerprint.Length);

        // --insecure, generated payload over IPv4: the client verifies the SHA-256 of the echo and exits 0.
        SampleResult insecure = await SampleProcess.RunAsync("EchoClient", [$"127.0.0.1:{port}", "--insecure", "--bytes", "3000000"], Timeout);
        output.WriteLine(insecure.ToString());
        Assert.Equal(0, insecure.ExitCode);
        Assert.Matches(@"sent 3[,.\u00a0 ]?000[,.\u00a0 ]?000 bytes, echoed 3[,.\u00a0 ]?000[,.\u00a0 ]?000 bytes", insecure.StandardOutput);
        Assert.Contains("echo verified (SHA-256 matches)", insecure.StandardOutput);

        // --pin with the printed fingerprint (colon-separated, as openssl prints it), --stdin over IPv6: the echo is
        // written to stdout byte for byte, the report goes to stderr.
        byte[] input = RandomNumberGenerator.GetBytes(200_000);
        string pin = string.Join(':', fingerprint.Chunk(2).Select(c => new string(c)));
        SampleResult pinned = await SampleProcess.RunAsync("EchoClient", [$"[::1]:{port}", "--pin", pin, "--stdin"], Timeout, input);
        output.WriteLine(pinned.ToString());
        Assert.Equal(0, pinned.ExitCode);
        Assert.Equal(input, pinned.StandardOutputBytes);
        Assert.Contains("echo verified (SHA-256 matches)", pinned.StandardError);

        // A pin for another certificate: the validation callback refuses, the client reports it and exits 1.
        SampleResult wrongPin = await SampleProcess.RunAsync("EchoClient", [$"localhost:{port}", "--pin", new string('A', 64), "--bytes", "10"], Timeout);
        output.WriteLine(wrongPin.ToString());
        Assert.Equal(1, wrongPin.ExitCode);
        Assert.Contains($"could not connect to localhost:{port}", wrongPin.StandardError);
        Assert.Contains("CertificateValidationCallback", wrongPin.StandardError);

        // Neither --insecure nor --pin: the self-signed certificate is not trusted (unknown_ca).
        SampleResult untrusted = await SampleProcess.RunAsync("EchoClient", [$"127.0.0.1:{port}", "--bytes", "10"], Timeout);
        output.WriteLine(untrusted.ToString());
        Assert.Equal(1, untrusted.ExitCode);
        Assert.Contains("unknown_ca", untrusted.StandardError);

        // Bad arguments: usage and exit code 2.
        SampleResult usage = await SampleProcess.RunAsync("EchoClient", ["--frobnicate"], Timeout);
        Assert.Equal(2, usage.ExitCode);
        Assert.Contains("usage: EchoClient", usage.StandardError);

        // The server logged both echoes, then stops on Ctrl+C (SIGINT) with exit code 0.
        string log = await server.WaitForOutputAsync(o => Regex.Matches(o, "echoed").Count >= 2, Timeout);
        Assert.Matches(@"stream 0: echoed 3[,.\u00a0 ]?000[,.\u00a0 ]?000 bytes", log);
        Assert.Matches(@"stream 0: echoed 200[,.\u00a0 ]?000 bytes", log);
        int exit = await server.InterruptAsync(Timeout);
        output.WriteLine(server.Output);
        Assert.Equal(0, exit);
        Assert.DoesNotContain("Unhandled exception", server.Output);
    }

    private static int FreeDualStackUdpPort()
    {
        using var probe = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp) { DualMode = true };
        probe.Bind(new IPEndPoint(IPAddress.IPv6Any, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private sealed record SampleResult(int ExitCode, byte[] StandardOutputBytes, string StandardError)
    {
        public string StandardOutput => Encoding.UTF8.GetString(StandardOutputBytes);

        public override string ToString() => $"exit {ExitCode}\nstdout: {(StandardOutputBytes.Length > 2000 ? $"{StandardOutputBytes.Length} bytes" : StandardOutput)}\nstderr: {StandardError}";
    }

    /// <summary>A sample run as <c>dotnet &lt;Sample&gt;.dll</c> from the test output directory.</summary>
    private sealed class SampleProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();

        private SampleProcess(Process process) => _process = process;

        public string Output
        {
            get
            {
                lock (_output) return _output.ToString();
            }
        }

        public static SampleProcess Start(string sample, string[] args, bool interruptible)
        {
            ProcessStartInfo psi = CreateStartInfo(sample, args, interruptible);
            var process = Process.Start(psi)!;
            var sp = new SampleProcess(process);
            process.OutputDataReceived += (_, e) => sp.Append(e.Data);
            process.ErrorDataReceived += (_, e) => sp.Append(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return sp;
        }

        public static async Task<SampleResult> RunAsync(string sample, string[] args, TimeSpan timeout, byte[]? stdin = null)
        {
            ProcessStartInfo psi = CreateStartInfo(sample, args, interruptible: false);
            psi.RedirectStandardInput = true;
            using var process = Process.Start(psi)!;
            var stdout = new MemoryStream();
            Task copyOut = process.StandardOutput.BaseStream.CopyToAsync(stdout);
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            Task feed = Task.Run(async () =>
            {
                try
                {
                    if (stdin is not null) await process.StandardInput.BaseStream.WriteAsync(stdin);
                }
                catch (IOException)
                {
                    // The client exited without reading everything (a failed connection): its exit code tells.
                }
                finally
                {
                    process.StandardInput.Close();
                }
            });
            try
            {
                await process.WaitForExitAsync().WaitAsync(timeout);
                await Task.WhenAll(copyOut, stderr, feed).WaitAsync(timeout);
            }
            finally
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }

            return new SampleResult(process.ExitCode, stdout.ToArray(), await stderr);
        }

        public async Task<string> WaitForOutputAsync(Func<string, bool> condition, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            while (true)
            {
                string text = Output;
                if (condition(text)) return text;
                Assert.False(_process.HasExited, "the sample exited early:\n" + text);
                Assert.True(clock.Elapsed < timeout, "expected output did not appear:\n" + text);
                await Task.Delay(50);
            }
        }

        /// <summary>Sends SIGINT (Ctrl+C) and returns the exit code.</summary>
        public async Task<int> InterruptAsync(TimeSpan timeout)
        {
            using var kill = Process.Start(new ProcessStartInfo("kill", ["-INT", _process.Id.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
            await kill.WaitForExitAsync().WaitAsync(timeout);
            Assert.Equal(0, kill.ExitCode);
            await _process.WaitForExitAsync().WaitAsync(timeout);
            return _process.ExitCode;
        }

        public ValueTask DisposeAsync()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
            return ValueTask.CompletedTask;
        }

        private static ProcessStartInfo CreateStartInfo(string sample, string[] args, bool interruptible)
        {
            string dll = Path.Combine(AppContext.BaseDirectory, sample + ".dll");
            Assert.True(File.Exists(dll), $"{dll} was not built next to the tests");

            // env --default-signal: a runner started in the background may have SIGINT ignored, which children
            // inherit; env then exec()s dotnet, so the process id is the sample's.
            var psi = new ProcessStartInfo(interruptible ? "env" : "dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (interruptible)
            {
                psi.ArgumentList.Add("--default-signal=INT");
                psi.ArgumentList.Add("dotnet");
            }

            psi.ArgumentList.Add(dll);
            foreach (string a in args) psi.ArgumentList.Add(a);
            return psi;
        }

        private void Append(string? line)
        {
            if (line is null) return;
            lock (_output) _output.AppendLine(line);
        }
    }
}
