using System.Diagnostics;
using System.Text.Json;
using KestrelQuic.Interop;

// build/interop.sh [--cases a,b] [--roles server,client,chromium] [--json FILE]
string[] cases = InteropCases.All;
string[] roles = ["server", "client", "chromium"];
string? json = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--cases" when i + 1 < args.Length:
            cases = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            break;
        case "--roles" when i + 1 < args.Length:
            roles = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            break;
        case "--json" when i + 1 < args.Length:
            json = args[++i];
            break;
        default:
            Console.Error.WriteLine("usage: build/interop.sh [--cases handshake,transfer,...] [--roles server,client,chromium] [--json FILE]");
            Console.Error.WriteLine("cases: " + string.Join(',', InteropCases.All));
            return 2;
    }
}

string? unknown = cases.FirstOrDefault(c => !InteropCases.All.Contains(c));
if (unknown is not null)
{
    Console.Error.WriteLine($"unknown case '{unknown}'; cases: {string.Join(',', InteropCases.All)}");
    return 2;
}

using var workspace = new InteropWorkspace();
var runners = new Dictionary<string, IRole>
{
    ["server"] = new ServerRole(workspace),
    ["client"] = new ClientRole(workspace),
    ["chromium"] = new ChromiumRole(workspace),
};
if (roles.FirstOrDefault(r => !runners.ContainsKey(r)) is string badRole)
{
    Console.Error.WriteLine($"unknown role '{badRole}'; roles: server, client, chromium");
    return 2;
}

var results = new List<InteropResult>();
foreach (string testCase in cases)
{
    foreach (string role in roles)
    {
        IRole runner = runners[role];
        var clock = Stopwatch.StartNew();
        CaseResult result;
        try
        {
            using var timeout = new CancellationTokenSource(InteropCases.Timeout(testCase));
            result = await runner.RunAsync(testCase, timeout.Token).WaitAsync(InteropCases.Timeout(testCase) + TimeSpan.FromSeconds(30));
        }
        catch (CaseFailedException e)
        {
            result = CaseResult.Fail(e.Message);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            result = CaseResult.Fail($"timed out after {InteropCases.Timeout(testCase).TotalSeconds:F0} s");
        }
        catch (Exception e)
        {
            result = CaseResult.Fail($"{e.GetType().Name}: {e.Message}");
        }

        var entry = new InteropResult(testCase, role, runner.Peer, result.Outcome.ToString().ToLowerInvariant(), result.Detail, Math.Round(clock.Elapsed.TotalSeconds, 1));
        results.Add(entry);
        Console.WriteLine($"{testCase,-20} {role,-9} {entry.Outcome,-12} {entry.Seconds,6:F1} s  {result.Detail}");
    }
}

Console.WriteLine();
Console.WriteLine(InteropTable.Format(cases, roles, runners, results));
int failed = results.Count(r => r.Outcome == "fail");
int passed = results.Count(r => r.Outcome == "pass");
int unsupported = results.Count(r => r.Outcome == "unsupported");
if (json is not null)
{
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(json))!);
    await File.WriteAllTextAsync(json, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
}

Console.WriteLine($"{unsupported} case(s) not supported by a peer (listed above with the reason)");
Console.WriteLine($"interop: {passed} passed, {failed} failed");
return failed == 0 ? 0 : 1;
