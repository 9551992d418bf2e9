using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

internal sealed partial class TlsHandshake
{
    private TlsSessionTicket? _offeredTicket;
    private KeySchedule? _pskKeySchedule;
    private byte[]? _cookie;
    private CipherSuite _helloRetryRequestSuite;
    private List<ushort>? _peerSignatureAlgorithms;
    private bool _serverNameSent;

    private void ClientStart()
    {
        if (_options.Groups.Count == 0 || !KeyExchange.IsSupported(_options.Groups[0]))
        {
            throw new InvalidOperationException("The first configured group must be a supported key exchange group.");
        }

        if (_options.ApplicationProtocols.Count == 0)
        {
            throw new InvalidOperationException("QUIC requires at least one ALPN protocol (RFC 9001 §8.1).");
        }

        RandomNumberGenerator.Fill(_clientRandom);

        // Literal IP addresses are not permitted in SNI (RFC 6066 §3), but still drive the certificate check.
        ServerName = _options.ServerName;
        _serverNameSent = !string.IsNullOrEmpty(_options.ServerName) && !IPAddress.TryParse(_options.ServerName, out _);

        // The client sends a share for its most preferred group only; HelloRetryRequest covers the rest.
        _keyExchange = KeyExchange.Create(_options.Groups[0]);
        SelectTicket();

        WriteClientHello();
        Emit(EncryptionLevel.Initial, addToTranscript: false);

        if (EarlyData == EarlyDataStatus.Offered)
        {
            // client_early_traffic_secret = Derive-Secret(early, "c e traffic", ClientHello) (RFC 8446 §7.1).
            byte[] hash = _transcript.HashWith(_pskKeySchedule!.Hash, []);
            byte[] secret = _pskKeySchedule.DeriveSecret(_pskKeySchedule.EarlySecret, "c e traffic"u8, hash);
            InstallSecret(EncryptionLevel.ZeroRtt, TrafficDirection.Write, _offeredTicket!.CipherSuite, secret, "CLIENT_EARLY_TRAFFIC_SECRET");
        }

        _state = State.ClientWaitServerHello;
    }

    private void SelectTicket()
    {
        TlsSessionTicket? ticket = _options.SessionTicket;
        if (ticket is null || !_options.CipherSuites.Contains(ticket.CipherSuite))
        {
            return;
        }

        TimeSpan age = _options.TimeProvider.GetUtcNow() - ticket.ReceivedAt;
        if (age < TimeSpan.Zero || age > TimeSpan.FromSeconds(Math.Min(ticket.LifetimeSeconds, MaxTicketLifetimeSeconds))
            || !string.Equals(ticket.ServerName, _options.ServerName, StringComparison.OrdinalIgnoreCase))
        {
            return;
        }

        _offeredTicket = ticket;
        _pskKeySchedule = new KeySchedule(CipherSuiteInfo.Hash(ticket.CipherSuite), ticket.ResumptionSecret);
        if (_options.EnableEarlyData && ticket.MaxEarlyDataSize > 0 && ticket.ApplicationProtocol is { } alpn && _options.ApplicationProtocols.Contains(alpn))
        {
            EarlyData = EarlyDataStatus.Offered;
        }
    }

