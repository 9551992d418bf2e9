using KestrelQuic.AspNetCore;
using KestrelQuic.Configuration;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Registers the managed QUIC transport for Kestrel's HTTP/3.</summary>
public static class WebHostBuilderManagedQuicExtensions
{
    /// <summary>The configuration section bound into <see cref="QuicConfiguration"/>.</summary>
    public const string ConfigurationSectionName = "ManagedQuic";

    /// <summary>
    /// Serves HTTP/3 over the managed QUIC engine: replaces any registered <see cref="IMultiplexedConnectionListenerFactory"/>
    /// (Kestrel's msquic transport), leaves TCP alone, binds the "ManagedQuic" configuration section and validates it
    /// at start-up. Endpoints still need <c>Protocols = Http1AndHttp2AndHttp3</c> (or Http3) and HTTPS.
    /// </summary>
    public static IWebHostBuilder UseManagedQuic(this IWebHostBuilder hostBuilder) => hostBuilder.UseManagedQuic(null);

    /// <summary>As <see cref="UseManagedQuic(IWebHostBuilder)"/>, then applies <paramref name="configure"/> after the configuration section.</summary>
    public static IWebHostBuilder UseManagedQuic(this IWebHostBuilder hostBuilder, Action<QuicConfiguration>? configure)
    {
        ArgumentNullException.ThrowIfNull(hostBuilder);
        return hostBuilder.ConfigureServices((context, services) =>
        {
            services.RemoveAll<IMultiplexedConnectionListenerFactory>();
            services.AddSingleton<IMultiplexedConnectionListenerFactory, ManagedQuicTransportFactory>();
            OptionsBuilder<QuicConfiguration> options = services.AddOptions<QuicConfiguration>()
                .Bind(context.Configuration.GetSection(ConfigurationSectionName), binder => binder.ErrorOnUnknownConfiguration = true);
            if (configure is not null) options.Configure(configure);

            // An empty value in JSON or the environment means "off", as the properties' null does.
            options.PostConfigure(static o =>
            {
                if (string.IsNullOrWhiteSpace(o.SecretsLogFile)) o.SecretsLogFile = null;
                if (string.IsNullOrWhiteSpace(o.QlogDirectory)) o.QlogDirectory = null;
            });
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<QuicConfiguration>, QuicConfigurationValidator>());
            options.ValidateOnStart();
        });
    }
}
