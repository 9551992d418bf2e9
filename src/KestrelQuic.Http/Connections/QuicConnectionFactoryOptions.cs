using System.Net;
using KestrelQuic.Configuration;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Http.Connections;

/// <summary>Options of <see cref="QuicMultiplexedConnectionFactory"/> and <see cref="QuicConnectionFactory"/>.</summary>
public sealed class QuicConnectionFactoryOptions
{
    /// <summary>
    /// Template for every connection (cloned per connection): ALPN, trust, windows, … When a connect call passes an
    /// <see cref="System.Net.Security.SslClientAuthenticationOptions"/> feature, its ApplicationProtocols and TargetHost
    /// take precedence.
    /// </summary>
    public QuicConfiguration Configuration { get; set; } = new();

    /// <summary>Local address to bind to; null: any address of the remote's family.</summary>
    public IPEndPoint? LocalEndPoint { get; set; }

    /// <summary>Session tickets and tokens between connections (resumption, 0-RTT). Null: none.</summary>
    public IQuicSessionStore? SessionStore { get; set; }

    /// <summary>How long the handshake may take. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Error code of RESET_STREAM / STOP_SENDING when a stream is aborted without an explicit code. Default 0.</summary>
    public long DefaultStreamErrorCode { get; set; }

    /// <summary>Error code of CONNECTION_CLOSE when a connection is aborted without an explicit code. Default 0.</summary>
    public long DefaultCloseErrorCode { get; set; }

    /// <summary>Creates the engine's "KestrelQuic" logger for the connections (lifecycle, handshake failures, protocol errors). Null: no logging.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }
}
