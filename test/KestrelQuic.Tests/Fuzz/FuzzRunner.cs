using System.Diagnostics;
using System.Security.Cryptography;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>One fuzz target: a corpus of valid inputs and a function that runs one input and checks the invariants.</summary>
internal sealed class FuzzTarget
{
    /// <summary>Names the corpus folder (Fuzz/Corpus/NAME) and crash files.</summary>
    public required string Name { get; init; }

    /// <summary>Valid inputs to mutate, in addition to the files of the corpus folder (which also hold regression cases).</summary>
    public IReadOnlyList<byte[]> Seeds { get; init; } = [];

    /// <summary>
    /// Runs one input and returns an outcome label for the statistics (e.g. "ok", "error:FRAME_ENCODING_ERROR").
    /// Throws when an invariant is violated; any exception counts as a crash.
    /// </summary>
    public required Func<byte[], string> Execute { get; init; }

    public int MaxLength { get; init; } = 4096;

    /// <summary>Bound on the bytes one input may allocate (catches allocations sized by a peer's length field).</summary>
    public long MaxAllocatedBytesPerInput { get; init; } = 64L << 20;

    /// <summary>
    /// Number of targets sharing <see cref="FuzzRunner.TotalBudget"/>: six in KestrelQuic.Tests, two in
    /// KestrelQuic.Http3.Tests (FuzzTargetCountTests counts the FuzzRunner.Run call sites in both).
    /// </summary>
    public const int TargetCount = 8;
}

/// <summary>
/// Runs a <see cref="FuzzTarget"/>: first every corpus file unchanged (regression cases), then seeded mutations for a
/// time budget. KESTRELQUIC_FUZZ_SECONDS is the total budget across all targets (default 40; set it to hours for a
/// long run), KESTRELQUIC_FUZZ_SEED changes the seed, KESTRELQUIC_FUZZ_CRASH_DIR where failing inputs are written.
/// Each input runs on a worker thread under a watchdog: an input that takes longer than the hang timeout fails the
/// test. A failing input is written to a file and printed in hex so it can be added to the corpus.
/// </summary>
internal static class FuzzRunner
{
    private static readonly TimeSpan s_hangTimeout = TimeSpan.FromSeconds(20);

    public static TimeSpan TotalBudget =>
        TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_SECONDS"), out double s) && s > 0 ? s : 40);

    public static string CorpusDirectory(string name) => Path.Combine(AppContext.BaseDirectory, "Fuzz", "Corpus", name);

    public static List<byte[]> LoadCorpus(string name)
    {
        string dir = CorpusDirectory(name);
        return Directory.Exists(dir)
            ? Directory.GetFiles(dir).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList()
            : [];
    }

