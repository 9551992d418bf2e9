using KestrelQuic.Tests.Shared;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>The engine's own log events (category "KestrelQuic") reach the host's logging through UseManagedQuic().</summary>
[Collection(ServerCollection.Name)]
public sealed class EngineLoggingTests
{
    [Fact]
    public async Task HostLogging_ReceivesEngineEvents_SecretsLogWarningAndConnectionLifecycle()
    {
        string dir = Directory.CreateTempSubdirectory("kq-enginelog-").FullName;
        string keys = Path.Combine(dir, "keys.log");
        try
        {
            using var logs = new ListLoggerProvider();
            PeerResult r;
            await using (TestServer server = await TestServer.StartAsync(
                [$"--ManagedQuic:SecretsLogFile={keys}"],
                configure: builder => builder.Logging.AddProvider(logs).AddFilter("KestrelQuic", LogLevel.Debug)))
            {
                r = await Peers.GtlsClientAsync(server.Port, ["--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump"], $"{server.Origin}/bytes/10");
                Assert.True(r.ExitCode == 0 && !r.TimedOut, r.Tail);

                // The engine removes the connection after its draining period: wait for its ConnectionClosed event.
                static bool IsClosed(string e) => e.StartsWith("KestrelQuic|ConnectionClosed|", StringComparison.Ordinal);
                for (int i = 0; i < 200 && !logs.Entries.Any(IsClosed); i++) await Task.Delay(50);
            }

            IReadOnlyList<string> entries = logs.Entries;
            string all = string.Join('\n', entries);
            // Event 8, a warning naming the file: anyone with it can decrypt the traffic.
            Assert.Contains(entries, e => e.StartsWith("KestrelQuic|SecretsLogEnabled|", StringComparison.Ordinal) && e.Contains(keys, StringComparison.Ordinal));
            Assert.True(entries.Any(e => e.StartsWith("KestrelQuic|ConnectionAccepted|", StringComparison.Ordinal) && e.Contains("ALPN h3", StringComparison.Ordinal)), all);
            Assert.True(entries.Any(e => e.StartsWith("KestrelQuic|ConnectionClosed|", StringComparison.Ordinal)), all);
            // The transport's own events are still there, under their own category.
            Assert.Contains(entries, e => e.StartsWith("KestrelQuic.AspNetCore|Listening|", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
