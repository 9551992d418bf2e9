using BenchmarkDotNet.Running;

namespace KestrelQuic.Benchmarks;

/// <summary>
/// Micro-benchmarks of the packet path (issue 6, P5). Run through build/bench-micro.sh, or directly:
/// <c>dotnet run -c Release --project build/bench/KestrelQuic.Benchmarks -- --filter '*'</c>.
/// </summary>
internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
