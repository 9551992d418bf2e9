using KestrelQuic.Crypto;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tls;

/// <summary>Callbacks from <see cref="TlsHandshake"/> to the QUIC connection (RFC 9001 §4.1.3 / §4.1.4).</summary>
internal interface ITlsHandshakeHost
{
    /// <summary>Handshake bytes to send in CRYPTO frames at <paramref name="level"/>, in order.</summary>
    void OnHandshakeData(EncryptionLevel level, ReadOnlySpan<byte> data);

    /// <summary>A traffic secret is available (ZeroRtt, Handshake or OneRtt).</summary>
    void OnSecret(EncryptionLevel level, TrafficDirection direction, CipherSuite suite, ReadOnlySpan<byte> secret);

    /// <summary>Client: a NewSessionTicket arrived.</summary>
    void OnSessionTicket(TlsSessionTicket ticket);

    /// <summary>
    /// Server: the client's quic_transport_parameters, before any handshake secret is derived. Returns replacement
    /// local transport parameters (e.g. after compatible version negotiation, RFC 9368 §2.3) or null to keep them.
    /// </summary>
    byte[]? OnClientTransportParameters(byte[] parameters) => null;
}
