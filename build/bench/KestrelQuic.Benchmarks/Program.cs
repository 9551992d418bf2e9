using BenchmarkDotNet.Running;
using KestrelQuic.Benchmarks.Harness;

namespace KestrelQuic.Benchmarks;

/// <summary>
/// Two tools in one program. <c>harness …</c> runs the end-to-end comparisons of issue 6 (build/bench.sh);
/// anything else goes to BenchmarkDotNet's micro-benchmarks of the packet path (build/bench-micro.sh).
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "harness") return await HarnessProgram.RunAsync(args[1..]).ConfigureAwait(false);
        if (args.Length > 0 && args[0] == "idle-server") return await IdleConnectionsCase.ServeAsync(args[1..]).ConfigureAwait(false);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
