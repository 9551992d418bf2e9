using System.Diagnostics;
using System.Globalization;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Udp;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>
/// P6: memory per idle connection: 10,000 connections held open to one server process, RSS delta / connections
/// (target ≤ 16 KiB). The server is a fresh child process per run (this program's <c>idle-server</c> mode); the
/// clients share a few endpoints of this process so the figure is about connections, not client sockets.
/// </summary>
internal sealed class IdleConnectionsCase : IBenchCase
{
    private const int Connections = 10_000;
    private const int ClientEndpoints = 8;
    private const int ConcurrentHandshakes = 64;
    private static readonly TimeSpan s_idleTimeout = TimeSpan.FromMinutes(10);

    // Idle means quiet: the post-handshake exchange (HANDSHAKE_DONE, tickets, NEW_TOKEN and their ACKs) is over and
    // a connection quiet for a second has given back its AEAD contexts and packet records, as every idle one has.
    private static readonly TimeSpan s_settle = TimeSpan.FromSeconds(2);

    public string Id => "P6";

    public string Title => $"server memory per idle connection, {Connections:N0} connections (RSS delta / connections)";

    public string Unit => "KiB";

    public bool LowerIsBetter => true;

    public bool HasReference => false;

    public string? ReferenceName => null;

    public Task PrepareAsync(Workspace workspace) => Task.CompletedTask;

    public Task<double> RunReferenceAsync(Workspace workspace) => throw new NotSupportedException("P6 has no reference side");

