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

/// <summary>
/// The sample server (Kestrel's HTTP/3 over the engine, samples/Http3Server) in this process, with two routes of the
/// interop runner's own: <c>/conn</c> describes the request's QUIC connection, <c>/page/{n}</c> is an HTML page of
/// n bytes ending with a marker (for Chromium, which renders HTML but downloads octet streams).
/// </summary>
internal sealed class OurServer : IAsyncDisposable
{
    private readonly WebApplication _app;

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
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        return new OurServer(app, new IPEndPoint(address, port), certificate);
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
