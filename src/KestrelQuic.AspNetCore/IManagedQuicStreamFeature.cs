namespace KestrelQuic.AspNetCore;

/// <summary>
/// The QUIC stream that carries an HTTP/3 request (<c>HttpContext.Features.Get&lt;IManagedQuicStreamFeature&gt;()</c>;
/// null for HTTP/1.1 and HTTP/2). Kestrel reaches it through the stream's connection features, which it falls back to
/// for every feature the request does not have itself.
/// </summary>
public interface IManagedQuicStreamFeature
{
    /// <summary>The stream. Kestrel owns its lifetime and its data: do not read, write, abort or dispose it.</summary>
    QuicStream Stream { get; }

    /// <summary>
    /// True when some of the request arrived in 0-RTT (TLS early data, RFC 9001 §4.6.1): the client sent it before the
    /// handshake proved anything, so a captured copy could be sent again (see README, "0-RTT and replay"). Same as
    /// <see cref="QuicStream.IsEarlyData"/>; <see cref="Microsoft.AspNetCore.Builder.EarlyDataApplicationBuilderExtensions.UseEarlyDataPolicy"/>
    /// answers unsafe early requests with 425 Too Early.
    /// </summary>
    bool IsEarlyData { get; }
}
