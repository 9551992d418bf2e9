using System.Collections.Concurrent;
using System.Globalization;

namespace KestrelQuic.Http;

/// <summary>
/// An HTTP/3 (RFC 9114) <see cref="HttpMessageHandler"/> on the KestrelQuic engine, for places where
/// <c>SocketsHttpHandler</c> cannot do HTTP/3 (it needs libmsquic). Every request goes over HTTP/3, whatever
/// <see cref="HttpRequestMessage.Version"/> says; responses have <see cref="HttpResponseMessage.Version"/> 3.0.
/// </summary>
/// <remarks>
/// Connections are pooled per server and opened on demand. Request and response bodies are streamed; trailers land in
/// <see cref="HttpResponseMessage.TrailingHeaders"/> once the body was read to the end. Failures are
/// <see cref="HttpRequestException"/> (or <see cref="HttpIOException"/> while reading a body) carrying the HTTP/3
/// error code in <see cref="Exception.Data"/> under <see cref="Http3ErrorCodeKey"/> (see <see cref="TryGetHttp3ErrorCode"/>),
/// with the <see cref="QuicException"/> as inner exception when QUIC reported the failure. Requests the server did not
/// process (GOAWAY, H3_REQUEST_REJECTED) are retried on another connection.
/// </remarks>
public sealed class ManagedHttp3Handler : HttpMessageHandler
{
    /// <summary>Key of <see cref="Exception.Data"/> under which failures carry the HTTP/3 error code (a <see cref="long"/>).</summary>
    public const string Http3ErrorCodeKey = Http3Errors.ErrorCodeKey;

    private readonly Http3HandlerOptions _options;
    private readonly IQuicSessionStore _sessionStore;
    private readonly ConcurrentDictionary<string, Http3ConnectionPool> _pools = new(StringComparer.Ordinal);
    private volatile bool _disposed;

    /// <summary>Creates a handler with default options (certificates validated against the system trust store).</summary>
    public ManagedHttp3Handler()
        : this(new Http3HandlerOptions())
    {
    }

    /// <summary>Creates a handler; <paramref name="options"/> are copied.</summary>
    public ManagedHttp3Handler(Http3HandlerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Clone();
        _options.Validate();
        _sessionStore = _options.SessionStore ?? new InMemoryQuicSessionStore();
    }

    /// <summary>Connections opened so far to all servers.</summary>
    public int ConnectionsOpened
    {
        get
        {
            int total = 0;
            foreach (Http3ConnectionPool pool in _pools.Values)
            {
                total += pool.ConnectionsOpened;
            }

            return total;
        }
    }

    /// <summary>The QUIC connections currently pooled (diagnostics and tests).</summary>
    internal IReadOnlyList<QuicConnection> GetQuicConnections() => [.. GetHttp3Connections().Select(c => c.Quic)];

    /// <summary>The HTTP/3 connections currently pooled (tests).</summary>
    internal IReadOnlyList<Http3ClientConnection> GetHttp3Connections() => [.. _pools.Values.SelectMany(p => p.GetConnections())];

    /// <summary>Finds the HTTP/3 error code carried by <paramref name="exception"/> or one of its inner exceptions.</summary>
    public static bool TryGetHttp3ErrorCode(Exception? exception, out long errorCode)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e.Data[Http3ErrorCodeKey] is long code)
            {
                errorCode = code;
                return true;
            }

            if (e is HttpProtocolException protocol)
            {
                errorCode = protocol.ErrorCode;
                return true;
            }
        }

        errorCode = 0;
        return false;
    }

    /// <inheritdoc />
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendCoreAsync(request, null, 0, cancellationToken);

    /// <summary>
    /// Sends <paramref name="request"/> over HTTP/3, connecting to <paramref name="connectHost"/>:<paramref name="connectPort"/>
    /// (an alternative service, RFC 7838) instead of the request URI's authority when given; the TLS server name and
    /// :authority stay the origin's.
    /// </summary>
    internal async Task<HttpResponseMessage> SendCoreAsync(HttpRequestMessage request, string? connectHost, int connectPort, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Uri? uri = request.RequestUri;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            throw new InvalidOperationException("The request URI must be absolute.");
        }

        if (!uri.Scheme.Equals(Uri.UriSchemeHttps, StringComparison.OrdinalIgnoreCase))
        {
            throw new HttpRequestException(HttpRequestError.Unknown, $"HTTP/3 needs an https URI; got '{uri.Scheme}'.");
        }

        string origin = uri.HostNameType == UriHostNameType.IPv6 ? uri.IdnHost.Trim('[', ']') : uri.IdnHost;
        string host = connectHost ?? origin;
        int port = connectHost is null ? uri.Port : connectPort;
        string key = host + ":" + port.ToString(CultureInfo.InvariantCulture) + "/" + origin;
        Http3ConnectionPool pool = _pools.GetOrAdd(
            key,
            static (_, state) => new Http3ConnectionPool(state.Options, state.Store, state.Host, state.Port, state.Origin),
            (Options: _options, Store: _sessionStore, Host: host, Port: port, Origin: origin));

        for (int attempt = 0; ; attempt++)
        {
            Http3ClientConnection connection = await pool.GetConnectionAsync(cancellationToken).ConfigureAwait(false);
            var stream = new Http3RequestStream(connection, request, _options);
            try
            {
                return await stream.SendAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Http3RetryException e)
            {
                if (attempt >= _options.MaxRetries || cancellationToken.IsCancellationRequested)
                {
                    throw new HttpRequestException(HttpRequestError.ConnectionError, $"{e.Message} Gave up after {attempt + 1} attempts.", e.InnerException ?? e);
                }
            }
        }
    }

    /// <inheritdoc />
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, cancellationToken).GetAwaiter().GetResult();

    /// <summary>Closes every connection (H3_NO_ERROR).</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            foreach (Http3ConnectionPool pool in _pools.Values)
            {
                pool.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }

            _pools.Clear();
        }

        base.Dispose(disposing);
    }
}