    /// <summary>ClientHello (RFC 8446 §4.1.2); also used for the retry after HelloRetryRequest. The message is added to the transcript.</summary>
    private void WriteClientHello()
    {
        TlsMessageWriter w = _writer;
        w.Clear();
        int m = w.BeginMessage(HandshakeType.ClientHello);
        w.WriteUInt16(LegacyVersion);
        w.WriteBytes(_clientRandom);
        w.WriteUInt8(0); // legacy_session_id: empty in QUIC (RFC 9001 §8.4)
        int v = w.BeginVector(2);
        foreach (CipherSuite suite in _options.CipherSuites)
        {
            w.WriteUInt16((ushort)suite);
        }

        w.EndVector(v);
        w.WriteUInt8(1); // legacy_compression_methods = { null }
        w.WriteUInt8(0);

        int extensions = w.BeginVector(2);
        int e;
        if (_serverNameSent)
        {
            e = w.BeginExtension(ExtensionType.ServerName);
            int list = w.BeginVector(2);
            w.WriteUInt8(0); // host_name
            v = w.BeginVector(2);
            w.WriteBytes(System.Text.Encoding.ASCII.GetBytes(_options.ServerName!));
            w.EndVector(v);
            w.EndVector(list);
            w.EndExtension(e);
        }

        e = w.BeginExtension(ExtensionType.SupportedVersions);
        v = w.BeginVector(1);
        w.WriteUInt16(Tls13);
        w.EndVector(v);
        w.EndExtension(e);

        e = w.BeginExtension(ExtensionType.SupportedGroups);
        v = w.BeginVector(2);
        foreach (NamedGroup group in _options.Groups)
        {
            w.WriteUInt16((ushort)group);
        }

        w.EndVector(v);
        w.EndExtension(e);

        e = w.BeginExtension(ExtensionType.SignatureAlgorithms);
        v = w.BeginVector(2);
        foreach (SignatureScheme scheme in _options.SignatureAlgorithms)
        {
            w.WriteUInt16((ushort)scheme);
        }

        w.EndVector(v);
        w.EndExtension(e);

        e = w.BeginExtension(ExtensionType.KeyShare);
        v = w.BeginVector(2);
        w.WriteUInt16((ushort)_keyExchange!.Group);
        int key = w.BeginVector(2);
        w.WriteBytes(_keyExchange.PublicKey);
        w.EndVector(key);
        w.EndVector(v);
        w.EndExtension(e);

        WriteAlpnExtension(_options.ApplicationProtocols);

        e = w.BeginExtension(ExtensionType.QuicTransportParameters);
        w.WriteBytes(_localTransportParameters);
        w.EndExtension(e);

        // Always offered so that the server may issue tickets (RFC 8446 §4.2.9); only psk_dhe_ke.
        e = w.BeginExtension(ExtensionType.PskKeyExchangeModes);
        v = w.BeginVector(1);
        w.WriteUInt8(PskDheKe);
        w.EndVector(v);
        w.EndExtension(e);

        if (_cookie is not null)
        {
            e = w.BeginExtension(ExtensionType.Cookie);
            w.WriteBytes(_cookie);
            w.EndExtension(e);
        }

        if (EarlyData == EarlyDataStatus.Offered)
        {
            e = w.BeginExtension(ExtensionType.EarlyData);
            w.EndExtension(e);
        }

        int binderLength = 0;
        if (_offeredTicket is not null)
        {
            // pre_shared_key MUST be the last extension (RFC 8446 §4.2.11).
            binderLength = _pskKeySchedule!.HashLength;
            long ageMs = (long)(_options.TimeProvider.GetUtcNow() - _offeredTicket.ReceivedAt).TotalMilliseconds;
            uint obfuscatedAge = unchecked((uint)ageMs + _offeredTicket.AgeAdd);
            e = w.BeginExtension(ExtensionType.PreSharedKey);
            v = w.BeginVector(2);
            int identity = w.BeginVector(2);
            w.WriteBytes(_offeredTicket.Ticket);
            w.EndVector(identity);
            w.WriteUInt32(obfuscatedAge);
            w.EndVector(v);
            v = w.BeginVector(2);
            int binder = w.BeginVector(1);
            w.WriteBytes(new byte[binderLength]);
            w.EndVector(binder);
            w.EndVector(v);
            w.EndExtension(e);
        }

        w.EndVector(extensions);
        w.EndVector(m);

        if (_offeredTicket is not null)
        {
            // The binder covers the transcript so far plus the ClientHello truncated before the binders list (RFC 8446 §4.2.11.2).
            Span<byte> message = w.WrittenMutable;
            int truncatedLength = message.Length - (2 + 1 + binderLength);
            byte[] hash = _transcript.HashWith(_pskKeySchedule!.Hash, message[..truncatedLength]);
            byte[] binder = _pskKeySchedule.ComputeFinished(_pskKeySchedule.BinderKey(), hash);
            binder.CopyTo(message[^binderLength..]);
        }

        _transcript.Add(w.Written);
    }

