namespace KestrelQuic.AspNetCore;

/// <summary>
/// The QUIC connection behind an HTTP/3 request (<c>HttpContext.Features.Get&lt;IManagedQuicConnectionFeature&gt;()</c>):
/// negotiated version and cipher suite, RTT, datagrams, key update, connection ID changes.
/// </summary>
public interface IManagedQuicConnectionFeature
{
    /// <summary>The connection. Kestrel owns its lifetime: do not close or dispose it.</summary>
    QuicConnection Connection { get; }
}
