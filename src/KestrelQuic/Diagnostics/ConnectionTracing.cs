using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// Creates the optional trace sinks of a connection. Supplied by the layer above the sans-IO core (through
/// <see cref="Endpoint.EndpointSettings.Tracers"/>); the core only calls the sinks, it never does I/O itself.
/// </summary>
internal interface IConnectionTracerFactory
{
    /// <summary>A sink for NSS key log lines, or null when secrets are not logged for this configuration.</summary>
    IKeyLogSink? CreateKeyLog(QuicConfiguration configuration);

    /// <summary>A qlog sink for one connection created at <paramref name="now"/> (its time origin), or null when qlog is off.</summary>
    IQlogSink? CreateQlog(QuicConfiguration configuration, bool isServer, ReadOnlySpan<byte> originalDestinationConnectionId, long now);
}

/// <summary>Receives TLS secrets as they are derived (the SSLKEYLOGFILE format: label, client random, secret).</summary>
internal interface IKeyLogSink
{
    void Write(string label, ReadOnlySpan<byte> clientRandom, ReadOnlySpan<byte> secret);
}

/// <summary>
/// qlog events of one connection (draft-ietf-quic-qlog-quic-events). Called synchronously by the core, which
/// checks for null first: an absent sink costs one null check. Events without a time use the last time seen.
/// </summary>
internal interface IQlogSink
{
    void ConnectionStarted(long now, EndPoint? remote, uint version);

    void ParametersSet(long now, bool local, TransportParameters parameters, string? tlsCipher);

    /// <summary>A packet about to be protected; <paramref name="payload"/> is its plaintext frames.</summary>
    void PacketSent(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload);

    /// <summary>A packet just decrypted; <paramref name="payload"/> is its plaintext frames.</summary>
    void PacketReceived(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload);

    /// <summary>Current recovery state; the sink logs only what changed.</summary>
    void MetricsUpdated(long now, RttEstimator rtt, ICongestionController congestion, int ptoCount);

    void PacketLost(PacketNumberSpace space, long packetNumber);

    /// <summary>A TLS secret installed (<paramref name="keyPhase"/> &lt; 0) or a 1-RTT key update.</summary>
    void KeyUpdated(EncryptionLevel level, bool clientSecret, bool localUpdate, long keyPhase);

    void StateUpdated(ConnectionState oldState, ConnectionState newState);

    void HandshakeConfirmed();

    void ConnectionClosed(QuicCloseReason reason);

    /// <summary>
    /// An event of the protocol above QUIC (<see cref="QuicQlogTrace"/>): <paramref name="writeData"/> writes the members
    /// of its data object. Ignored once the trace is complete.
    /// </summary>
    void ApplicationEvent<TState>(long now, string name, TState state, Action<System.Text.Json.Utf8JsonWriter, TState> writeData);

    /// <summary>The connection is gone: write out what is buffered. Idempotent.</summary>
    void Complete();
}