    private void ClientProcessServerHello(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadUInt16(out ushort legacyVersion) || !r.TryReadBytes(32, out ReadOnlySpan<byte> random)
            || !r.TryReadVector(1, out ReadOnlySpan<byte> sessionId) || !r.TryReadUInt16(out ushort suiteValue)
            || !r.TryReadByte(out byte compression) || !r.TryReadVector(2, out ReadOnlySpan<byte> extensionData) || !r.IsEmpty)
        {
            throw DecodeError("ServerHello");
        }

        bool isRetry = random.SequenceEqual(s_helloRetryRequestRandom);
        ExtensionBlock extensions = ExtensionBlock.Parse(extensionData);
        foreach (ushort type in extensions.Types)
        {
            bool allowed = type is ExtensionType.SupportedVersions or ExtensionType.KeyShare
                || (isRetry ? type == ExtensionType.Cookie : type == ExtensionType.PreSharedKey);
            if (!allowed)
            {
                throw ExtensionNotAllowed(type, isRetry ? "HelloRetryRequest" : "ServerHello");
            }
        }

        // Only TLS 1.3 is implemented, so a ServerHello without supported_versions is a lower version.
        byte[] version = extensions.Get(ExtensionType.SupportedVersions) ?? throw Alert(TlsAlert.ProtocolVersion, "server did not select TLS 1.3");
        if (version.Length != 2)
        {
            throw DecodeError("supported_versions");
        }

        if (((version[0] << 8) | version[1]) != Tls13 || legacyVersion != LegacyVersion)
        {
            throw Alert(TlsAlert.IllegalParameter, "server selected a version other than TLS 1.3");
        }

        var suite = (CipherSuite)suiteValue;
        if (!sessionId.IsEmpty || compression != 0 || !CipherSuiteInfo.IsDefined(suiteValue) || !_options.CipherSuites.Contains(suite))
        {
            throw Alert(TlsAlert.IllegalParameter, "bad legacy_session_id_echo, compression or cipher suite");
        }

        if (isRetry)
        {
            ClientProcessHelloRetryRequest(message, suite, extensions);
            return;
        }

        if (HelloRetryRequestUsed && suite != _helloRetryRequestSuite)
        {
            throw Alert(TlsAlert.IllegalParameter, "ServerHello cipher suite differs from HelloRetryRequest");
        }

        byte[] keyShare = extensions.Get(ExtensionType.KeyShare) ?? throw Alert(TlsAlert.MissingExtension, "ServerHello without key_share (only psk_dhe_ke is offered)");
        var kr = new SpanReader(keyShare);
        if (!kr.TryReadUInt16(out ushort group) || !kr.TryReadVector(2, out ReadOnlySpan<byte> serverShare) || !kr.IsEmpty)
        {
            throw DecodeError("key_share");
        }

        if (group != (ushort)_keyExchange!.Group)
        {
            throw Alert(TlsAlert.IllegalParameter, "server key share for a group we did not send");
        }

        if (extensions.Get(ExtensionType.PreSharedKey) is { } psk)
        {
            if (_offeredTicket is null)
            {
                throw Alert(TlsAlert.UnsupportedExtension, "pre_shared_key without an offered PSK");
            }

            if (psk.Length != 2)
            {
                throw DecodeError("pre_shared_key");
            }

            if (((psk[0] << 8) | psk[1]) != 0 || CipherSuiteInfo.Hash(suite) != _pskKeySchedule!.Hash)
            {
                throw Alert(TlsAlert.IllegalParameter, "bad selected_identity or PSK hash mismatch");
            }

            IsResumed = true;
        }

