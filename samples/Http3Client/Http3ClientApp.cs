using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using KestrelQuic.Configuration;
using KestrelQuic.Http;

namespace KestrelQuic.Samples.Http3Client;

/// <summary>
/// An HTTP/3 command-line client modelled on aioquic's http3_client: fetches each URL over HTTP/3 and writes the body
/// to stdout (or into <c>--output-dir</c>), with timing and throughput on stderr.
/// </summary>
public static class Http3ClientApp
{
    private const string Usage = """
        Usage: Http3Client [options] URL...

          --ca-certs FILE         trust the CA certificates in FILE (PEM) in addition to the system store
          --insecure              do not validate the server certificate
          -d, --data TEXT         send TEXT as the body of a POST
          --data-file FILE        send the content of FILE (streamed) as the body of a POST
          -i, --include           print the response status and headers before the body
          -l, --secrets-log FILE  append TLS secrets to FILE (NSS key log format, for Wireshark)
          -q, --qlog-dir DIR      write a qlog trace (JSON-SEQ) per connection into DIR
          -s, --session-ticket FILE
                                  read a session ticket from FILE (resumption) and write the new one into it
          --zero-rtt              send idempotent requests in 0-RTT when the session ticket allows it
          --max-data N            connection flow-control window (bytes)
          --max-stream-data N     per-stream flow-control window (bytes)
          --parallel N            send each request N times concurrently on one connection
          --output-dir DIR        save each body into DIR instead of writing it to stdout
          --legacy-http           use HTTP/0.9 over QUIC (ALPN hq-interop) instead of HTTP/3
          -h, --help              show this help

        Exit code: 0 when every request got a 2xx/3xx response, 1 otherwise, 2 for bad arguments.
        """;

    /// <summary>Runs the client; returns the process exit code.</summary>
    /// <param name="args">Command-line arguments.</param>
    /// <param name="stdout">Where bodies (and headers with --include) go when no output directory is given.</param>
    /// <param name="stderr">Where timing, throughput and errors go.</param>
    /// <param name="cancellationToken">Stops the requests.</param>
    public static async Task<int> RunAsync(string[] args, Stream stdout, TextWriter stderr, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);

        // Parallel fetches report on stderr concurrently; a caller's writer (a StringWriter in tests) need not be
        // thread-safe. Console.Error already is, and Synchronized returns such a writer unchanged.
        stderr = TextWriter.Synchronized(stderr);
        Options options;
        try
        {
            options = Options.Parse(args);
        }
        catch (ArgumentException e)
        {
            await stderr.WriteLineAsync("error: " + e.Message).ConfigureAwait(false);
            await stderr.WriteLineAsync(Usage).ConfigureAwait(false);
            return 2;
        }

        if (options.Help)
        {
            await stderr.WriteLineAsync(Usage).ConfigureAwait(false);
            return 0;
        }

        Http3HandlerOptions handlerOptions;
        try
        {
            handlerOptions = CreateHandlerOptions(options);
        }
        catch (Exception e) when (e is IOException or System.Security.Cryptography.CryptographicException or UnauthorizedAccessException)
        {
            await stderr.WriteLineAsync("error: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        if (options.QlogDirectory is not null)
        {
            Directory.CreateDirectory(options.QlogDirectory);
        }

        if (options.OutputDirectory is not null)
        {
            Directory.CreateDirectory(options.OutputDirectory);
        }

        var ticketStore = handlerOptions.SessionStore as FileSessionStore;
        using var handler = new ManagedHttp3Handler(handlerOptions);
        using var client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        var stdoutLock = new SemaphoreSlim(1, 1);
        bool allSucceeded = true;
        var total = Stopwatch.StartNew();
        long totalBytes = 0;
        await using var legacy = new LegacyConnections(handlerOptions);
        foreach (string url in options.Urls)
        {
            Task<long>[] requests = Enumerable.Range(0, options.Parallel)
                .Select(i => options.LegacyHttp
                    ? FetchLegacyAsync(legacy, options, url, i, stdout, stdoutLock, stderr, cancellationToken)
                    : FetchAsync(client, options, url, i, stdout, stdoutLock, stderr, cancellationToken))
                .ToArray();
            foreach (Task<long> request in requests)
            {
                try
                {
                    totalBytes += await request.ConfigureAwait(false);
                }
                catch (Exception e) when (e is HttpRequestException or HttpIOException or IOException or OperationCanceledException or InvalidOperationException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
                {
                    allSucceeded = false;
                    string code = ManagedHttp3Handler.TryGetHttp3ErrorCode(e, out long h3) ? $" (HTTP/3 error 0x{h3:x})" : string.Empty;
                    await stderr.WriteLineAsync($"{url}: failed{code}: {e.Message}{(e.InnerException is { } inner ? " -> " + inner.Message : string.Empty)}").ConfigureAwait(false);
                }
            }
        }

        total.Stop();
        if (ticketStore is not null && allSucceeded)
        {
            // The server's ticket can trail the responses: give it a moment before closing.
            await Task.WhenAny(ticketStore.Stored, Task.Delay(TimeSpan.FromSeconds(2), cancellationToken)).ConfigureAwait(false);
        }


        await stderr.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"total: {totalBytes} bytes in {total.Elapsed.TotalMilliseconds:F1} ms ({Mbps(totalBytes, total.Elapsed):F2} Mbps), {handler.ConnectionsOpened} connection(s)")).ConfigureAwait(false);
        return allSucceeded ? 0 : 1;
    }

