using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Headers;

namespace KestrelQuic.Http;

/// <summary>
/// Opt-in HTTP/3 discovery (RFC 7838, RFC 9114 §3.1.1): requests start on a fallback handler (by default a
/// <see cref="SocketsHttpHandler"/> speaking HTTP/1.1 or HTTP/2); once a response advertises <c>h3</c> in Alt-Svc, later
/// requests to that origin go over HTTP/3 through <see cref="ManagedHttp3Handler"/>. When the HTTP/3 connection
/// cannot be established (UDP blocked, nothing listening), the alternative is marked broken for
/// <see cref="BrokenAlternativeTimeout"/> and the request is sent through the fallback handler instead.
/// </summary>
public sealed class AltSvcHttp3Handler : HttpMessageHandler
{
    private readonly ManagedHttp3Handler _http3;
    private readonly HttpMessageInvoker _fallback;
    private readonly ConcurrentDictionary<string, Alternative> _alternatives = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, DateTime> _broken = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Creates the handler.</summary>
    /// <param name="options">Options of the HTTP/3 handler.</param>
    /// <param name="fallback">
    /// Handler for requests without a usable HTTP/3 alternative; null: a new <see cref="SocketsHttpHandler"/> (disposed
    /// with this handler) that trusts the server certificates the HTTP/3 connections trust (the certificate settings of
    /// <see cref="Http3HandlerOptions.Configuration"/>: trusted authorities, validation callback, system trust).
    /// </param>
    /// <param name="disposeFallback">Whether disposing this handler disposes <paramref name="fallback"/>.</param>
    public AltSvcHttp3Handler(Http3HandlerOptions options, HttpMessageHandler? fallback = null, bool disposeFallback = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        _http3 = new ManagedHttp3Handler(options);
        _fallback = new HttpMessageInvoker(fallback ?? CreateDefaultFallback(options.Configuration), fallback is null || disposeFallback);
    }

    /// <summary>How long an alternative that failed to connect is not tried again. Default 5 minutes.</summary>
    public TimeSpan BrokenAlternativeTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>The HTTP/3 handler used for origins with an <c>h3</c> alternative.</summary>
    public ManagedHttp3Handler Http3Handler => _http3;

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        Uri? uri = request.RequestUri;
        string? origin = uri is { IsAbsoluteUri: true } && uri.Scheme == Uri.UriSchemeHttps ? uri.IdnHost + ":" + uri.Port.ToString(CultureInfo.InvariantCulture) : null;
        if (origin is not null && _alternatives.TryGetValue(origin, out Alternative? alternative))
        {
            DateTime now = DateTime.UtcNow;
            if (alternative.Expires <= now)
            {
                _alternatives.TryRemove(origin, out _);
            }
            else if (!_broken.TryGetValue(origin, out DateTime brokenUntil) || brokenUntil <= now)
            {
                try
                {
                    HttpResponseMessage response = await _http3.SendCoreAsync(request, alternative.Host ?? uri!.IdnHost, alternative.Port, cancellationToken).ConfigureAwait(false);
                    _broken.TryRemove(origin, out _);
                    Learn(origin, response);
                    return response;
                }
                catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError && !cancellationToken.IsCancellationRequested)
                {
                    // The request never reached the server (connecting failed): fall back.
                    _broken[origin] = DateTime.UtcNow + BrokenAlternativeTimeout;
                }
            }
        }

        HttpResponseMessage fallbackResponse = await _fallback.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (origin is not null)
        {
            Learn(origin, fallbackResponse);
        }

        return fallbackResponse;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _http3.Dispose();
            _fallback.Dispose();
        }

        base.Dispose(disposing);
    }

    private static SocketsHttpHandler CreateDefaultFallback(KestrelQuic.Configuration.QuicConfiguration configuration)
    {
        var handler = new SocketsHttpHandler();
        if (TcpCertificateValidation.IsCustom(configuration))
        {
            // A copy: later changes to the caller's options do not apply, as for the HTTP/3 handler.
            KestrelQuic.Configuration.QuicConfiguration trust = configuration.Clone();
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, chain, errors) => TcpCertificateValidation.Validate(trust, certificate, chain, errors);
        }

        return handler;
    }

    private void Learn(string origin, HttpResponseMessage response)
    {
        if (!response.Headers.NonValidated.TryGetValues("Alt-Svc", out HeaderStringValues values))
        {
            return;
        }

        foreach (string value in values)
        {
            if (value.Trim().Equals("clear", StringComparison.OrdinalIgnoreCase))
            {
                _alternatives.TryRemove(origin, out _);
                return;
            }

            if (AltSvcParser.TryGetHttp3(value, out string? host, out int port, out TimeSpan maxAge))
            {
                _alternatives[origin] = new Alternative(host, port, DateTime.UtcNow + maxAge);
                return;
            }
        }
    }

    private sealed record Alternative(string? Host, int Port, DateTime Expires);
}

/// <summary>Reads Alt-Svc field values (RFC 7838 §3).</summary>
internal static class AltSvcParser
{
    private static readonly TimeSpan s_defaultMaxAge = TimeSpan.FromHours(24);

    /// <summary>The first <c>h3</c> alternative: host (null: the origin's), port and freshness (ma, default 24 h).</summary>
    public static bool TryGetHttp3(string value, out string? host, out int port, out TimeSpan maxAge)
    {
        foreach (string entry in SplitOutsideQuotes(value, ','))
        {
            string[] parts = [.. SplitOutsideQuotes(entry, ';')];
            int equals = parts[0].IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0 || !parts[0][..equals].Trim().Equals("h3", StringComparison.Ordinal))
            {
                continue;
            }

            string authority = parts[0][(equals + 1)..].Trim().Trim('"');
            int colon = authority.LastIndexOf(':');
            if (colon < 0 || !int.TryParse(authority.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is <= 0 or > 65535)
            {
                continue;
            }

            host = colon == 0 ? null : authority[..colon].Trim('[', ']');
            maxAge = s_defaultMaxAge;
            foreach (string parameter in parts.Skip(1))
            {
                string[] pair = parameter.Split('=', 2, StringSplitOptions.TrimEntries);
                if (pair.Length == 2 && pair[0].Equals("ma", StringComparison.OrdinalIgnoreCase)
                    && long.TryParse(pair[1].Trim('"'), NumberStyles.None, CultureInfo.InvariantCulture, out long seconds))
                {
                    maxAge = TimeSpan.FromSeconds(Math.Min(seconds, (long)TimeSpan.MaxValue.TotalSeconds / 2));
                }
            }

            return true;
        }

        host = null;
        port = 0;
        maxAge = default;
        return false;
    }

    private static IEnumerable<string> SplitOutsideQuotes(string value, char separator)
    {
        int start = 0;
        bool quoted = false;
        for (int i = 0; i < value.Length; i++)
        {
            char c = value[i];
            if (c == '"')
            {
                quoted = !quoted;
            }
            else if (c == '\\' && quoted)
            {
                i++;
            }
            else if (c == separator && !quoted)
            {
                yield return value[start..i].Trim();
                start = i + 1;
            }
        }

        yield return value[start..].Trim();
    }
}
