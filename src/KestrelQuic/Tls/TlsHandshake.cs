using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

/// <summary>
/// TLS 1.3 handshake for QUIC (RFC 8446/9846 carried per RFC 9001 §4): no record layer, messages travel in CRYPTO frames
/// per encryption level, secrets are handed to the connection. Sans-IO: input via <see cref="ProcessCryptoData"/>, output via
/// <see cref="ITlsHandshakeHost"/>.
/// </summary>
internal sealed partial class TlsHandshake : IDisposable
{
    private const ushort LegacyVersion = 0x0303;
    private const ushort Tls13 = 0x0304;
    private const byte PskDheKe = 1;
    private const uint QuicMaxEarlyDataSize = 0xffffffff; // RFC 9001 §4.6.1
    private const uint MaxTicketLifetimeSeconds = 604800; // RFC 8446 §4.6.1

    // SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3).
    private static readonly byte[] s_helloRetryRequestRandom = Convert.FromHexString("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C");

    private readonly TlsOptions _options;
    private readonly ITlsHandshakeHost _host;
    private readonly Transcript _transcript = new();
    private readonly TlsMessageWriter _writer = new();
    private readonly byte[] _clientRandom = new byte[32];
    private byte[] _inBuffer = new byte[1024];
    private int _inLength;
    private EncryptionLevel _inLevel;
    private State _state;
    private byte[] _localTransportParameters = [];
    private KeySchedule? _keySchedule;
    private KeyExchange? _keyExchange;
    private CipherSuite _suite;
    private byte[]? _clientHandshakeSecret;
    private byte[]? _serverHandshakeSecret;
    private byte[]? _clientApplicationSecret;
    private byte[]? _serverApplicationSecret;
    private byte[]? _resumptionMasterSecret;
    private bool _certificateRequested;