    public static void Run(FuzzTarget target, ITestOutputHelper output, int minimumMutations = 300)
    {
        if (Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_EXPORT_CORPUS") is { Length: > 0 } exportDir)
        {
            Export(Path.Combine(exportDir, target.Name), target.Seeds, "sim");
        }

        // Committed files first (regression cases, foreign captures), then live seeds not already among them.
        List<byte[]> corpus = LoadCorpus(target.Name);
        var known = new HashSet<string>(corpus.Select(Convert.ToBase64String));
        corpus.AddRange(target.Seeds.Where(seed => known.Add(Convert.ToBase64String(seed))));
        Assert.True(corpus.Count > 0, $"{target.Name}: empty corpus");

        int seed = int.TryParse(Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_SEED"), out int s) ? s : StableHash(target.Name);
        TimeSpan budget = TotalBudget / FuzzTarget.TargetCount;
        var mutator = new Mutator(target.MaxLength);
        var outcomes = new Dictionary<string, int>();
        byte[]? current = null;
        long progress = 0;
        Exception? failure = null;
        long corpusRuns = 0, mutations = 0;
        long startHeap = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();

        var worker = new Thread(() =>
        {
            var random = new Random(seed);
            try
            {
                foreach (byte[] input in corpus)
                {
                    RunOne(input);
                    corpusRuns++;
                }

                while (clock.Elapsed < budget || mutations < minimumMutations)
                {
                    RunOne(mutator.Mutate(corpus[random.Next(corpus.Count)], random, corpus));
                    mutations++;
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        {
            IsBackground = true,
            Name = "fuzz " + target.Name,
        };

        void RunOne(byte[] input)
        {
            Volatile.Write(ref current, input);
            long before = GC.GetAllocatedBytesForCurrentThread();
            string outcome = target.Execute(input);
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            if (allocated > target.MaxAllocatedBytesPerInput)
            {
                throw new InvalidOperationException($"one input allocated {allocated:N0} bytes (bound {target.MaxAllocatedBytesPerInput:N0})");
            }

            CollectionsMarshalIncrement(outcomes, outcome);
            Interlocked.Increment(ref progress);
        }

        worker.Start();
        long lastProgress = 0;
        var sinceProgress = Stopwatch.StartNew();
        while (!worker.Join(100))
        {
            long p = Interlocked.Read(ref progress);
            if (p != lastProgress)
            {
                lastProgress = p;
                sinceProgress.Restart();
            }
            else if (sinceProgress.Elapsed > s_hangTimeout)
            {
                // The worker cannot be aborted; it is a background thread and the test fails now.
                Fail(target, output, Volatile.Read(ref current)!, $"hang: one input ran longer than {s_hangTimeout.TotalSeconds} s");
            }
        }

        if (failure is not null)
        {
            Fail(target, output, current!, failure.ToString());
        }

        long heapGrowth = GC.GetTotalMemory(forceFullCollection: true) - startHeap;
        output.WriteLine(
            $"{target.Name}: seed {seed}, {corpusRuns} corpus inputs, {mutations} mutations in {clock.Elapsed.TotalSeconds:F1} s, " +
            $"heap growth {heapGrowth / 1024:N0} KiB");
        foreach ((string outcome, int count) in outcomes.OrderByDescending(o => o.Value))
        {
            output.WriteLine($"  {count,8} {outcome}");
        }

        Assert.True(heapGrowth < 256L << 20, $"{target.Name}: live heap grew by {heapGrowth:N0} bytes");

        // A target whose mutations all end the same way does not reach past its first check.
        Assert.True(outcomes.Count >= 2, $"{target.Name}: every input had the same outcome");
    }

    /// <summary>Writes inputs as corpus files named by their hash (KESTRELQUIC_FUZZ_EXPORT_CORPUS refreshes the committed corpus).</summary>
    public static void Export(string dir, IEnumerable<byte[]> inputs, string prefix)
    {
        Directory.CreateDirectory(dir);
        foreach (byte[] input in inputs)
        {
            File.WriteAllBytes(Path.Combine(dir, $"{prefix}-{Convert.ToHexStringLower(SHA256.HashData(input))[..16]}.bin"), input);
        }
    }

    private static void CollectionsMarshalIncrement(Dictionary<string, int> counts, string key) =>
        counts[key] = counts.GetValueOrDefault(key) + 1;

    private static void Fail(FuzzTarget target, ITestOutputHelper output, byte[] input, string message)
    {
        string dir = Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_CRASH_DIR") is { Length: > 0 } d
            ? d
            : Path.Combine(AppContext.BaseDirectory, "fuzz-crashes");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, $"{target.Name}-{Convert.ToHexStringLower(SHA256.HashData(input))[..16]}.bin");
        File.WriteAllBytes(file, input);
        string hex = Convert.ToHexStringLower(input);
        output.WriteLine($"{target.Name}: failing input written to {file}\n{hex}");
        Assert.Fail(
            $"{target.Name}: {message}\ninput ({input.Length} bytes, saved to {file}; copy it to " +
            $"test/…/Fuzz/Corpus/{target.Name}/ as a regression case):\n{hex}");
    }

    private static int StableHash(string text)
    {
        uint hash = 2166136261;
        foreach (char c in text)
        {
            hash = (hash ^ c) * 16777619;
        }

        return (int)(hash & 0x7fffffff);
    }
}