        _suite = suite;
        NegotiatedCipherSuite = suite;
        NegotiatedGroup = _keyExchange.Group;
        _transcript.SetHash(CipherSuiteInfo.Hash(suite));
        _transcript.Add(message);

        byte[] shared = _keyExchange.TryDeriveSharedSecret(serverShare) ?? throw Alert(TlsAlert.IllegalParameter, "invalid server key share");
        _keySchedule = IsResumed ? _pskKeySchedule! : new KeySchedule(CipherSuiteInfo.Hash(suite), []);
        DeriveHandshakeTrafficSecrets(shared);
        InstallSecret(EncryptionLevel.Handshake, TrafficDirection.Read, suite, _serverHandshakeSecret!, "SERVER_HANDSHAKE_TRAFFIC_SECRET");
        InstallSecret(EncryptionLevel.Handshake, TrafficDirection.Write, suite, _clientHandshakeSecret!, "CLIENT_HANDSHAKE_TRAFFIC_SECRET");
        _state = State.ClientWaitEncryptedExtensions;
    }

    private void ClientProcessHelloRetryRequest(ReadOnlySpan<byte> message, CipherSuite suite, ExtensionBlock extensions)
    {
        if (HelloRetryRequestUsed)
        {
            throw Alert(TlsAlert.UnexpectedMessage, "second HelloRetryRequest"); // RFC 8446 §4.1.4
        }

        byte[]? keyShare = extensions.Get(ExtensionType.KeyShare);
        byte[]? cookie = extensions.Get(ExtensionType.Cookie);
        if (keyShare is null && cookie is null)
        {
            throw Alert(TlsAlert.IllegalParameter, "HelloRetryRequest would not change the ClientHello");
        }

        if (cookie is not null)
        {
            var cr = new SpanReader(cookie);
            if (!cr.TryReadVector(2, out ReadOnlySpan<byte> c) || c.IsEmpty || !cr.IsEmpty)
            {
                throw DecodeError("cookie");
            }

            _cookie = cookie;
        }

        if (keyShare is not null)
        {
            if (keyShare.Length != 2)
            {
                throw DecodeError("key_share");
            }

            var group = (NamedGroup)((keyShare[0] << 8) | keyShare[1]);
            if (!_options.Groups.Contains(group) || !KeyExchange.IsSupported(group) || group == _keyExchange!.Group)
            {
                throw Alert(TlsAlert.IllegalParameter, "HelloRetryRequest selected an unacceptable group");
            }

            _keyExchange.Dispose();
            _keyExchange = KeyExchange.Create(group);
        }

        HelloRetryRequestUsed = true;
        _helloRetryRequestSuite = suite;

        // Transcript: message_hash(ClientHello1) || HelloRetryRequest (RFC 8446 §4.4.1).
        _transcript.SetHash(CipherSuiteInfo.Hash(suite));
        _transcript.ReplaceWithMessageHash();
        _transcript.Add(message);

        // No early data after HelloRetryRequest (RFC 8446 §4.2.10); drop a PSK whose hash cannot match (§4.1.4).
        if (EarlyData == EarlyDataStatus.Offered)
        {
            EarlyData = EarlyDataStatus.Rejected;
        }

        if (_offeredTicket is not null && _pskKeySchedule!.Hash != CipherSuiteInfo.Hash(suite))
        {
            _offeredTicket = null;
            _pskKeySchedule = null;
        }

        WriteClientHello();
        Emit(EncryptionLevel.Initial, addToTranscript: false);
    }

    private void ClientProcessEncryptedExtensions(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> extensionData) || !r.IsEmpty)
        {
            throw DecodeError("EncryptedExtensions");
        }

        ExtensionBlock extensions = ExtensionBlock.Parse(extensionData);
        foreach (ushort type in extensions.Types)
        {
            switch (type)
            {
                case ExtensionType.ServerName:
                    if (!_serverNameSent)
                    {
                        throw Alert(TlsAlert.UnsupportedExtension, "unsolicited server_name");
                    }

                    if (extensions.Get(type)!.Length != 0)
                    {
                        throw DecodeError("server_name");
                    }

                    break;
                case ExtensionType.EarlyData:
                    if (EarlyData != EarlyDataStatus.Offered)
                    {
                        throw Alert(TlsAlert.UnsupportedExtension, "unsolicited early_data");
                    }

                    if (extensions.Get(type)!.Length != 0)
                    {
                        throw DecodeError("early_data");
                    }

                    break;
                case ExtensionType.SupportedGroups:
                case ExtensionType.ApplicationLayerProtocolNegotiation:
                case ExtensionType.QuicTransportParameters:
                    break;
                default:
                    throw ExtensionNotAllowed(type, "EncryptedExtensions");
            }
        }

        byte[] alpn = extensions.Get(ExtensionType.ApplicationLayerProtocolNegotiation)
            ?? throw Alert(TlsAlert.NoApplicationProtocol, "server did not select an application protocol"); // RFC 9001 §8.1
        List<string> selected = ReadAlpnList(alpn);
        if (selected.Count != 1 || !_options.ApplicationProtocols.Contains(selected[0]))
        {
            throw Alert(TlsAlert.IllegalParameter, "server selected an application protocol that was not offered");
        }

        NegotiatedApplicationProtocol = selected[0];
        PeerTransportParameters = extensions.Get(ExtensionType.QuicTransportParameters)
            ?? throw Alert(TlsAlert.MissingExtension, "quic_transport_parameters missing"); // RFC 9001 §8.2

        if (EarlyData == EarlyDataStatus.Offered)
        {
            if (extensions.Contains(ExtensionType.EarlyData))
            {
                // Early data is only valid with the first PSK, its cipher suite and ALPN (RFC 8446 §4.2.10).
                if (!IsResumed || _suite != _offeredTicket!.CipherSuite || NegotiatedApplicationProtocol != _offeredTicket.ApplicationProtocol)
                {
                    throw Alert(TlsAlert.IllegalParameter, "early_data accepted with incompatible parameters");
                }

                EarlyData = EarlyDataStatus.Accepted;
            }
            else
            {
                EarlyData = EarlyDataStatus.Rejected;
            }
        }

        _transcript.Add(message);
        _state = IsResumed ? State.ClientWaitFinished : State.ClientWaitCertificateOrCertificateRequest;
    }

    private void ClientProcessCertificateRequest(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadVector(1, out ReadOnlySpan<byte> context) || !r.TryReadVector(2, out ReadOnlySpan<byte> extensionData) || !r.IsEmpty)
        {
            throw DecodeError("CertificateRequest");
        }

        if (!context.IsEmpty)
        {
            throw Alert(TlsAlert.IllegalParameter, "non-empty certificate_request_context during the handshake");
        }

        // Unknown extensions are ignored here (RFC 8446 §4.3.2); signature_algorithms is mandatory.
        ExtensionBlock extensions = ExtensionBlock.Parse(extensionData);
        byte[] schemes = extensions.Get(ExtensionType.SignatureAlgorithms) ?? throw Alert(TlsAlert.MissingExtension, "CertificateRequest without signature_algorithms");
        _peerSignatureAlgorithms = ReadUInt16List(schemes, 2, "signature_algorithms");
        _certificateRequested = true;
        _transcript.Add(message);
        _state = State.ClientWaitCertificate;
    }

    private void ClientProcessFinished(ReadOnlySpan<byte> message)
    {
        VerifyPeerFinished(message, _serverHandshakeSecret!);
        DeriveApplicationTrafficSecrets();
        InstallSecret(EncryptionLevel.OneRtt, TrafficDirection.Read, _suite, _serverApplicationSecret!, "SERVER_TRAFFIC_SECRET_0");

        if (_certificateRequested)
        {
            // Client authentication (RFC 8446 §4.4.2): an empty Certificate when we have nothing usable.
            TlsCertificate? certificate = _options.ClientCertificate;
            SignatureScheme? scheme = certificate is null ? null : ChooseSignatureScheme(certificate, _peerSignatureAlgorithms!);
            WriteCertificate(scheme is null ? null : certificate);
            Emit(EncryptionLevel.Handshake);
            if (scheme is { } s)
            {
                WriteCertificateVerify(certificate!, s, server: false);
                Emit(EncryptionLevel.Handshake);
            }
        }

        WriteFinished(_clientHandshakeSecret!);
        Emit(EncryptionLevel.Handshake);

        // RFC 9001 §4.1.4: 1-RTT write keys once our Finished is sent.
        InstallSecret(EncryptionLevel.OneRtt, TrafficDirection.Write, _suite, _clientApplicationSecret!, "CLIENT_TRAFFIC_SECRET_0");
        DeriveResumptionMasterSecret();
        IsHandshakeComplete = true;
        _state = State.ClientConnected;
    }

    private void ClientProcessNewSessionTicket(ReadOnlySpan<byte> message)
    {
        SpanReader r = BodyReader(message);
        if (!r.TryReadUInt32(out uint lifetime) || !r.TryReadUInt32(out uint ageAdd) || !r.TryReadVector(1, out ReadOnlySpan<byte> nonce)
            || !r.TryReadVector(2, out ReadOnlySpan<byte> ticket) || ticket.IsEmpty || !r.TryReadVector(2, out ReadOnlySpan<byte> extensionData) || !r.IsEmpty)
        {
            throw DecodeError("NewSessionTicket");
        }

        if (lifetime > MaxTicketLifetimeSeconds)
        {
            throw Alert(TlsAlert.IllegalParameter, "ticket_lifetime above 7 days");
        }

        // Unknown extensions are ignored (RFC 8446 §4.6.1).
        ExtensionBlock extensions = ExtensionBlock.Parse(extensionData);
        uint maxEarlyData = 0;
        if (extensions.Get(ExtensionType.EarlyData) is { } earlyData)
        {
            if (earlyData.Length != 4)
            {
                throw DecodeError("early_data");
            }

            maxEarlyData = (uint)((earlyData[0] << 24) | (earlyData[1] << 16) | (earlyData[2] << 8) | earlyData[3]);

            // RFC 9001 §4.6.1 calls any other value a PROTOCOL_VIOLATION; surfaced as illegal_parameter.
            if (maxEarlyData != QuicMaxEarlyDataSize)
            {
                throw Alert(TlsAlert.IllegalParameter, "max_early_data_size must be 0xffffffff in QUIC");
            }
        }

        if (lifetime == 0)
        {
            return; // "the ticket should be discarded immediately" (RFC 8446 §4.6.1)
        }

        var sessionTicket = new TlsSessionTicket
        {
            Ticket = ticket.ToArray(),
            ResumptionSecret = _keySchedule!.ResumptionPsk(_resumptionMasterSecret!, nonce),
            CipherSuite = _suite,
            AgeAdd = ageAdd,
            LifetimeSeconds = lifetime,
            ReceivedAt = _options.TimeProvider.GetUtcNow(),
            MaxEarlyDataSize = maxEarlyData,
            ApplicationProtocol = NegotiatedApplicationProtocol,
            ServerName = _options.ServerName,
        };
        _host.OnSessionTicket(sessionTicket);
    }

    /// <summary>A recognised extension in the wrong message is illegal_parameter; an unknown one was never requested (RFC 8446 §4.2).</summary>
    private static TlsAlertException ExtensionNotAllowed(ushort type, string messageName) =>
        ExtensionBlock.IsKnown(type)
            ? Alert(TlsAlert.IllegalParameter, $"extension {type} not allowed in {messageName}")
            : Alert(TlsAlert.UnsupportedExtension, $"unsolicited extension {type} in {messageName}");
}
