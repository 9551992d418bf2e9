using System.Net;
using System.Net.Sockets;
using Http3Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>The sample application on 127.0.0.1 with a free port, HTTP/1.1+2 over TCP and HTTP/3 over the managed engine.</summary>
internal sealed class TestServer : IAsyncDisposable
{
    private bool _disposed;

    private TestServer(WebApplication app, int port)
    {
        App = app;
        Port = port;
    }

    public WebApplication App { get; }

    public int Port { get; }

    public string Origin => $"https://localhost:{Port}";

    public string? Spki => App.Services.GetService<EphemeralCertificate>()?.SpkiHash;

    public IReadOnlyList<string> Requests => App.Services.GetRequiredService<RequestLog>().Entries;

    /// <summary>Builds the sample with <paramref name="args"/> added (configuration), lets <paramref name="map"/> add routes, starts it.</summary>
    public static async Task<TestServer> StartAsync(IEnumerable<string>? args = null, Action<WebApplication>? map = null, Action<WebApplicationBuilder>? configure = null)
    {
        WebApplication app = Build(args, out int port, configure);
        map?.Invoke(app);
        try
        {
            await app.StartAsync();
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        return new TestServer(app, port);
    }

    /// <summary>Starts the sample with arguments that depend on the free port chosen (e.g. Kestrel:Endpoints URLs).</summary>
    public static async Task<TestServer> StartAsync(Func<int, IEnumerable<string>> argsForPort)
    {
        int port = GetFreePort();
        WebApplication app = Build(argsForPort(port), port, configure: null);
        await app.StartAsync();
        return new TestServer(app, port);
    }

    /// <summary>Builds (without starting) the sample on a free port.</summary>
    public static WebApplication Build(IEnumerable<string>? args, out int port, Action<WebApplicationBuilder>? configure = null)
    {
        port = GetFreePort();
        return Build(args, port, configure);
    }

    private static WebApplication Build(IEnumerable<string>? args, int port, Action<WebApplicationBuilder>? configure)
    {
        var all = new List<string> { "--urls", $"https://127.0.0.1:{port}" };
        if (args is not null) all.AddRange(args);
        return Http3ServerApp.Create(all.ToArray(), builder =>
        {
            builder.Logging.ClearProviders();
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            configure?.Invoke(builder);
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await App.StopAsync();
        await App.DisposeAsync();
    }

    /// <summary>A port free for both TCP and UDP on 127.0.0.1 (Kestrel binds both on the same port for HTTP/3).</summary>
    internal static int GetFreePort()
    {
        for (int attempt = 0; ; attempt++)
        {
            using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            tcp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            int port = ((IPEndPoint)tcp.LocalEndPoint!).Port;
            using var udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            try
            {
                udp.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return port;
            }
            catch (SocketException) when (attempt < 20)
            {
            }
        }
    }
}
