using KestrelQuic.Configuration;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Connection;

/// <summary>
/// Server connections whose configuration is chosen per connection (certificate by SNI, ALPN, limits): the handshake
/// waits at the ClientHello until <see cref="ResumeHandshake"/> supplies the configuration, which may come from an
/// asynchronous callback. Packets keep being acknowledged meanwhile; the idle timer bounds the wait.
/// </summary>
internal sealed partial class QuicConnectionCore
{
    private bool _awaitingConfiguration;
    private byte[]? _clientHelloBytes;
    private int _clientHelloLength;

    /// <summary>The parsed ClientHello once it arrived (servers created with deferred configuration).</summary>
    public ClientHelloInfo? ClientHello { get; private set; }

    /// <summary>True while the handshake waits for <see cref="ResumeHandshake"/>.</summary>
    public bool IsAwaitingConfiguration => _awaitingConfiguration && ClientHello is not null;

    /// <summary>Collects the Initial CRYPTO stream until the ClientHello is whole, then raises <see cref="ConnectionEventKind.ClientHelloReceived"/>.</summary>
    private bool BufferClientHello(ReadOnlySpan<byte> data, out TransportError error)
    {
        error = default;
        if (ClientHello is not null)
        {
            // Nothing may follow the ClientHello at the Initial level before our reply.
            if (!data.IsEmpty) error = TransportError.Crypto((byte)TlsAlert.UnexpectedMessage, "data after ClientHello");
            return data.IsEmpty;
        }

        int needed = _clientHelloLength + data.Length;
        if (needed > _config.MaxCryptoBufferSize)
        {
            error = new TransportError(TransportErrorCode.CryptoBufferExceeded, 0, "ClientHello too large");
            return false;
        }

        if (_clientHelloBytes is null || _clientHelloBytes.Length < needed)
        {
            Array.Resize(ref _clientHelloBytes, Math.Max(needed, 2048));
        }

        data.CopyTo(_clientHelloBytes.AsSpan(_clientHelloLength));
        _clientHelloLength = needed;
        if (_clientHelloLength < 4) return true;
        int messageLength = 4 + (_clientHelloBytes[1] << 16 | _clientHelloBytes[2] << 8 | _clientHelloBytes[3]);
        if (_clientHelloBytes[0] != 1)
        {
            error = TransportError.Crypto((byte)TlsAlert.UnexpectedMessage, "expected ClientHello");
            return false;
        }

        if (_clientHelloLength < messageLength) return true;
        if (_clientHelloLength > messageLength || !ClientHelloInfo.TryParse(_clientHelloBytes.AsSpan(0, messageLength), out ClientHelloInfo? info))
        {
            error = TransportError.Crypto((byte)TlsAlert.DecodeError, "malformed ClientHello");
            return false;
        }

        ClientHello = info;
        Emit(ConnectionEventKind.ClientHelloReceived);
        return true;
    }

    /// <summary>
    /// Continues a deferred handshake with the configuration chosen for this connection (certificate, ALPN, limits;
    /// the endpoint-wide connection ID length and versions stay). Does nothing if the handshake is not waiting.
    /// </summary>
    public void ResumeHandshake(QuicConfiguration configuration, long now)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        if (!IsAwaitingConfiguration || State != ConnectionState.Handshake) return;
        _now = now;
        configuration.ThrowIfInvalid();
        if (configuration.ConnectionIdLength != _config.ConnectionIdLength || !configuration.SupportedVersions.SequenceEqual(_config.SupportedVersions))
        {
            // The connection IDs already issued (and the endpoint's routing) use the original length; the versions stay too.
            configuration = configuration.Clone();
            configuration.ConnectionIdLength = _config.ConnectionIdLength;
            configuration.SupportedVersions = new List<uint>(_config.SupportedVersions);
        }

        _awaitingConfiguration = false;
        _config = configuration;
        // The limit advertised below must be the one enforced on the peer's NEW_CONNECTION_ID frames.
        _connectionIds.LocalActiveLimit = configuration.ActiveConnectionIdLimit;
        _idleTimeoutTicks = configuration.IdleTimeout.Ticks;
        ResetIdleTimer(now);

        ConnectionIdEntry initialId = _connectionIds.LocalIds[0];
        _localParameters = CreateLocalTransportParameters();
        SetServerConnectionIdParameters(initialId);
        InitializeStreams();
        _qlog?.ParametersSet(now, local: true, _localParameters, null);
        KeyLog = _tracers?.CreateKeyLog(configuration) ?? KeyLog;
        _tls = new TlsHandshake(TlsOptionsFactory.Create(configuration, isServer: true, this), new TlsHost(this));
        _tls.Start(_localParameters.Encode());

        byte[] hello = _clientHelloBytes!;
        int length = _clientHelloLength;
        _clientHelloBytes = null;
        TlsAlert? alert = _tls.ProcessCryptoData(EncryptionLevel.Initial, hello.AsSpan(0, length));
        if (alert is TlsAlert a)
        {
            CloseWithError(TlsFailure(a), now);
            return;
        }

        AfterTlsProgress(now);
    }

    /// <summary>Ends a deferred handshake that the layer above refused (its callback failed): handshake_failure alert.</summary>
    public void RefuseHandshake(string reason, long now)
    {
        _awaitingConfiguration = false;
        CloseWithError(TransportError.Crypto((byte)TlsAlert.HandshakeFailure, reason), now);
    }
}
