using System.Net;
using System.Net.Security;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace KestrelQuic.Http.Connections;

/// <summary>
/// <see cref="IMultiplexedConnectionFactory"/> over the KestrelQuic engine: connects to a QUIC server and returns a
/// <see cref="MultiplexedConnectionContext"/> whose streams are <see cref="ConnectionContext"/>s.
/// </summary>
public sealed class QuicMultiplexedConnectionFactory : IMultiplexedConnectionFactory
{
    private readonly QuicConnectionFactoryOptions _options;

    /// <summary>Creates a factory; <paramref name="options"/> are read on every connect.</summary>
    public QuicMultiplexedConnectionFactory(QuicConnectionFactoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>
    /// Connects to <paramref name="endpoint"/> (an <see cref="IPEndPoint"/> or <see cref="DnsEndPoint"/>). An
    /// <see cref="SslClientAuthenticationOptions"/> in <paramref name="features"/> supplies ALPN and the target host.
    /// </summary>
    public async ValueTask<MultiplexedConnectionContext> ConnectAsync(EndPoint endpoint, IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        QuicConnection connection = await QuicConnectionFactoryHelpers.ConnectAsync(_options, endpoint, features, cancellationToken).ConfigureAwait(false);
        return new QuicMultiplexedConnectionContext(connection, _options.DefaultStreamErrorCode, _options.DefaultCloseErrorCode);
    }
}

/// <summary>
/// <see cref="IConnectionFactory"/> over the KestrelQuic engine, for simple protocols that need one byte stream: each
/// connect opens a QUIC connection and one bidirectional stream; disposing the context closes the connection.
/// </summary>
public sealed class QuicConnectionFactory : IConnectionFactory
{
    private readonly QuicConnectionFactoryOptions _options;

    /// <summary>Creates a factory; <paramref name="options"/> are read on every connect.</summary>
    public QuicConnectionFactory(QuicConnectionFactoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
    }

    /// <summary>Connects to <paramref name="endpoint"/> and opens the stream.</summary>
    public async ValueTask<ConnectionContext> ConnectAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        QuicConnection connection = await QuicConnectionFactoryHelpers.ConnectAsync(_options, endpoint, null, cancellationToken).ConfigureAwait(false);
        try
        {
            QuicStream stream = await connection.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, cancellationToken).ConfigureAwait(false);
            return new QuicStreamContext(stream, connection, _options.DefaultStreamErrorCode, ownsConnection: true, _options.DefaultCloseErrorCode);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}

internal static class QuicConnectionFactoryHelpers
{
    public static ValueTask<QuicConnection> ConnectAsync(QuicConnectionFactoryOptions options, EndPoint endpoint, IFeatureCollection? features, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        KestrelQuic.Configuration.QuicConfiguration config = options.Configuration.Clone();
        if (features?.Get<SslClientAuthenticationOptions>() is { } ssl)
        {
            if (ssl.ApplicationProtocols is { Count: > 0 } protocols)
            {
                config.ApplicationProtocols = [.. protocols.Select(p => p.ToString())];
            }

            if (!string.IsNullOrEmpty(ssl.TargetHost))
            {
                config.ServerName = ssl.TargetHost;
            }
        }

        return QuicConnection.ConnectAsync(
            new QuicClientConnectionOptions
            {
                RemoteEndPoint = endpoint,
                LocalEndPoint = options.LocalEndPoint,
                Configuration = config,
                SessionStore = options.SessionStore,
                HandshakeTimeout = options.HandshakeTimeout,
                DefaultStreamErrorCode = options.DefaultStreamErrorCode,
                DefaultCloseErrorCode = options.DefaultCloseErrorCode,
                LoggerFactory = options.LoggerFactory,
            },
            cancellationToken);
    }
}
