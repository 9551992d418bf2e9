using System.Text.Json;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>
/// Runs the selected cases: warm-up runs of each side, then at least five counted runs alternating our side and
/// the reference side, and prints min / median / max and the ratio of medians; writes everything as JSON.
/// </summary>
internal static class HarnessProgram
{
    private static readonly TimeSpan WarmUpTime = TimeSpan.FromSeconds(10);

    public static async Task<int> RunAsync(string[] args)
    {
        int runs = 5;
        string json = Path.Combine("build", "bench", "results", "bench.json");
        var selected = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--runs": runs = Math.Max(5, int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture)); break;
                case "--json": json = args[++i]; break;
                default: selected.AddRange(args[i].Split(',', StringSplitOptions.RemoveEmptyEntries)); break;
            }
        }

        IBenchCase[] all = [new ServerDownloadCase(), new ClientDownloadCase(), new LoopbackThroughputCase(), new ManyRequestsCase(), new IdleConnectionsCase(), new NewConnectionsCase()];
        IBenchCase[] cases = selected.Count == 0 ? all : all.Where(c => selected.Contains(c.Id, StringComparer.OrdinalIgnoreCase)).ToArray();
        if (cases.Length == 0)
        {
            Console.Error.WriteLine($"unknown case; available: {string.Join(", ", all.Select(c => c.Id))}");
            return 2;
        }

        var results = new List<CaseResult>();
        using var workspace = new Workspace();
        foreach (IBenchCase benchCase in cases)
        {
            Console.WriteLine($"== {benchCase.Id}: {benchCase.Title}");
            CaseResult result = await RunCaseAsync(benchCase, runs, workspace).ConfigureAwait(false);
            results.Add(result);
            Console.WriteLine(result.Describe());
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(json))!);
        await File.WriteAllTextAsync(json, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true })).ConfigureAwait(false);
        Console.WriteLine($"results: {json}");
        return results.All(r => r.Failure is null) ? 0 : 1;
    }

    private static async Task<CaseResult> RunCaseAsync(IBenchCase benchCase, int runs, Workspace workspace)
    {
        var ours = new List<double>();
        var reference = new List<double>();
        try
        {
            await benchCase.PrepareAsync(workspace).ConfigureAwait(false);
            // Warm-up (not counted): the reference three times, ours for at least ten seconds, so that a long-running
            // server's tiered JIT has settled as it has in production (measured here: about 50,000 requests before
            // the small-request path reaches its steady state). Then alternate the sides run by run so drifting
            // machine load hits both alike.
            var warmUp = System.Diagnostics.Stopwatch.StartNew();
            int warmUpRuns = benchCase.HasReference ? 3 : 1; // P6 starts a fresh server process for every run anyway
            for (int i = 0; i < warmUpRuns || (benchCase.HasReference && warmUp.Elapsed < WarmUpTime && i < 200); i++)
            {
                await benchCase.RunOursAsync(workspace).ConfigureAwait(false);
                if (benchCase.HasReference && i < 3) await benchCase.RunReferenceAsync(workspace).ConfigureAwait(false);
            }

            for (int i = 0; i < runs; i++)
            {
                ours.Add(await benchCase.RunOursAsync(workspace).ConfigureAwait(false));
                if (benchCase.HasReference) reference.Add(await benchCase.RunReferenceAsync(workspace).ConfigureAwait(false));
            }

            return new CaseResult(benchCase.Id, benchCase.Title, benchCase.Unit, benchCase.LowerIsBetter, benchCase.ReferenceName, ours, reference, null);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException or System.ComponentModel.Win32Exception or QuicException or HttpRequestException)
        {
            return new CaseResult(benchCase.Id, benchCase.Title, benchCase.Unit, benchCase.LowerIsBetter, benchCase.ReferenceName, ours, reference, e.Message);
        }
    }
}

/// <summary>One comparison: our side and, when there is one, the reference measured in the same run.</summary>
internal interface IBenchCase
{
    string Id { get; }

    string Title { get; }

    string Unit { get; }

    bool LowerIsBetter { get; }

    bool HasReference { get; }

    string? ReferenceName { get; }

    Task PrepareAsync(Workspace workspace);

    Task<double> RunOursAsync(Workspace workspace);

    Task<double> RunReferenceAsync(Workspace workspace);
}

/// <summary>Measured values of one case, with the statistics the issue asks for.</summary>
internal sealed record CaseResult(string Id, string Title, string Unit, bool LowerIsBetter, string? ReferenceName, List<double> Ours, List<double> Reference, string? Failure)
{
    public Stats? OursStats => Stats.Of(Ours);

    public Stats? ReferenceStats => Stats.Of(Reference);

    /// <summary>Ours over the reference, medians: below 1 is better for times, above 1 for rates.</summary>
    public double? RatioOfMedians => OursStats is { } o && ReferenceStats is { } r && r.Median != 0 ? o.Median / r.Median : null;

    public string Describe()
    {
        var text = new System.Text.StringBuilder();
        if (OursStats is { } o) text.AppendLine(System.Globalization.CultureInfo.InvariantCulture, $"  ours      {o} {Unit}");
        if (ReferenceStats is { } r) text.AppendLine(System.Globalization.CultureInfo.InvariantCulture, $"  {ReferenceName,-9} {r} {Unit}");
        if (RatioOfMedians is double ratio) text.AppendLine(System.Globalization.CultureInfo.InvariantCulture, $"  ratio of medians (ours / {ReferenceName}): {ratio:F2} ({(LowerIsBetter ? "lower" : "higher")} is better)");
        if (Failure is not null) text.AppendLine("  FAILED: " + Failure);
        return text.ToString().TrimEnd();
    }
}

internal sealed record Stats(double Min, double Median, double Max)
{
    public static Stats? Of(List<double> values)
    {
        if (values.Count == 0) return null;
        double[] sorted = values.Order().ToArray();
        double median = sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        return new Stats(sorted[0], median, sorted[^1]);
    }

    public override string ToString() => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"min {Min,9:F2}  median {Median,9:F2}  max {Max,9:F2}");
}
