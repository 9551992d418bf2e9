using System.Globalization;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Http3Server;
using KestrelQuic.AspNetCore;
using KestrelQuic.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Interop;

/// <summary>Settings of our server for one case.</summary>
internal sealed record ServerSettings
{
    public Action<QuicConfiguration>? Quic { get; init; }

    /// <summary>Serve the workspace's long chain (amplificationlimit) instead of the localhost certificate.</summary>
    public bool LongChain { get; init; }

    public bool Ipv6 { get; init; }
}

/// <summary>One request of a Chromium page's resources, with what its QUIC connection and stream said.</summary>
/// <param name="Path">The request path.</param>
/// <param name="Connection">Which connection carried it: 0 for the first one the server saw, 1 for the next, ….</param>
/// <param name="Version">The connection's QUIC version.</param>
/// <param name="Resumed">The connection's handshake resumed a session (PSK).</param>
/// <param name="EarlyDataAccepted">The connection accepted 0-RTT.</param>
/// <param name="EarlyRequest">The request itself arrived in 0-RTT.</param>
internal sealed record SeenRequest(string Path, int Connection, uint Version, bool Resumed, bool EarlyDataAccepted, bool EarlyRequest);

/// <summary>
/// The sample server (Kestrel's HTTP/3 over the engine, samples/Http3Server) in this process, with two routes of the
/// interop runner's own: <c>/conn</c> describes the request's QUIC connection, <c>/page/{n}</c> is an HTML page of
/// n bytes ending with a marker (for Chromium, which renders HTML but downloads octet streams).
/// </summary>
internal sealed class OurServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<QuicConnection> _connections = new();
    private readonly List<SeenRequest> _seen = new();

    private OurServer(WebApplication app, IPEndPoint endPoint, X509Certificate2 certificate)
    {
        _app = app;
        EndPoint = endPoint;
        Certificate = certificate;
    }

    public IPEndPoint EndPoint { get; }

    public int Port => EndPoint.Port;

    public X509Certificate2 Certificate { get; }

    /// <summary>Requests served, as "METHOD PATH PROTOCOL".</summary>
    public IReadOnlyList<string> Requests => _app.Services.GetRequiredService<RequestLog>().Entries;

    /// <summary>The requests of the Chromium routes (<c>/mux</c>, <c>/resume</c>), in the order they were served.</summary>
    public IReadOnlyList<SeenRequest> Seen
    {
        get
        {
            lock (_seen) return _seen.ToArray();
        }
    }

    public static async Task<OurServer> StartAsync(InteropWorkspace workspace, ServerSettings settings)
    {
        IPAddress address = settings.Ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        int port = InteropWorkspace.FreePort(address);
        string host = settings.Ipv6 ? "[::1]" : "127.0.0.1";
        X509Certificate2 certificate = settings.LongChain ? workspace.ChainLeaf : workspace.Certificate;
        string[] args =
        [
            "--urls", $"https://{host}:{port.ToString(CultureInfo.InvariantCulture)}",
            "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:Microsoft.AspNetCore=Error",
            // A configured default certificate keeps the sample from making (and announcing) an ephemeral one.
            $"--Kestrel:Certificates:Default:Path={workspace.CertificatePath}", $"--Kestrel:Certificates:Default:KeyPath={workspace.KeyPath}",
        ];
        WebApplication app = Http3ServerApp.Create(args, builder =>
        {
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureHttpsDefaults(https =>
            {
                https.ServerCertificate = certificate;
                if (settings.LongChain) https.ServerCertificateChain = workspace.ChainIssuers;
            }));

            // Kestrel hands HTTP/3 transports the certificate alone (never its chain): the intermediates go in the
            // transport's configuration.
            if (settings.LongChain) builder.Services.Configure<QuicConfiguration>(q => q.CertificateChain = workspace.ChainIssuers);
            if (settings.Quic is { } quic) builder.Services.Configure(quic);
            if (InteropWorkspace.LogDirectory is { } logs && Environment.GetEnvironmentVariable("KESTRELQUIC_INTEROP_QLOG") == "1") builder.Services.PostConfigure<QuicConfiguration>(q => q.QlogDirectory ??= logs);
        });
        app.MapGet("/conn", (HttpContext context) =>
        {
            QuicConnection? c = context.Features.Get<IManagedQuicConnectionFeature>()?.Connection;
            return c is null
                ? Results.Content($"protocol={context.Request.Protocol}")
                : Results.Content(string.Create(
                    CultureInfo.InvariantCulture,
                    $"protocol={context.Request.Protocol} version=0x{c.Version:x8} cipher={c.NegotiatedCipherSuite} resumed={c.IsResumed} early_data={c.IsEarlyDataAccepted}"));
        });
        app.MapGet("/page/{n:int}", (int n) => Results.Content(Page(n), "text/html; charset=utf-8"));
        var server = new OurServer(app, new IPEndPoint(address, port), certificate);
        server.MapChromiumRoutes();
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>
    /// Pages for Chromium, which loads one URL per run: <c>/mux/{n}</c> pulls n scripts over its connection
    /// (multiplexing); <c>/resume</c> has the server close its first connection (GOAWAY) and then needs a script over
    /// a second one (resumption, zerortt). Each script adds to the DOM, which --dump-dom prints after the load event.
    /// </summary>
    private void MapChromiumRoutes()
    {
        _app.MapGet("/mux/{n:int}", (int n) =>
        {
            var sb = new StringBuilder("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>mux</title><script>var loaded = 0;</script></head><body>");
            for (int i = 0; i < n; i++) sb.Append(CultureInfo.InvariantCulture, $"<script src=\"/mux/s/{i}.js\"></script>");
            sb.Append("<p id=\"count\"></p><script>document.getElementById('count').textContent = 'LOADED-' + loaded;</script></body></html>");
            return Results.Content(sb.ToString(), "text/html; charset=utf-8");
        });
        _app.MapGet("/mux/s/{i:int}.js", (HttpContext context, int i) =>
        {
            Record(context);
            return Results.Content("loaded++;", "text/javascript");
        });

        // The first script asks Kestrel to close the connection gracefully (HTTP/3 GOAWAY, then CONNECTION_CLOSE once
        // idle) and writes a second script into the page; Chromium fetches it on a new connection.
        _app.MapGet("/resume", () => Results.Content(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>resume</title></head><body><script src=\"/resume/first.js\"></script></body></html>",
            "text/html; charset=utf-8"));
        _app.MapGet("/resume/first.js", async (HttpContext context) =>
        {
            SeenRequest first = Record(context);
            context.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionLifetimeNotificationFeature>()?.RequestClose();
            await Task.Delay(100); // the GOAWAY goes out before this response
            return Results.Content(
                $"document.write('<p id=\"first\">FIRST-{first.Connection}</p><script src=\"/resume/second.js\"><' + '/script>');",
                "text/javascript");
        });
        _app.MapGet("/resume/second.js", (HttpContext context) =>
        {
            SeenRequest second = Record(context);
            return Results.Content(
                string.Create(CultureInfo.InvariantCulture, $"document.write('<p id=\"second\">SECOND-{second.Connection} resumed={second.Resumed} early={second.EarlyRequest}</p>');"),
                "text/javascript");
        });
    }

    private SeenRequest Record(HttpContext context)
    {
        QuicConnection connection = context.Features.Get<IManagedQuicConnectionFeature>()?.Connection
            ?? throw new InvalidOperationException($"{context.Request.Path} did not arrive over HTTP/3");
        bool early = context.Features.Get<IManagedQuicStreamFeature>()?.IsEarlyData == true;
        lock (_seen)
        {
            int index = _connections.IndexOf(connection);
            if (index < 0)
            {
                index = _connections.Count;
                _connections.Add(connection);
            }

            var seen = new SeenRequest(context.Request.Path, index, connection.Version, connection.IsResumed, connection.IsEarlyDataAccepted, early);
            _seen.Add(seen);
            return seen;
        }
    }

    /// <summary>The page /page/{n} serves: n filler bytes in a &lt;pre&gt;, then the marker <see cref="PageMarker"/>.</summary>
    public static string Page(int n)
    {
        var sb = new StringBuilder(n + 200);
        sb.Append("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>interop</title></head><body><pre id=\"filler\">");
        for (int i = 0; i < n; i++) sb.Append((char)('a' + (i % 26)));
        sb.Append("</pre><p id=\"end\">").Append(PageMarker(n)).Append("</p></body></html>");
        return sb.ToString();
    }

    public static string PageMarker(int n) => $"END-OF-PAGE-{n.ToString(CultureInfo.InvariantCulture)}";

    public async ValueTask DisposeAsync()
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            await _app.StopAsync(stop.Token);
        }
        catch (OperationCanceledException)
        {
        }

        await _app.DisposeAsync();
    }
}
