using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Http3Server;

/// <summary>
/// The sample server: HTTP/1.1, HTTP/2 and HTTP/3 (over the managed QUIC engine) on https://localhost:5001 unless
/// --urls, ASPNETCORE_URLS or Kestrel:Endpoints say otherwise, with an ephemeral self-signed certificate unless
/// Kestrel:Certificates:Default is configured.
/// </summary>
public static class Http3ServerApp
{
    /// <summary>The URL served when nothing is configured.</summary>
    public const string DefaultUrl = "https://localhost:5001";

    /// <summary>Bytes of one /bytes chunk: a multiple of the pattern period, so every chunk continues the pattern.</summary>
    private const int ChunkSize = 251 * 256;

    private static readonly byte[] Chunk = CreatePattern(ChunkSize);

    /// <summary>The content /bytes/{n} serves: byte i is i mod 251.</summary>
    public static byte[] CreatePattern(int length)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i++) data[i] = (byte)(i % 251);
        return data;
    }

    /// <summary>Builds the application; <paramref name="configure"/> may adjust the builder (tests) before it is built.</summary>
    public static WebApplication Create(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        WebApplicationBuilder builder = WebApplication.CreateBuilder(args);
        builder.WebHost.UseManagedQuic();

        IConfiguration config = builder.Configuration;
        if (string.IsNullOrEmpty(config["urls"]) && !config.GetSection("Kestrel:Endpoints").Exists())
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }

        bool protocolsConfigured = config.GetSection("Kestrel:EndpointDefaults:Protocols").Exists();
        X509Certificate2? ephemeral = config.GetSection("Kestrel:Certificates:Default").Exists() ? null : CreateEphemeralCertificate();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            if (!protocolsConfigured) kestrel.ConfigureEndpointDefaults(listen => listen.Protocols = HttpProtocols.Http1AndHttp2AndHttp3);
            if (ephemeral is not null) kestrel.ConfigureHttpsDefaults(https => https.ServerCertificate = ephemeral);
        });
        builder.Services.AddSingleton<RequestLog>();
        if (ephemeral is not null) builder.Services.AddSingleton(new EphemeralCertificate(ephemeral, GetSpkiHash(ephemeral)));
        configure?.Invoke(builder);

        WebApplication app = builder.Build();
        if (ephemeral is not null)
        {
            string spki = GetSpkiHash(ephemeral);
            app.Logger.LogInformation("Ephemeral certificate for localhost/127.0.0.1, SPKI SHA-256 (base64): {Spki}", spki);
            app.Lifetime.ApplicationStarted.Register(() =>
            {
                foreach (string url in app.Urls.Where(u => u.StartsWith("https://", StringComparison.OrdinalIgnoreCase)))
                {
                    var uri = new Uri(url);
                    Console.WriteLine($"chromium --origin-to-force-quic-on={uri.Host}:{uri.Port} --ignore-certificate-errors-spki-list={spki} {url}");
                }
            });
        }

        MapRoutes(app);
        return app;
    }

    /// <summary>base64(SHA-256(SubjectPublicKeyInfo)): what Chromium's --ignore-certificate-errors-spki-list takes.</summary>
    public static string GetSpkiHash(X509Certificate2 certificate)
        => Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));

    /// <summary>A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, valid 14 days (Chromium's limit for SPKI pinning).</summary>
    public static X509Certificate2 CreateEphemeralCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        using X509Certificate2 created = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(14).AddMinutes(-10));
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null);
    }

    private static void MapRoutes(WebApplication app)
    {
        RequestLog log = app.Services.GetRequiredService<RequestLog>();
        app.Use((context, next) =>
        {
            log.Add($"{context.Request.Method} {context.Request.Path} {context.Request.Protocol}");
            return next(context);
        });

        app.MapGet("/", (HttpContext context) =>
        {
            string protocol = HtmlEncoder.Default.Encode(context.Request.Protocol);
            return Results.Content(
                $"""
                <!DOCTYPE html>
                <html><head><meta charset="utf-8"><title>KestrelQuic</title></head>
                <body><h1>Hello from Kestrel over KestrelQuic</h1>
                <p>This page was served over <span id="protocol">{protocol}</span>.</p>
                <p>Try <a href="/bytes/1048576">/bytes/1048576</a> or <a href="/headers">/headers</a>.</p>
                </body></html>
                """,
                "text/html; charset=utf-8");
        });

        app.MapGet("/bytes/{n:long}", async (HttpContext context, long n) =>
        {
            if (n < 0) return Results.BadRequest();
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = n;
            for (long sent = 0; sent < n;)
            {
                int size = (int)Math.Min(ChunkSize, n - sent);
                await context.Response.Body.WriteAsync(Chunk.AsMemory(0, size), context.RequestAborted);
                sent += size;
            }

            return Results.Empty;
        });

        app.MapPost("/echo", async (HttpContext context) =>
        {
            context.Response.ContentType = context.Request.ContentType ?? "application/octet-stream";
            if (context.Request.ContentLength is long length) context.Response.ContentLength = length;
            await context.Request.Body.CopyToAsync(context.Response.Body, context.RequestAborted);
        });

        app.MapGet("/headers", (HttpContext context) =>
            Results.Json(context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString())));
    }
}

/// <summary>The self-signed certificate the sample made because none was configured, with its SPKI hash for Chromium.</summary>
/// <param name="Certificate">The certificate (with its private key).</param>
/// <param name="SpkiHash">base64(SHA-256(SubjectPublicKeyInfo)).</param>
public sealed record EphemeralCertificate(X509Certificate2 Certificate, string SpkiHash);

/// <summary>"METHOD path protocol" of every request served, newest last (tests check the server saw HTTP/3).</summary>
public sealed class RequestLog
{
    private readonly ConcurrentQueue<string> _entries = new();

    /// <summary>Records one request.</summary>
    public void Add(string entry)
    {
        _entries.Enqueue(entry);
        while (_entries.Count > 10_000) _entries.TryDequeue(out _);
    }

    /// <summary>A snapshot of the entries.</summary>
    public IReadOnlyList<string> Entries => _entries.ToArray();
}