    public TlsHandshake(TlsOptions options, ITlsHandshakeHost host)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(host);
        _options = options;
        _host = host;
        IsClient = options.IsClient;
    }

    private enum State
    {
        NotStarted,
        ClientWaitServerHello,
        ClientWaitEncryptedExtensions,
        ClientWaitCertificateOrCertificateRequest,
        ClientWaitCertificate,
        ClientWaitCertificateVerify,
        ClientWaitFinished,
        ClientConnected,
        ServerWaitClientHello,
        ServerWaitSecondClientHello,
        ServerWaitCertificate,
        ServerWaitCertificateVerify,
        ServerWaitFinished,
        ServerConnected,
        Failed,
    }

    public bool IsClient { get; }

    /// <summary>Client: after sending Finished; server: after receiving the client's Finished.</summary>
    public bool IsHandshakeComplete { get; private set; }

    public string? NegotiatedApplicationProtocol { get; private set; }

    public CipherSuite? NegotiatedCipherSuite { get; private set; }

    public NamedGroup? NegotiatedGroup { get; private set; }

    /// <summary>SNI received (server) or sent (client).</summary>
    public string? ServerName { get; private set; }

    /// <summary>The peer's raw quic_transport_parameters extension (RFC 9001 §8.2).</summary>
    public byte[]? PeerTransportParameters { get; private set; }

    public X509Certificate2? PeerCertificate { get; private set; }

    public X509Certificate2Collection? PeerCertificateChain { get; private set; }

    /// <summary>A PSK (session ticket) was accepted.</summary>
    public bool IsResumed { get; private set; }

    public EarlyDataStatus EarlyData { get; private set; }

    /// <summary>Server: why offered early data was rejected (<see cref="EarlyDataRejection.None"/> when accepted or not offered).</summary>
    internal EarlyDataRejection EarlyDataRejection { get; private set; }

    public bool HelloRetryRequestUsed { get; private set; }

    /// <summary>Server: application data of the ticket that was accepted.</summary>
    public byte[]? ResumedTicketApplicationData { get; private set; }

    /// <summary>The alert the handshake failed with, if any.</summary>
    public TlsAlert? FailureAlert { get; private set; }

    /// <summary>Diagnostic text for <see cref="FailureAlert"/>.</summary>
    public string? FailureReason { get; private set; }

    /// <summary>The failure was a handshake message larger than <see cref="TlsOptions.MaxHandshakeMessageSize"/> (the connection may use CRYPTO_BUFFER_EXCEEDED).</summary>
    public bool HandshakeMessageTooLarge { get; private set; }

    /// <summary>Client: emits ClientHello (and the 0-RTT secret when resuming with early data). Server: stores the transport parameters.</summary>
    public void Start(ReadOnlySpan<byte> localQuicTransportParameters)
    {
        if (_state != State.NotStarted)
        {
            throw new InvalidOperationException("Start was already called.");
        }

        _localTransportParameters = localQuicTransportParameters.ToArray();
        if (IsClient)
        {
            ClientStart();
        }
        else
        {
            _state = State.ServerWaitClientHello;
        }
    }

    /// <summary>Feeds in-order CRYPTO stream bytes of one level. Returns null on success or the alert to send; never throws on peer input.</summary>
    public TlsAlert? ProcessCryptoData(EncryptionLevel level, ReadOnlySpan<byte> data)
    {
        if (FailureAlert is { } failed)
        {
            return failed;
        }

        if (_state == State.NotStarted)
        {
            throw new InvalidOperationException("Start must be called first.");
        }

        try
        {
            // A message must not span a key change (RFC 8446 §5.1 applied to CRYPTO streams, RFC 9001 §4.1.3).
            if (_inLength > 0 && level != _inLevel)
            {
                throw new TlsAlertException(TlsAlert.UnexpectedMessage, "partial handshake message followed by data at another level");
            }

            _inLevel = level;
            Append(data);
            int offset = 0;
            while (_inLength - offset >= 4)
            {
                int bodyLength = (_inBuffer[offset + 1] << 16) | (_inBuffer[offset + 2] << 8) | _inBuffer[offset + 3];
                if (bodyLength > _options.MaxHandshakeMessageSize)
                {
                    HandshakeMessageTooLarge = true;
                    throw new TlsAlertException(TlsAlert.InternalError, $"handshake message of {bodyLength} bytes exceeds the limit");
                }

                if (_inLength - offset < 4 + bodyLength)
                {
                    break;
                }

                ReadOnlySpan<byte> message = _inBuffer.AsSpan(offset, 4 + bodyLength);
                offset += 4 + bodyLength;
                ProcessMessage(level, message);
            }

            _inBuffer.AsSpan(offset, _inLength - offset).CopyTo(_inBuffer);
            _inLength -= offset;
            if (IsHandshakeComplete && _inLength == 0)
            {
                _inBuffer = []; // post-handshake messages (tickets) are rare; an idle connection keeps no buffer
            }

            return null;
        }
        catch (TlsAlertException e)
        {
            return Fail(e.Alert, e.Message);
        }
        catch (CryptographicException e)
        {
            return Fail(TlsAlert.HandshakeFailure, "cryptographic failure: " + e.Message);
        }
#pragma warning disable CA1031 // Peer input must never surface as an exception; anything unexpected becomes internal_error.
        catch (Exception e) when (e is not OutOfMemoryException)
#pragma warning restore CA1031
        {
            return Fail(TlsAlert.InternalError, e.GetType().Name + ": " + e.Message);
        }
    }

    public void Dispose()
    {
        _keyExchange?.Dispose();
        _transcript.Dispose();
    }

    /// <summary>
    /// Drops what only the handshake needed once it is complete (and a server has written its session ticket): key
    /// exchange, traffic secrets already installed, the message buffer and local parameters. A server also drops the
    /// key schedule; a client keeps it for tickets that may arrive later. Idle connections should not carry these.
    /// </summary>
    public void ReleaseHandshakeState()
    {
        if (!IsHandshakeComplete) return;
        _keyExchange?.Dispose();
        _keyExchange = null;
        _clientHandshakeSecret = null;
        _serverHandshakeSecret = null;
        _clientApplicationSecret = null;
        _serverApplicationSecret = null;
        _localTransportParameters = [];
        _writer.Release();
        if (!IsClient)
        {
            _keySchedule = null;
            _resumptionMasterSecret = null;
        }
    }

    private TlsAlert Fail(TlsAlert alert, string reason)
    {
        FailureAlert = alert;
        FailureReason = reason;
        _state = State.Failed;
        _inLength = 0;
        return alert;
    }

    private void Append(ReadOnlySpan<byte> data)
    {
        if (_inLength + data.Length > _inBuffer.Length)
        {
            Array.Resize(ref _inBuffer, Math.Max(_inBuffer.Length * 2, _inLength + data.Length));
        }

        data.CopyTo(_inBuffer.AsSpan(_inLength));
        _inLength += data.Length;
    }

    private void ProcessMessage(EncryptionLevel level, ReadOnlySpan<byte> message)
    {
        var type = (HandshakeType)message[0];
        if (type == HandshakeType.KeyUpdate)
        {
            // QUIC has its own key update; a TLS KeyUpdate is a connection error (RFC 9001 §6).
            throw new TlsAlertException(TlsAlert.UnexpectedMessage, "KeyUpdate is not allowed in QUIC");
        }

        switch (_state)
        {
            case State.ClientWaitServerHello:
                Expect(level, EncryptionLevel.Initial, type, HandshakeType.ServerHello);
                ClientProcessServerHello(message);
                break;
            case State.ClientWaitEncryptedExtensions:
                Expect(level, EncryptionLevel.Handshake, type, HandshakeType.EncryptedExtensions);
                ClientProcessEncryptedExtensions(message);
                break;
            case State.ClientWaitCertificateOrCertificateRequest:
                if (type == HandshakeType.CertificateRequest)
                {
                    Expect(level, EncryptionLevel.Handshake, type, HandshakeType.CertificateRequest);
                    ClientProcessCertificateRequest(message);
                }
                else
                {
                    Expect(level, EncryptionLevel.Handshake, type, HandshakeType.Certificate);
                    ProcessPeerCertificate(message);
                }

                break;
            case State.ClientWaitCertificate:
            case State.ServerWaitCertificate:
                Expect(level, EncryptionLevel.Handshake, type, HandshakeType.Certificate);
                ProcessPeerCertificate(message);
                break;
            case State.ClientWaitCertificateVerify:
            case State.ServerWaitCertificateVerify:
                Expect(level, EncryptionLevel.Handshake, type, HandshakeType.CertificateVerify);
                ProcessPeerCertificateVerify(message);
                break;
            case State.ClientWaitFinished:
                Expect(level, EncryptionLevel.Handshake, type, HandshakeType.Finished);
                ClientProcessFinished(message);
                break;
            case State.ClientConnected:
                Expect(level, EncryptionLevel.OneRtt, type, HandshakeType.NewSessionTicket);
                ClientProcessNewSessionTicket(message);
                break;
            case State.ServerWaitClientHello:
            case State.ServerWaitSecondClientHello:
                Expect(level, EncryptionLevel.Initial, type, HandshakeType.ClientHello);
                ServerProcessClientHello(message);
                break;
            case State.ServerWaitFinished:
                Expect(level, EncryptionLevel.Handshake, type, HandshakeType.Finished);
                ServerProcessFinished(message);
                break;
            default:
                throw new TlsAlertException(TlsAlert.UnexpectedMessage, $"unexpected {type} in state {_state}");
        }
    }

    private void Expect(EncryptionLevel level, EncryptionLevel expectedLevel, HandshakeType type, HandshakeType expectedType)
    {
        if (type != expectedType || level != expectedLevel)
        {
            throw new TlsAlertException(TlsAlert.UnexpectedMessage, $"unexpected {type} at {level} in state {_state} (expected {expectedType} at {expectedLevel})");
        }
    }

    /// <summary>Sends the message in <see cref="_writer"/> at <paramref name="level"/>, adding it to the transcript first.</summary>
    private void Emit(EncryptionLevel level, bool addToTranscript = true)
    {
        ReadOnlySpan<byte> message = _writer.Written;
        if (addToTranscript)
        {
            _transcript.Add(message);
        }

        _host.OnHandshakeData(level, message);
        _writer.Clear();
    }

    private void InstallSecret(EncryptionLevel level, TrafficDirection direction, CipherSuite suite, byte[] secret, string keyLogLabel)
    {
        _options.KeyLogCallback?.Invoke(keyLogLabel, _clientRandom, secret);
        _host.OnSecret(level, direction, suite, secret);
    }

    private static TlsAlertException Alert(TlsAlert alert, string reason) => new(alert, reason);

    private static TlsAlertException DecodeError(string what) => new(TlsAlert.DecodeError, "malformed " + what);

    /// <summary>Reads a message body: skips the 4-byte header.</summary>
    private static SpanReader BodyReader(ReadOnlySpan<byte> message) => new(message[4..]);

    private static List<ushort> ReadUInt16List(ReadOnlySpan<byte> extension, int lengthBytes, string what)
    {
        var r = new SpanReader(extension);
        if (!r.TryReadVector(lengthBytes, out ReadOnlySpan<byte> list) || !r.IsEmpty || list.IsEmpty || (list.Length & 1) != 0)
        {
            throw DecodeError(what);
        }

        return ReadUInt16Values(list);
    }

    private static List<ushort> ReadUInt16Values(ReadOnlySpan<byte> list)
    {
        var values = new List<ushort>(list.Length / 2);
        for (int i = 0; i < list.Length; i += 2)
        {
            values.Add((ushort)((list[i] << 8) | list[i + 1]));
        }

        return values;
    }

    private static List<string> ReadAlpnList(ReadOnlySpan<byte> extension)
    {
        // ProtocolName protocol_name_list<2..2^16-1>; ProtocolName opaque<1..2^8-1> (RFC 7301 §3.1).
        var r = new SpanReader(extension);
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> list) || !r.IsEmpty || list.IsEmpty)
        {
            throw DecodeError("application_layer_protocol_negotiation");
        }

        var names = new List<string>();
        var lr = new SpanReader(list);
        while (!lr.IsEmpty)
        {
            if (!lr.TryReadVector(1, out ReadOnlySpan<byte> name) || name.IsEmpty)
            {
                throw DecodeError("application_layer_protocol_negotiation");
            }

            names.Add(System.Text.Encoding.ASCII.GetString(name));
        }

        return names;
    }

    private void WriteAlpnExtension(IEnumerable<string> protocols)
    {
        int e = _writer.BeginExtension(ExtensionType.ApplicationLayerProtocolNegotiation);
        int list = _writer.BeginVector(2);
        foreach (string protocol in protocols)
        {
            int v = _writer.BeginVector(1);
            _writer.WriteBytes(System.Text.Encoding.ASCII.GetBytes(protocol));
            _writer.EndVector(v);
        }

        _writer.EndVector(list);
        _writer.EndExtension(e);
    }

    private void WriteCertificate(TlsCertificate? certificate)
    {
        int m = _writer.BeginMessage(HandshakeType.Certificate);
        _writer.WriteUInt8(0); // certificate_request_context: empty during the handshake (RFC 8446 §4.4.2)
        int list = _writer.BeginVector(3);
        if (certificate is not null)
        {
            foreach (byte[] der in certificate.CertificateChain)
            {
                int v = _writer.BeginVector(3);
                _writer.WriteBytes(der);
                _writer.EndVector(v);
                _writer.WriteUInt16(0); // no per-entry extensions
            }
        }

        _writer.EndVector(list);
        _writer.EndVector(m);
    }

    private void WriteCertificateVerify(TlsCertificate certificate, SignatureScheme scheme, bool server)
    {
        byte[] content = SignatureAlgorithms.BuildSignedContent(server, _transcript.CurrentHash());
        byte[] signature = certificate.Sign(scheme, content);
        int m = _writer.BeginMessage(HandshakeType.CertificateVerify);
        _writer.WriteUInt16((ushort)scheme);
        int v = _writer.BeginVector(2);
        _writer.WriteBytes(signature);
        _writer.EndVector(v);
        _writer.EndVector(m);
    }

    private void WriteFinished(byte[] baseKey)
    {
        byte[] verifyData = _keySchedule!.ComputeFinished(baseKey, _transcript.CurrentHash());
        int m = _writer.BeginMessage(HandshakeType.Finished);
        _writer.WriteBytes(verifyData);
        _writer.EndVector(m);
    }

    /// <summary>First scheme the key supports that the peer offered and we allow.</summary>
    private SignatureScheme? ChooseSignatureScheme(TlsCertificate certificate, List<ushort> peerSchemes)
    {
        foreach (SignatureScheme scheme in certificate.SupportedSchemes)
        {
            if (peerSchemes.Contains((ushort)scheme) && _options.SignatureAlgorithms.Contains(scheme) && SignatureAlgorithms.IsHandshakeScheme(scheme))
            {
                return scheme;
            }
        }

        return null;
    }

    /// <summary>Certificate (RFC 8446 §4.4.2) from the peer, validated per <see cref="TlsOptions"/>.</summary>
    private void ProcessPeerCertificate(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadVector(1, out ReadOnlySpan<byte> context) || !r.TryReadVector(3, out ReadOnlySpan<byte> list) || !r.IsEmpty)
        {
            throw DecodeError("Certificate");
        }

        if (!context.IsEmpty)
        {
            throw Alert(TlsAlert.IllegalParameter, "non-empty certificate_request_context in handshake Certificate");
        }

        var certificates = new X509Certificate2Collection();
        var lr = new SpanReader(list);
        while (!lr.IsEmpty)
        {
            if (!lr.TryReadVector(3, out ReadOnlySpan<byte> der) || der.IsEmpty || !lr.TryReadVector(2, out ReadOnlySpan<byte> extensions))
            {
                throw DecodeError("CertificateEntry");
            }

            // We request neither OCSP status nor SCTs, so any entry extension is unsolicited (RFC 8446 §4.4.2).
            if (ExtensionBlock.Parse(extensions).Count != 0)
            {
                throw Alert(TlsAlert.UnsupportedExtension, "unsolicited CertificateEntry extension");
            }

            try
            {
                certificates.Add(X509CertificateLoader.LoadCertificate(der));
            }
            catch (CryptographicException)
            {
                throw Alert(TlsAlert.BadCertificate, "unparseable certificate");
            }
        }

        _transcript.Add(message);
        if (certificates.Count == 0)
        {
            if (IsClient)
            {
                throw Alert(TlsAlert.DecodeError, "empty server Certificate"); // RFC 8446 §4.4.2.4
            }

            if (_options.ClientCertificateMode == ClientCertificateMode.Require)
            {
                throw Alert(TlsAlert.CertificateRequired, "client certificate required");
            }

            _state = State.ServerWaitFinished;
            return;
        }

        TlsAlert? alert = CertificateValidation.Validate(_options, certificates[0], certificates, peerIsServer: IsClient, IsClient ? _options.ServerName : null, out string? reason);
        if (alert is { } a)
        {
            throw Alert(a, $"{(IsClient ? "server" : "client")} certificate rejected: {reason ?? "validation failed"}");
        }

        PeerCertificate = certificates[0];
        PeerCertificateChain = certificates;
        _state = IsClient ? State.ClientWaitCertificateVerify : State.ServerWaitCertificateVerify;
    }

    /// <summary>CertificateVerify (RFC 8446 §4.4.3) from the peer.</summary>
    private void ProcessPeerCertificateVerify(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadUInt16(out ushort scheme) || !r.TryReadVector(2, out ReadOnlySpan<byte> signature) || !r.IsEmpty)
        {
            throw DecodeError("CertificateVerify");
        }

        if (!SignatureAlgorithms.IsHandshakeScheme((SignatureScheme)scheme) || !_options.SignatureAlgorithms.Contains((SignatureScheme)scheme))
        {
            throw Alert(TlsAlert.IllegalParameter, $"signature scheme 0x{scheme:x4} was not offered");
        }

        byte[] content = SignatureAlgorithms.BuildSignedContent(server: IsClient, _transcript.CurrentHash());
        if (SignatureAlgorithms.Verify(PeerCertificate!, (SignatureScheme)scheme, content, signature) is { } alert)
        {
            throw Alert(alert, "CertificateVerify signature check failed");
        }

        _transcript.Add(message);
        _state = IsClient ? State.ClientWaitFinished : State.ServerWaitFinished;
    }

    /// <summary>Checks a peer Finished (RFC 8446 §4.4.4) and adds it to the transcript.</summary>
    private void VerifyPeerFinished(ReadOnlySpan<byte> message, byte[] baseKey)
    {
        ReadOnlySpan<byte> verifyData = message[4..];
        if (verifyData.Length != _keySchedule!.HashLength)
        {
            throw DecodeError("Finished");
        }

        byte[] expected = _keySchedule.ComputeFinished(baseKey, _transcript.CurrentHash());
        if (!CryptographicOperations.FixedTimeEquals(expected, verifyData))
        {
            throw Alert(TlsAlert.DecryptError, "Finished verify_data mismatch");
        }

        _transcript.Add(message);
    }

    private void DeriveHandshakeTrafficSecrets(ReadOnlySpan<byte> sharedSecret)
    {
        _keySchedule!.DeriveHandshakeSecret(sharedSecret);
        byte[] hash = _transcript.CurrentHash();
        _clientHandshakeSecret = _keySchedule.DeriveSecret(_keySchedule.HandshakeSecret!, "c hs traffic"u8, hash);
        _serverHandshakeSecret = _keySchedule.DeriveSecret(_keySchedule.HandshakeSecret!, "s hs traffic"u8, hash);
    }

    /// <summary>Application traffic secrets over the transcript through the server Finished (RFC 8446 §7.1).</summary>
    private void DeriveApplicationTrafficSecrets()
    {
        _keySchedule!.DeriveMasterSecret();
        byte[] hash = _transcript.CurrentHash();
        _clientApplicationSecret = _keySchedule.DeriveSecret(_keySchedule.MasterSecret!, "c ap traffic"u8, hash);
        _serverApplicationSecret = _keySchedule.DeriveSecret(_keySchedule.MasterSecret!, "s ap traffic"u8, hash);
    }

    private void DeriveResumptionMasterSecret()
    {
        _resumptionMasterSecret = _keySchedule!.DeriveSecret(_keySchedule.MasterSecret!, "res master"u8, _transcript.CurrentHash());
        _transcript.Release(); // nothing after this point hashes the transcript
    }

    private static List<(ushort Group, byte[] Key)> ReadClientKeyShares(ReadOnlySpan<byte> extension)
    {
        var r = new SpanReader(extension);
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> list) || !r.IsEmpty)
        {
            throw DecodeError("key_share");
        }

        var shares = new List<(ushort, byte[])>();
        var lr = new SpanReader(list);
        while (!lr.IsEmpty)
        {
            if (!lr.TryReadUInt16(out ushort group) || !lr.TryReadVector(2, out ReadOnlySpan<byte> key) || key.IsEmpty)
            {
                throw DecodeError("KeyShareEntry");
            }

            shares.Add((group, key.ToArray()));
        }

        return shares;
    }
}
