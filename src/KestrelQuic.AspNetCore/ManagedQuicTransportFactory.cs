using System.Net;
using KestrelQuic.Configuration;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KestrelQuic.AspNetCore;

/// <summary>
/// Kestrel's multiplexed transport over the managed QUIC engine: binds HTTP/3 endpoints (IP endpoints only) with the
/// TLS settings Kestrel passes and the <see cref="QuicConfiguration"/> from options (the "ManagedQuic" section).
/// Registered by <c>UseManagedQuic()</c>.
/// </summary>
public sealed class ManagedQuicTransportFactory : IMultiplexedConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly IOptions<QuicConfiguration> _options;
    private readonly ILoggerFactory _loggerFactory;

    /// <summary>Creates the factory from the transport options and the host's logger factory.</summary>
    public ManagedQuicTransportFactory(IOptions<QuicConfiguration> options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options;
        _loggerFactory = loggerFactory;
    }

    /// <summary>Binds a UDP socket on <paramref name="endpoint"/>; <paramref name="features"/> must carry Kestrel's <see cref="TlsConnectionCallbackOptions"/>.</summary>
    public async ValueTask<IMultiplexedConnectionListener> BindAsync(EndPoint endpoint, IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        cancellationToken.ThrowIfCancellationRequested();
        if (endpoint is not IPEndPoint ipEndPoint) throw new InvalidOperationException($"QUIC transport only supports IP endpoints, not {endpoint.GetType().Name}.");
        TlsConnectionCallbackOptions tls = features?.Get<TlsConnectionCallbackOptions>()
            ?? throw new InvalidOperationException("Couldn't find HTTPS configuration for QUIC transport.");
        if (tls.ApplicationProtocols is null || tls.ApplicationProtocols.Count == 0) throw new InvalidOperationException("No application protocols specified.");
        ILogger logger = _loggerFactory.CreateLogger("KestrelQuic.AspNetCore");
        return await ManagedQuicConnectionListener.BindAsync(ipEndPoint, tls, _options.Value, logger, _loggerFactory, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>True for IP endpoints (QUIC runs over UDP).</summary>
    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint;
}