    private static Http3HandlerOptions CreateHandlerOptions(Options options)
    {
        var config = new QuicConfiguration
        {
            SecretsLogFile = options.SecretsLog,
            QlogDirectory = options.QlogDirectory,
            EnableEarlyData = options.ZeroRtt,
        };
        if (options.MaxData is long maxData)
        {
            config.MaxData = maxData;
            config.MaxConnectionReceiveWindow = Math.Max(config.MaxConnectionReceiveWindow, maxData);
        }

        if (options.MaxStreamData is long maxStreamData)
        {
            config.MaxStreamData = maxStreamData;
            config.MaxStreamReceiveWindow = Math.Max(config.MaxStreamReceiveWindow, maxStreamData);
        }

        if (options.CaCerts is not null)
        {
            // Read once here (validation loads it) and shared by every connection's copy of the configuration.
            config.TrustedCertificateAuthoritiesPath = options.CaCerts;
            string? problem = config.Validate().FirstOrDefault(e => e.StartsWith(nameof(QuicConfiguration.TrustedCertificateAuthoritiesPath), StringComparison.Ordinal));
            if (problem is not null)
            {
                throw new IOException(problem);
            }
        }

        if (options.Insecure)
        {
            config.DangerousAcceptAnyServerCertificate = true;
        }

        return new Http3HandlerOptions
        {
            Configuration = config,
            EnableEarlyData = options.ZeroRtt,
            SessionStore = options.SessionTicket is null ? null : new FileSessionStore(options.SessionTicket),

            // --parallel means "on one connection", as in aioquic.
            MaxConnectionsPerServer = 1,
        };
    }

