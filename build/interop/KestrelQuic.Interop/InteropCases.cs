using System.Text;

namespace KestrelQuic.Interop;

/// <summary>The cases of the QUIC interop runner, in its order and with its names.</summary>
internal static class InteropCases
{
    public static readonly string[] All =
    [
        "handshake", "transfer", "multiplexing", "retry", "resumption", "zerortt", "http3", "chacha20", "keyupdate", "v2",
        "handshakeloss", "transferloss", "handshakecorruption", "transfercorruption", "blackhole", "longrtt",
        "rebind-port", "rebind-addr", "amplificationlimit", "ipv6",
    ];

    /// <summary>Connections the handshakeloss/handshakecorruption cases make, as in the interop runner.</summary>
    public const int LossyHandshakes = 50;

    public static TimeSpan Timeout(string testCase) => testCase switch
    {
        "handshakeloss" or "handshakecorruption" => TimeSpan.FromMinutes(6),
        "longrtt" or "blackhole" or "multiplexing" => TimeSpan.FromMinutes(3),
        _ => TimeSpan.FromMinutes(2),
    };
}

/// <summary>One role of the matrix: which of our components faces which peer.</summary>
internal interface IRole
{
    /// <summary>The peer, for the table ("gtlsclient", "gtlsserver", "chromium").</summary>
    string Peer { get; }

    Task<CaseResult> RunAsync(string testCase, CancellationToken cancellationToken);
}

internal enum Outcome
{
    Pass,
    Fail,
    Unsupported,
}

internal sealed record CaseResult(Outcome Outcome, string Detail)
{
    public static CaseResult Pass(string detail) => new(Outcome.Pass, detail);

    public static CaseResult Fail(string detail) => new(Outcome.Fail, detail);

    public static CaseResult Unsupported(string reason) => new(Outcome.Unsupported, reason);
}

/// <summary>A check of a case did not hold; the message is the table's reason.</summary>
internal sealed class CaseFailedException(string message) : Exception(message)
{
    public static void Check(bool condition, string message)
    {
        if (!condition) throw new CaseFailedException(message);
    }
}

internal sealed record InteropResult(string Case, string Role, string Peer, string Outcome, string Detail, double Seconds);

internal static class InteropTable
{
    public static string Format(string[] cases, string[] roles, IReadOnlyDictionary<string, IRole> runners, List<InteropResult> results)
    {
        var header = new List<string> { "case" };
        header.AddRange(roles.Select(r => $"{Describe(r)} × {runners[r].Peer}"));
        var sb = new StringBuilder();
        sb.Append("| ").AppendJoin(" | ", header).AppendLine(" |");
        sb.Append('|').AppendJoin("|", header.Select(_ => "---")).AppendLine("|");
        foreach (string c in cases)
        {
            sb.Append("| ").Append(c);
            foreach (string r in roles)
            {
                InteropResult? result = results.Find(x => x.Case == c && x.Role == r);
                string cell = result?.Outcome switch
                {
                    "pass" => "pass",
                    "fail" => "FAIL: " + result.Detail,
                    "unsupported" => "n/a: " + result.Detail,
                    _ => "",
                };
                sb.Append(" | ").Append(cell.Replace('|', '/'));
            }

            sb.AppendLine(" |");
        }

        return sb.ToString();
    }

    private static string Describe(string role) => role switch
    {
        "server" => "our server",
        "client" => "our client",
        _ => "our server",
    };
}
