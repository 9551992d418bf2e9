using System.Net;
using KestrelQuic.Configuration;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Http;

/// <summary>Options of <see cref="ManagedHttp3Handler"/>.</summary>
/// <remarks>
/// The handler reads these when it is constructed (it copies them), so changing an instance afterwards has no effect
/// on handlers already created.
/// </remarks>
public sealed class Http3HandlerOptions
{
    /// <summary>
    /// Template for every connection's QUIC configuration (cloned per connection). Server certificates are validated by
    /// default (<see cref="QuicConfiguration.UseSystemTrust"/>, <see cref="QuicConfiguration.TrustedCertificateAuthorities"/>,
    /// <see cref="QuicConfiguration.CertificateValidationCallback"/>); the handler fills in the ALPN ("h3") and the
    /// server name when the template leaves them empty, and forbids server-initiated bidirectional streams.
    /// </summary>
    public QuicConfiguration Configuration { get; set; } = new();

    /// <summary>Local address to bind connections to (port 0: ephemeral). Null: any address of the server's family.</summary>
    public IPEndPoint? LocalEndPoint { get; set; }

    /// <summary>
    /// Requests in flight on one connection before another connection is opened: when every connection to a server is
    /// at this limit a new one is opened (up to <see cref="MaxConnectionsPerServer"/>). Once no more connections may be
    /// opened, further requests still go to the least loaded connection, where only the server's MAX_STREAMS limit
    /// makes them wait for a stream. Default 100.
    /// </summary>
    public int MaxConcurrentStreamsPerConnection { get; set; } = 100;

    /// <summary>
    /// Connections at most per server (scheme, host, port). When all are at their limit, a request goes to the least
    /// loaded one and waits there for the server to allow another stream. Default unlimited.
    /// </summary>
    public int MaxConnectionsPerServer { get; set; } = int.MaxValue;

    /// <summary>Where session tickets and address validation tokens are kept (resumption, 0-RTT). Null: one in-memory store per handler.</summary>
    public IQuicSessionStore? SessionStore { get; set; }

    /// <summary>
    /// Send requests with a safe method (GET, HEAD, OPTIONS, TRACE) and no body in 0-RTT when a session ticket allows
    /// it. 0-RTT data can be replayed by an attacker, which is why other requests (POST, but also PUT and DELETE) always
    /// wait for the handshake. Default false.
    /// </summary>
    public bool EnableEarlyData { get; set; }

    /// <summary>What we advertise as SETTINGS_QPACK_MAX_TABLE_CAPACITY: the dynamic table the server may use for our responses. Default 4096.</summary>
    public int QpackMaxTableCapacity { get; set; } = 4096;

    /// <summary>
    /// Largest dynamic table our QPACK encoder uses for request headers (further limited by the server's
    /// SETTINGS_QPACK_MAX_TABLE_CAPACITY); 0 encodes with the static table only. Default 4096.
    /// </summary>
    public int QpackEncoderMaxTableCapacity { get; set; } = 4096;

    /// <summary>What we advertise as SETTINGS_QPACK_BLOCKED_STREAMS. Default 100.</summary>
    public int QpackBlockedStreams { get; set; } = 100;

    /// <summary>
    /// Largest response header (and trailer) section accepted, in kilobytes (as SocketsHttpHandler.MaxResponseHeadersLength),
    /// measured as RFC 9114 §4.2.2 does; advertised as SETTINGS_MAX_FIELD_SECTION_SIZE. Default 64.
    /// </summary>
    public int MaxResponseHeadersLength { get; set; } = 64;

    /// <summary>How long connecting (resolution and QUIC handshake) may take. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a request with <c>Expect: 100-continue</c> waits for an interim response before sending its body anyway. Default 1 s.</summary>
    public TimeSpan Expect100ContinueTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How many times a request refused by the server without processing (GOAWAY, H3_REQUEST_REJECTED, a connection
    /// that closed before the request was sent) is retried on another connection. Default 3.
    /// </summary>
    public int MaxRetries { get; set; } = 3;

    /// <summary>
    /// Creates the engine's "KestrelQuic" logger for the handler's connections (lifecycle, handshake failures with the
    /// TLS alert, protocol errors, dropped datagrams, the secrets-log warning). Null: no logging.
    /// <c>UseManagedHttp3</c> fills it from the service provider when left null.
    /// </summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Copies the options (the QUIC configuration template is cloned too).</summary>
    public Http3HandlerOptions Clone()
    {
        var copy = (Http3HandlerOptions)MemberwiseClone();
        copy.Configuration = Configuration.Clone();
        return copy;
    }

    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(Configuration);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConcurrentStreamsPerConnection, 1, nameof(MaxConcurrentStreamsPerConnection));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnectionsPerServer, 1, nameof(MaxConnectionsPerServer));
        ArgumentOutOfRangeException.ThrowIfNegative(QpackMaxTableCapacity, nameof(QpackMaxTableCapacity));
        ArgumentOutOfRangeException.ThrowIfNegative(QpackBlockedStreams, nameof(QpackBlockedStreams));
        ArgumentOutOfRangeException.ThrowIfNegative(QpackEncoderMaxTableCapacity, nameof(QpackEncoderMaxTableCapacity));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxResponseHeadersLength, 1, nameof(MaxResponseHeadersLength));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxResponseHeadersLength, int.MaxValue / 1024, nameof(MaxResponseHeadersLength));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ConnectTimeout, TimeSpan.Zero, nameof(ConnectTimeout));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxRetries, nameof(MaxRetries));
        ArgumentOutOfRangeException.ThrowIfLessThan(Expect100ContinueTimeout, TimeSpan.Zero, nameof(Expect100ContinueTimeout));
    }
}