    private static async Task<long> FetchAsync(HttpClient client, Options options, string url, int index, Stream stdout, SemaphoreSlim stdoutLock, TextWriter stderr, CancellationToken cancellationToken)
    {
        var uri = new Uri(url, UriKind.Absolute);
        using var request = new HttpRequestMessage(options.HasBody ? HttpMethod.Post : HttpMethod.Get, uri);
        if (options.Body is not null)
        {
            request.Content = new ByteArrayContent(options.Body);
        }
        else if (options.DataFile is not null)
        {
            // Streamed from the file as it is sent (each parallel request reads its own copy); Content-Length when the
            // file has a length (not a pipe).
            request.Content = new StreamContent(new FileStream(options.DataFile, FileMode.Open, FileAccess.Read, FileShare.Read, 64 * 1024, FileOptions.Asynchronous | FileOptions.SequentialScan), 64 * 1024);
        }

        var watch = Stopwatch.StartNew();
        using HttpResponseMessage response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        long length = await SaveAsync(body, options.Include ? FormatHead(response) : null, options, uri, index, stdout, stdoutLock, cancellationToken).ConfigureAwait(false);
        watch.Stop();
        await stderr.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"{request.Method} {url} -> {(int)response.StatusCode} HTTP/{response.Version}: {length} bytes in {watch.Elapsed.TotalMilliseconds:F1} ms ({Mbps(length, watch.Elapsed):F2} Mbps)")).ConfigureAwait(false);
        if ((int)response.StatusCode >= 400)
        {
            throw new HttpRequestException($"HTTP status {(int)response.StatusCode}.", null, response.StatusCode);
        }

        return length;
    }

    /// <summary>HTTP/0.9 over QUIC (hq-interop): "GET /path\r\n" on a bidirectional stream, the body until the FIN.</summary>
    private static async Task<long> FetchLegacyAsync(LegacyConnections connections, Options options, string url, int index, Stream stdout, SemaphoreSlim stdoutLock, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (options.HasBody)
        {
            throw new InvalidOperationException("HTTP/0.9 has no request bodies (--data or --data-file with --legacy-http).");
        }

        var uri = new Uri(url, UriKind.Absolute);
        var watch = Stopwatch.StartNew();
        QuicConnection connection = await connections.GetAsync(uri, cancellationToken).ConfigureAwait(false);
        await using QuicStream stream = await connection.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
        await stream.WriteAsync(Encoding.ASCII.GetBytes("GET " + uri.PathAndQuery + "\r\n"), completeWrites: true, cancellationToken).ConfigureAwait(false);
        long length = await SaveAsync(stream, null, options, uri, index, stdout, stdoutLock, cancellationToken).ConfigureAwait(false);
        watch.Stop();
        await stderr.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"GET {url} -> HTTP/0.9: {length} bytes in {watch.Elapsed.TotalMilliseconds:F1} ms ({Mbps(length, watch.Elapsed):F2} Mbps)")).ConfigureAwait(false);
        return length;
    }

    private static async Task<long> SaveAsync(Stream body, byte[]? head, Options options, Uri uri, int index, Stream stdout, SemaphoreSlim stdoutLock, CancellationToken cancellationToken)
    {
        if (options.OutputDirectory is not null)
        {
            string name = Path.GetFileName(uri.AbsolutePath);
            if (string.IsNullOrEmpty(name))
            {
                name = "index.html";
            }

            if (options.Parallel > 1)
            {
                name = index.ToString(CultureInfo.InvariantCulture) + "-" + name;
            }

            await using FileStream file = File.Create(Path.Combine(options.OutputDirectory, name));
            if (head is not null)
            {
                await file.WriteAsync(head, cancellationToken).ConfigureAwait(false);
            }

            await body.CopyToAsync(file, 256 * 1024, cancellationToken).ConfigureAwait(false);
            return file.Length - (head?.Length ?? 0);
        }

        // Bodies go to stdout one at a time, so that parallel responses do not interleave: the response holding stdout
        // streams straight through; the others keep reading (their unread data would otherwise hold the connection's
        // flow-control window and stall the one being written) into memory until their turn, then stream the rest.
        byte[] buffer = new byte[256 * 1024];
        long length = 0;
        var waiting = new MemoryStream();
        Task turn = stdoutLock.WaitAsync(cancellationToken);
        bool ended = false;
        try
        {
            while (!turn.IsCompleted)
            {
                int n = await body.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    ended = true;
                    break;
                }

                waiting.Write(buffer, 0, n);
                length += n;
            }

            await turn.ConfigureAwait(false);
            if (head is not null)
            {
                await stdout.WriteAsync(head, cancellationToken).ConfigureAwait(false);
            }

            if (waiting.Length > 0)
            {
                await stdout.WriteAsync(waiting.GetBuffer().AsMemory(0, (int)waiting.Length), cancellationToken).ConfigureAwait(false);
                await stdout.FlushAsync(cancellationToken).ConfigureAwait(false);
                waiting = new MemoryStream();
            }

            while (!ended)
            {
                int n = await body.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                await stdout.WriteAsync(buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                await stdout.FlushAsync(cancellationToken).ConfigureAwait(false);
                length += n;
            }
        }
        finally
        {
            if (turn.IsCompletedSuccessfully)
            {
                stdoutLock.Release();
            }
            else
            {
                // Cancelled or failed before our turn: release it if the wait still succeeds later.
                _ = turn.ContinueWith(static (t, l) => ((SemaphoreSlim)l!).Release(), stdoutLock, CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        return length;
    }

    private static byte[] FormatHead(HttpResponseMessage response)
    {
        var head = new StringBuilder();
        head.Append(CultureInfo.InvariantCulture, $"HTTP/3 {(int)response.StatusCode}\r\n");
        foreach (KeyValuePair<string, IEnumerable<string>> header in response.Headers.Concat(response.Content.Headers))
        {
            head.Append(header.Key.ToLowerInvariant()).Append(": ").Append(string.Join(", ", header.Value)).Append("\r\n");
        }

        head.Append("\r\n");
        return Encoding.Latin1.GetBytes(head.ToString());
    }

    private static double Mbps(long bytes, TimeSpan elapsed) => elapsed.TotalSeconds > 0 ? bytes * 8 / elapsed.TotalSeconds / 1_000_000 : 0;

    /// <summary>One hq-interop connection per server, shared by the requests to it.</summary>
    private sealed class LegacyConnections(Http3HandlerOptions options) : IAsyncDisposable
    {
        private readonly Dictionary<string, Task<QuicConnection>> _connections = [];

        public Task<QuicConnection> GetAsync(Uri uri, CancellationToken cancellationToken)
        {
            string key = uri.IdnHost + ":" + uri.Port.ToString(CultureInfo.InvariantCulture);
            lock (_connections)
            {
                if (!_connections.TryGetValue(key, out Task<QuicConnection>? connection))
                {
                    QuicConfiguration config = options.Configuration.Clone();
                    config.ApplicationProtocols = ["hq-interop"];
                    string host = uri.HostNameType == UriHostNameType.IPv6 ? uri.IdnHost.Trim('[', ']') : uri.IdnHost;
                    config.ServerName ??= host; // checked against the certificate, an IP literal too (never sent as SNI)
                    connection = QuicConnection.ConnectAsync(
                        new QuicClientConnectionOptions
                        {
                            RemoteEndPoint = IPAddress.TryParse(host, out IPAddress? address) ? new IPEndPoint(address, uri.Port) : new DnsEndPoint(host, uri.Port),
                            Configuration = config,
                            SessionStore = options.SessionStore,
                        },
                        cancellationToken).AsTask();
                    _connections.Add(key, connection);
                }

                return connection;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (Task<QuicConnection> connection in _connections.Values)
            {
                if (connection.IsCompletedSuccessfully)
                {
                    await connection.Result.DisposeAsync().ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary>Keeps the newest session ticket in a file (aioquic's --session-ticket); tokens stay in memory.</summary>
    private sealed class FileSessionStore(string path) : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _tokens = new();
        private readonly Lock _lock = new();
        private readonly TaskCompletionSource _stored = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _taken;

        public Task Stored => _stored.Task;

        public byte[]? TakeSessionTicket(string serverName)
        {
            lock (_lock)
            {
                // One ticket per run: the first connection resumes, later ones (if any) use newer tickets.
                if (_taken || !File.Exists(path))
                {
                    return null;
                }

                _taken = true;
                return File.ReadAllBytes(path);
            }
        }

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            lock (_lock)
            {
                File.WriteAllBytes(path, ticket);
            }

            _stored.TrySetResult();
        }

        public byte[]? TakeToken(string serverName) => _tokens.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token) => _tokens.StoreToken(serverName, token);
    }

    private sealed class Options
    {
        public List<string> Urls { get; } = [];

        public string? CaCerts { get; private set; }

        public bool Insecure { get; private set; }

        public byte[]? Body { get; private set; }

        public string? DataFile { get; private set; }

        public bool HasBody => Body is not null || DataFile is not null;

        public bool Include { get; private set; }

        public string? SecretsLog { get; private set; }

        public string? QlogDirectory { get; private set; }

        public string? SessionTicket { get; private set; }

        public bool ZeroRtt { get; private set; }

        public long? MaxData { get; private set; }

        public long? MaxStreamData { get; private set; }

        public int Parallel { get; private set; } = 1;

        public string? OutputDirectory { get; private set; }

        public bool Help { get; private set; }

        public bool LegacyHttp { get; private set; }

        public static Options Parse(string[] args)
        {
            var o = new Options();
            for (int i = 0; i < args.Length; i++)
            {
                string arg = args[i];
                string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value.");
                switch (arg)
                {
                    case "--ca-certs": o.CaCerts = Value(); break;
                    case "-k" or "--insecure": o.Insecure = true; break;
                    case "-d" or "--data": o.Body = Encoding.UTF8.GetBytes(Value()); o.DataFile = null; break;
                    case "--data-file": o.DataFile = CheckExists(arg, Value()); o.Body = null; break;
                    case "-i" or "--include": o.Include = true; break;
                    case "-l" or "--secrets-log": o.SecretsLog = Value(); break;
                    case "-q" or "--qlog-dir": o.QlogDirectory = Value(); break;
                    case "-s" or "--session-ticket": o.SessionTicket = Value(); break;
                    case "--zero-rtt": o.ZeroRtt = true; break;
                    case "--max-data": o.MaxData = ParsePositive(arg, Value()); break;
                    case "--max-stream-data": o.MaxStreamData = ParsePositive(arg, Value()); break;
                    case "--parallel": o.Parallel = (int)Math.Min(ParsePositive(arg, Value()), 10_000); break;
                    case "--output-dir": o.OutputDirectory = Value(); break;
                    case "-h" or "--help": o.Help = true; break;
                    case "--legacy-http": o.LegacyHttp = true; break;
                    default:
                        if (arg.StartsWith('-'))
                        {
                            throw new ArgumentException($"Unknown option {arg}.");
                        }

                        if (!Uri.TryCreate(arg, UriKind.Absolute, out Uri? uri) || uri.Scheme != Uri.UriSchemeHttps)
                        {
                            throw new ArgumentException($"Not an https URL: {arg}.");
                        }

                        o.Urls.Add(arg);
                        break;
                }
            }

            if (o.Urls.Count == 0 && !o.Help)
            {
                throw new ArgumentException("No URL given.");
            }

            return o;
        }

        /// <summary>Fails as a bad argument (exit code 2) when there is no such file. Not opened here: a pipe would block.</summary>
        private static string CheckExists(string name, string path) =>
            File.Exists(path) ? path : throw new ArgumentException($"{name} {path}: no such file.");

        private static long ParsePositive(string name, string value) =>
            long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 ? n : throw new ArgumentException($"{name} needs a positive integer.");
    }
}