    public async Task<double> RunOursAsync(Workspace workspace)
    {
        string? self = Environment.ProcessPath ?? throw new InvalidOperationException("no process path");
        List<string> args = Path.GetFileNameWithoutExtension(self) == "dotnet" ? [typeof(IdleConnectionsCase).Assembly.Location] : [];
        args.AddRange(["idle-server", workspace.CertificatePath, workspace.KeyPath]);
        using Process server = Workspace.Start(self, args, redirectInput: true);
        try
        {
            int port = int.Parse(await ReadAnswerAsync(server, "port").ConfigureAwait(false), CultureInfo.InvariantCulture);
            var remote = new IPEndPoint(IPAddress.Loopback, port);
            var clientConfig = new QuicConfiguration { ApplicationProtocols = { "idle" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true, IdleTimeout = s_idleTimeout };
            QuicSocketEndpoint[] endpoints = Enumerable.Range(0, ClientEndpoints)
                .Select(_ => QuicSocketEndpoint.Start(new IPEndPoint(IPAddress.Loopback, 0), new EndpointSettings(), 4 << 20, 4 << 20, disposeWhenEmpty: false))
                .ToArray();
            try
            {
                // Baseline: the server with one connection (JIT, pools and static caches warm).
                await ConnectAsync(endpoints, clientConfig, remote, 1).ConfigureAwait(false);
                await Task.Delay(s_settle).ConfigureAwait(false);
                long before = long.Parse(await AskAsync(server, "rss").ConfigureAwait(false), CultureInfo.InvariantCulture);
                long managedBefore = long.Parse(await ReadAnswerAsync(server, "managed").ConfigureAwait(false), CultureInfo.InvariantCulture);
                long committedBefore = long.Parse(await ReadAnswerAsync(server, "committed").ConfigureAwait(false), CultureInfo.InvariantCulture);
                await ConnectAsync(endpoints, clientConfig, remote, Connections).ConfigureAwait(false);
                // The accept loop may still be taking the last connections from the listener's queue.
                int held = 0;
                for (int attempt = 0; attempt < 100 && held != Connections + 1; attempt++)
                {
                    if (attempt > 0) await Task.Delay(100).ConfigureAwait(false);
                    held = int.Parse(await AskAsync(server, "count").ConfigureAwait(false), CultureInfo.InvariantCulture);
                }

                if (held != Connections + 1) throw new InvalidOperationException($"server holds {held} connections, expected {Connections + 1}");
                await Task.Delay(s_settle).ConfigureAwait(false);
                long after = long.Parse(await AskAsync(server, "rss").ConfigureAwait(false), CultureInfo.InvariantCulture);
                long managedAfter = long.Parse(await ReadAnswerAsync(server, "managed").ConfigureAwait(false), CultureInfo.InvariantCulture);
                long committedAfter = long.Parse(await ReadAnswerAsync(server, "committed").ConfigureAwait(false), CultureInfo.InvariantCulture);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  run: RSS {(after - before) / 1024.0 / Connections:F1} KiB, managed heap {(managedAfter - managedBefore) / 1024.0 / Connections:F1} KiB, GC committed {(committedAfter - committedBefore) / 1024.0 / Connections:F1} KiB per connection"));
                return (after - before) / 1024.0 / Connections;
            }
            finally
            {
                foreach (QuicSocketEndpoint e in endpoints) await e.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            if (!server.HasExited) server.Kill(entireProcessTree: true);
        }
    }

    private static async Task ConnectAsync(QuicSocketEndpoint[] endpoints, QuicConfiguration config, IPEndPoint remote, int count)
    {
        using var gate = new SemaphoreSlim(ConcurrentHandshakes);
        Task[] handshakes = new Task[count];
        for (int i = 0; i < count; i++)
        {
            QuicSocketEndpoint endpoint = endpoints[i % endpoints.Length];
            handshakes[i] = Task.Run(async () =>
            {
                await gate.WaitAsync().ConfigureAwait(false);
                try
                {
                    var watcher = new HandshakeWatcher();
                    lock (endpoint.Lock) endpoint.ConnectLocked(config, remote, null, _ => watcher);
                    await watcher.Completed.Task.WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
                }
                finally
                {
                    gate.Release();
                }
            });
        }

        await Task.WhenAll(handshakes).ConfigureAwait(false);
    }

    private static async Task<string> AskAsync(Process server, string question)
    {
        await server.StandardInput.WriteLineAsync(question).ConfigureAwait(false);
        await server.StandardInput.FlushAsync().ConfigureAwait(false);
        return await ReadAnswerAsync(server, question).ConfigureAwait(false);
    }

    private static async Task<string> ReadAnswerAsync(Process server, string key)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (await server.StandardOutput.ReadLineAsync(cts.Token).ConfigureAwait(false) is string line)
        {
            if (line.StartsWith(key + " ", StringComparison.Ordinal)) return line[(key.Length + 1)..];
        }

        throw new InvalidOperationException($"the idle server exited before answering '{key}': {await server.StandardError.ReadToEndAsync().ConfigureAwait(false)}");
    }

    /// <summary>
    /// The server side (a child process): listens, accepts and holds every connection, and answers "rss" (after a
    /// full compacting collection, so handshake garbage does not count) and "count" on standard input.
    /// </summary>
    public static async Task<int> ServeAsync(string[] args)
    {
        using var certificate = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(args[0], args[1]);
        var config = new QuicConfiguration { ApplicationProtocols = { "idle" }, Certificate = certificate, IdleTimeout = s_idleTimeout };
        await using QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions
        {
            ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            Configuration = config,
            MaxConnections = 2 * Connections,
            MaxHandshakes = 4 * ConcurrentHandshakes,
        }).ConfigureAwait(false);
        var held = new List<QuicConnection>();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                QuicConnection c = await listener.AcceptConnectionAsync().ConfigureAwait(false);
                lock (held) held.Add(c);
            }
        });

        Console.WriteLine($"port {listener.LocalEndPoint.Port}");
        while (await Console.In.ReadLineAsync().ConfigureAwait(false) is string command)
        {
            switch (command)
            {
                case "rss":
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                    GC.WaitForPendingFinalizers();
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                    // Handshake garbage freed by native code (OpenSSL) stays in malloc's arenas until trimmed; like the
                    // compacting collection above, this keeps it out of the per-connection figure.
                    if (OperatingSystem.IsLinux()) _ = MallocTrim(0);
                    Console.WriteLine($"rss {Workspace.ResidentSetSize(Environment.ProcessId)}");
                    Console.WriteLine($"managed {GC.GetTotalMemory(forceFullCollection: false)}");
                    Console.WriteLine($"committed {GC.GetGCMemoryInfo().TotalCommittedBytes}");
                    break;
                case "count":
                    lock (held) Console.WriteLine($"count {held.Count}");
                    break;
            }
        }

        return 0;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private sealed class HandshakeWatcher : IEndpointConnectionOwner
    {
        public TaskCompletionSource Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void OnConnectionEvent(in ConnectionEvent connectionEvent)
        {
            if (connectionEvent.Kind == ConnectionEventKind.HandshakeCompleted) Completed.TrySetResult();
            else if (connectionEvent.Kind == ConnectionEventKind.Terminated) Completed.TrySetException(new InvalidOperationException("connection terminated before its handshake completed"));
        }

        public void OnRemoved() => Completed.TrySetException(new InvalidOperationException("connection removed"));
    }
}
