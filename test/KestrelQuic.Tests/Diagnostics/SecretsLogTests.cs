using KestrelQuic.Diagnostics;
using KestrelQuic.Tests.Api;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>SSLKEYLOGFILE output (NSS key log format) written off the core by the background writer.</summary>
public sealed class SecretsLogTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-keylog-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task BothSides_WriteAllFiveSecretKinds_WithMatchingClientRandomAndSecrets()
    {
        string serverFile = Path.Combine(_directory, "server.keys");
        string clientFile = Path.Combine(_directory, "client.keys");
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c =>
        {
            c.SecretsLogFile = serverFile;
            c.EnableEarlyData = true;
        }));
        var store = new SignallingStore();
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c =>
        {
            c.SecretsLogFile = clientFile;
            c.EnableEarlyData = true;
        });
        clientOptions.SessionStore = store;

        // First connection: full handshake, delivers a session ticket.
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection first = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout))
        {
            await using QuicConnection firstServer = await acceptTask.WaitAsync(Timeout);
            await first.PingAsync().AsTask().WaitAsync(Timeout);
            await store.TicketStored.Task.WaitAsync(Timeout);
        }

        // Second connection: resumption with 0-RTT adds CLIENT_EARLY_TRAFFIC_SECRET.
        acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection second = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout))
        {
            await using QuicConnection secondServer = await acceptTask.WaitAsync(Timeout);
            Assert.True(second.IsResumed);
        }

        await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
        Dictionary<(string Label, string Random), string> client = Parse(clientFile);
        Dictionary<(string Label, string Random), string> server = Parse(serverFile);
        output.WriteLine(File.ReadAllText(clientFile));

        string[] randoms = client.Keys.Select(k => k.Random).Distinct().ToArray();
        Assert.Equal(2, randoms.Length); // two connections
        foreach (string random in randoms)
        {
            Assert.Matches("^[0-9a-f]{64}$", random);
            foreach (string label in new[] { "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0" })
            {
                Assert.True(client.ContainsKey((label, random)), $"{label} {random}");
                // Both ends derive the same secret for the same handshake (same client random).
                Assert.Equal(client[(label, random)], server[(label, random)]);
                Assert.Matches("^[0-9a-f]{64}$", client[(label, random)]); // SHA-256 suites: 32-byte secrets
            }
        }

        (string Label, string Random) early = Assert.Single(client.Keys, k => k.Label == "CLIENT_EARLY_TRAFFIC_SECRET");
        Assert.Equal(client[early], server[early]);
    }

    [Fact]
    public async Task EnvironmentVariable_OnlyWhenOptedIn_AndWarns()
    {
        string file = Path.Combine(_directory, "env.keys");
        Environment.SetEnvironmentVariable(ConnectionTracerFactory.SslKeyLogFileVariable, file);
        try
        {
            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());

            // Not opted in: the variable is ignored.
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using (QuicConnection ignored = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout))
            {
                await (await acceptTask.WaitAsync(Timeout)).DisposeAsync();
            }

            await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
            Assert.False(File.Exists(file));

            var log = new CapturingLoggerProvider();
            QuicClientConnectionOptions options = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.UseSslKeyLogFileEnvironmentVariable = true);
            options.LoggerFactory = log;
            acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using (QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout))
            {
                await (await acceptTask.WaitAsync(Timeout)).DisposeAsync();
            }

            await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
            Assert.Equal(4, Parse(file).Count);
            CapturingLoggerProvider.Entry warning = Assert.Single(log.Entries, e => e.EventId.Id == 8);
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Equal(file, warning["Path"]);
            Assert.Equal("SSLKEYLOGFILE", warning["Source"]);
        }
        finally
        {
            Environment.SetEnvironmentVariable(ConnectionTracerFactory.SslKeyLogFileVariable, null);
        }
    }

    /// <summary>Signals when the first session ticket was stored (the event may fire before a handler could be attached).</summary>
    private sealed class SignallingStore : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _inner = new();

        public TaskCompletionSource TicketStored { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            _inner.StoreSessionTicket(serverName, ticket);
            TicketStored.TrySetResult();
        }

        public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token) => _inner.StoreToken(serverName, token);
    }

    private static Dictionary<(string Label, string Random), string> Parse(string path)
    {
        var result = new Dictionary<(string, string), string>();
        foreach (string line in File.ReadAllLines(path))
        {
            string[] parts = line.Split(' ');
            Assert.Equal(3, parts.Length);
            Assert.True(result.TryAdd((parts[0], parts[1]), parts[2]), "duplicate line " + line);
        }

        return result;
    }
}
