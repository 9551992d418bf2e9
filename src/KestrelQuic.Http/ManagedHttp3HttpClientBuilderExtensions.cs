using System.Collections.Concurrent;
using KestrelQuic;
using KestrelQuic.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Makes an <see cref="IHttpClientFactory"/> client speak HTTP/3 through <see cref="ManagedHttp3Handler"/>.</summary>
public static class ManagedHttp3HttpClientBuilderExtensions
{
    /// <summary>
    /// Uses <see cref="ManagedHttp3Handler"/> as the client's primary handler, with options named after the client
    /// (<c>services.Configure&lt;Http3HandlerOptions&gt;(name, …)</c> also applies). Handlers are recycled by the factory
    /// (HandlerLifetime); unless <see cref="Http3HandlerOptions.SessionStore"/> is set, all handlers of one client share a
    /// session store, so new handlers resume TLS sessions (and may use 0-RTT) with servers already visited. Unless
    /// <see cref="Http3HandlerOptions.LoggerFactory"/> is set, the engine logs through the container's <see cref="ILoggerFactory"/>.
    /// </summary>
    public static IHttpClientBuilder UseManagedHttp3(this IHttpClientBuilder builder, Action<Http3HandlerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (configure is not null)
        {
            builder.Services.Configure(builder.Name, configure);
        }

        return AddHandler(builder);
    }

    /// <summary>
    /// As <see cref="UseManagedHttp3(IHttpClientBuilder, Action{Http3HandlerOptions}?)"/>, binding the options from
    /// <paramref name="configuration"/> (e.g. <c>MaxConnectionsPerServer</c>, <c>EnableEarlyData</c>,
    /// <c>Configuration:IdleTimeout</c>, <c>Configuration:ServerName</c>).
    /// </summary>
    public static IHttpClientBuilder UseManagedHttp3(this IHttpClientBuilder builder, IConfiguration configuration, Action<Http3HandlerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configuration);
        builder.Services.Configure<Http3HandlerOptions>(builder.Name, configuration);
        if (configure is not null)
        {
            builder.Services.Configure(builder.Name, configure);
        }

        return AddHandler(builder);
    }

    /// <summary>
    /// Uses <see cref="AltSvcHttp3Handler"/> as the primary handler: HTTP/1.1 or HTTP/2 through a
    /// <see cref="SocketsHttpHandler"/> until a server advertises <c>h3</c> in Alt-Svc, HTTP/3 afterwards, with fallback
    /// when UDP is blocked. Options as for <see cref="UseManagedHttp3(IHttpClientBuilder, Action{Http3HandlerOptions}?)"/>.
    /// </summary>
    public static IHttpClientBuilder UseManagedHttp3WithAltSvc(this IHttpClientBuilder builder, Action<Http3HandlerOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        if (configure is not null)
        {
            builder.Services.Configure(builder.Name, configure);
        }

        builder.Services.AddOptions();
        builder.Services.TryAddSingleton<ManagedHttp3SessionStores>();
        string name = builder.Name;
        return builder.ConfigurePrimaryHttpMessageHandler(services => new AltSvcHttp3Handler(CreateOptions(services, name)));
    }

    private static Http3HandlerOptions CreateOptions(IServiceProvider services, string name)
    {
        Http3HandlerOptions options = services.GetRequiredService<IOptionsMonitor<Http3HandlerOptions>>().Get(name).Clone();
        options.SessionStore ??= services.GetRequiredService<ManagedHttp3SessionStores>().Get(name);
        options.LoggerFactory ??= services.GetService<ILoggerFactory>();
        return options;
    }

    private static IHttpClientBuilder AddHandler(IHttpClientBuilder builder)
    {
        builder.Services.AddOptions();
        builder.Services.TryAddSingleton<ManagedHttp3SessionStores>();
        string name = builder.Name;
        return builder.ConfigurePrimaryHttpMessageHandler(services => new ManagedHttp3Handler(CreateOptions(services, name)));
    }
}

/// <summary>One in-memory session store per named client, outliving the handlers the factory recycles.</summary>
internal sealed class ManagedHttp3SessionStores
{
    private readonly ConcurrentDictionary<string, InMemoryQuicSessionStore> _stores = new(StringComparer.Ordinal);

    public IQuicSessionStore Get(string name) => _stores.GetOrAdd(name, static _ => new InMemoryQuicSessionStore());
}
