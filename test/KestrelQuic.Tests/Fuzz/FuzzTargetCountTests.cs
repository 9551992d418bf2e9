using System.Text.RegularExpressions;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>
/// KESTRELQUIC_FUZZ_SECONDS is split evenly over <see cref="FuzzTarget.TargetCount"/> targets in two test assemblies,
/// which cannot see each other's tests: the count is checked against the call sites in the sources of both.
/// </summary>
public sealed partial class FuzzTargetCountTests
{
    [Fact]
    public void TargetCount_MatchesFuzzRunnerCallSitesInBothTestProjects()
    {
        string root = FindRepositoryRoot();
        string[] files =
        [
            .. Directory.GetFiles(Path.Combine(root, "test", "KestrelQuic.Tests", "Fuzz"), "*.cs"),
            .. Directory.GetFiles(Path.Combine(root, "test", "KestrelQuic.Http3.Tests", "Fuzz"), "*.cs"),
        ];
        int calls = files.Where(f => Path.GetFileName(f) != "FuzzRunner.cs").Sum(f => RunCall().Count(File.ReadAllText(f)));
        Assert.True(calls > 0);
        Assert.Equal(FuzzTarget.TargetCount, calls);
    }

    [GeneratedRegex(@"\bFuzzRunner\.Run\(")]
    private static partial Regex RunCall();

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "KestrelQuic.sln"))) return d.FullName;
        }

        throw new InvalidOperationException("KestrelQuic.sln not found above " + AppContext.BaseDirectory);
    }
}
