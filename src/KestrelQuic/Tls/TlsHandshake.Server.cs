using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

internal sealed partial class TlsHandshake
{
    // Allowed difference between the client's and our view of a ticket's age for 0-RTT (RFC 8446 §8.3).
    private const long MaxEarlyDataAgeSkewMilliseconds = 10_000;

    private NamedGroup _helloRetryRequestGroup;
    private bool _clientOffersPskDheKe;
    private ulong _ticketNonce;

    /// <summary>Server: sends a NewSessionTicket at the 1-RTT level (RFC 8446 §4.6.1).</summary>
    public void SendSessionTicket(ReadOnlySpan<byte> applicationData)
    {
        if (IsClient || !IsHandshakeComplete)
        {
            throw new InvalidOperationException("Only a server with a completed handshake sends tickets.");
        }

        // Tickets are useless to a client that cannot use psk_dhe_ke (RFC 8446 §4.2.9); after ReleaseHandshakeState
        // the resumption secret is gone.
        if (!_clientOffersPskDheKe || _keySchedule is null)
        {
            return;
        }

        byte[] nonce = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(nonce, _ticketNonce++);
        uint lifetime = (uint)Math.Clamp(_options.SessionTicketLifetime.TotalSeconds, 1, MaxTicketLifetimeSeconds);
        uint ageAdd = BitConverter.ToUInt32(RandomNumberGenerator.GetBytes(4));
        uint maxEarlyData = _options.EnableEarlyData ? QuicMaxEarlyDataSize : 0;
        var state = new TicketState
        {
            CipherSuite = _suite,
            Psk = _keySchedule!.ResumptionPsk(_resumptionMasterSecret!, nonce),
            IssuedUnixMilliseconds = _options.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds(),
            AgeAdd = ageAdd,
            LifetimeSeconds = lifetime,
            MaxEarlyDataSize = maxEarlyData,
            ApplicationProtocol = NegotiatedApplicationProtocol!,
            ServerName = ServerName,
            ApplicationData = applicationData.ToArray(),
        };
        byte[] ticket = state.Seal(_options.GetEffectiveSessionTicketKey());

        TlsMessageWriter w = _writer;
        int m = w.BeginMessage(HandshakeType.NewSessionTicket);
        w.WriteUInt32(lifetime);
        w.WriteUInt32(ageAdd);
        int v = w.BeginVector(1);
        w.WriteBytes(nonce);
        w.EndVector(v);
        v = w.BeginVector(2);
        w.WriteBytes(ticket);
        w.EndVector(v);
        int extensions = w.BeginVector(2);
        if (maxEarlyData != 0)
        {
            int e = w.BeginExtension(ExtensionType.EarlyData);
            w.WriteUInt32(maxEarlyData);
            w.EndExtension(e);
        }

        w.EndVector(extensions);
        w.EndVector(m);
        Emit(EncryptionLevel.OneRtt, addToTranscript: false);
    }

    private void ServerProcessClientHello(ReadOnlySpan<byte> message)
    {
        bool secondHello = _state == State.ServerWaitSecondClientHello;
        SpanReader r = BodyReader(message);
        if (!r.TryReadUInt16(out _) || !r.TryReadBytes(32, out ReadOnlySpan<byte> random)
            || !r.TryReadVector(1, out ReadOnlySpan<byte> sessionId) || !r.TryReadVector(2, out ReadOnlySpan<byte> suiteList)
            || suiteList.IsEmpty || (suiteList.Length & 1) != 0
            || !r.TryReadVector(1, out ReadOnlySpan<byte> compression) || compression.IsEmpty)
        {
            throw DecodeError("ClientHello");
        }

        ReadOnlySpan<byte> extensionData = default;
        if (!r.IsEmpty && (!r.TryReadVector(2, out extensionData) || !r.IsEmpty))
        {
            throw DecodeError("ClientHello extensions");
        }

        ExtensionBlock extensions = ExtensionBlock.Parse(extensionData);
        if (extensions.Contains(ExtensionType.PreSharedKey) && extensions.Types[^1] != ExtensionType.PreSharedKey)
        {
            throw Alert(TlsAlert.IllegalParameter, "pre_shared_key is not the last extension"); // RFC 8446 §4.2.11
        }

        byte[] versions = extensions.Get(ExtensionType.SupportedVersions) ?? throw Alert(TlsAlert.ProtocolVersion, "client does not offer TLS 1.3");
        var vr = new SpanReader(versions);
        if (!vr.TryReadVector(1, out ReadOnlySpan<byte> versionList) || !vr.IsEmpty || versionList.IsEmpty || (versionList.Length & 1) != 0)
        {
            throw DecodeError("supported_versions");
        }

        bool tls13 = false;
        for (int i = 0; i < versionList.Length; i += 2)
        {
            tls13 |= ((versionList[i] << 8) | versionList[i + 1]) == Tls13;
        }

        if (!tls13)
        {
            throw Alert(TlsAlert.ProtocolVersion, "client does not offer TLS 1.3");
        }

        if (compression.Length != 1 || compression[0] != 0)
        {
            throw Alert(TlsAlert.IllegalParameter, "legacy_compression_methods must be {null}");
        }

        if (!sessionId.IsEmpty)
        {
            throw Alert(TlsAlert.IllegalParameter, "legacy_session_id must be empty in QUIC"); // RFC 9001 §8.4
        }

        if (secondHello)
        {
            // The retried ClientHello keeps the random and must not offer early data (RFC 8446 §4.1.2).
            if (!random.SequenceEqual(_clientRandom) || extensions.Contains(ExtensionType.EarlyData))
            {
                throw Alert(TlsAlert.IllegalParameter, "second ClientHello changed the random or offered early_data");
            }
        }
        else
        {
            random.CopyTo(_clientRandom);
        }

        PeerTransportParameters = extensions.Get(ExtensionType.QuicTransportParameters)
            ?? throw Alert(TlsAlert.MissingExtension, "quic_transport_parameters missing"); // RFC 9001 §8.2
        if (_host.OnClientTransportParameters(PeerTransportParameters) is { } replacedLocalParameters)
        {
            _localTransportParameters = replacedLocalParameters;
        }

        if (extensions.Get(ExtensionType.ServerName) is { } sni)
        {
            ServerName = ReadServerName(sni);
        }

        byte[] alpnData = extensions.Get(ExtensionType.ApplicationLayerProtocolNegotiation)
            ?? throw Alert(TlsAlert.NoApplicationProtocol, "client did not offer ALPN"); // RFC 9001 §8.1
        List<string> clientProtocols = ReadAlpnList(alpnData);
        NegotiatedApplicationProtocol = null;
        foreach (string protocol in _options.ApplicationProtocols)
        {
            if (clientProtocols.Contains(protocol))
            {
                NegotiatedApplicationProtocol = protocol;
                break;
            }
        }

        if (NegotiatedApplicationProtocol is null)
        {
            throw Alert(TlsAlert.NoApplicationProtocol, "no common application protocol");
        }

        List<ushort> clientGroups = ReadUInt16List(
            extensions.Get(ExtensionType.SupportedGroups) ?? throw Alert(TlsAlert.MissingExtension, "supported_groups missing"), 2, "supported_groups");
        List<(ushort Group, byte[] Key)> shares = ReadClientKeyShares(
            extensions.Get(ExtensionType.KeyShare) ?? throw Alert(TlsAlert.MissingExtension, "key_share missing"));
        for (int i = 0; i < shares.Count; i++)
        {
            // Shares must follow supported_groups and not repeat a group (RFC 8446 §4.2.8).
            if (!clientGroups.Contains(shares[i].Group))
            {
                throw Alert(TlsAlert.IllegalParameter, "key share for a group not in supported_groups");
            }

            for (int j = 0; j < i; j++)
            {
                if (shares[j].Group == shares[i].Group)
                {
                    throw Alert(TlsAlert.IllegalParameter, "duplicate key share group");
                }
            }
        }

        List<ushort> clientSchemes = ReadUInt16List(
            extensions.Get(ExtensionType.SignatureAlgorithms) ?? throw Alert(TlsAlert.MissingExtension, "signature_algorithms missing"), 2, "signature_algorithms");

        _clientOffersPskDheKe = false;
        if (extensions.Get(ExtensionType.PskKeyExchangeModes) is { } modes)
        {
            var mr = new SpanReader(modes);
            if (!mr.TryReadVector(1, out ReadOnlySpan<byte> modeList) || modeList.IsEmpty || !mr.IsEmpty)
            {
                throw DecodeError("psk_key_exchange_modes");
            }

            _clientOffersPskDheKe = modeList.Contains(PskDheKe);
        }

        List<ushort> clientSuites = ReadUInt16Values(suiteList);
        CipherSuite? suite = null;
        foreach (CipherSuite candidate in _options.CipherSuites)
        {
            if (clientSuites.Contains((ushort)candidate))
            {
                suite = candidate;
                break;
            }
        }

        if (suite is null)
        {
            throw Alert(TlsAlert.HandshakeFailure, "no common cipher suite");
        }

        // Resumption (RFC 8446 §4.2.11): find a ticket we issued; it decides the cipher suite when possible.
        int pskIndex = -1;
        TicketState? ticket = null;
        byte[]? binder = null;
        uint obfuscatedAge = 0;
        int bindersLength = 0;
        if (extensions.Get(ExtensionType.PreSharedKey) is { } pskData)
        {
            if (!extensions.Contains(ExtensionType.PskKeyExchangeModes))
            {
                throw Alert(TlsAlert.MissingExtension, "pre_shared_key without psk_key_exchange_modes");
            }

            (pskIndex, ticket, binder, obfuscatedAge, bindersLength) = FindTicket(pskData, clientSuites, secondHello ? _suite : null);
            if (ticket is not null && !secondHello)
            {
                suite = ticket.CipherSuite;
            }
        }

        if (secondHello)
        {
            if (!clientSuites.Contains((ushort)_suite))
            {
                throw Alert(TlsAlert.IllegalParameter, "second ClientHello dropped the selected cipher suite");
            }

            suite = _suite;
        }

        // Group: the first of our groups the client sent a share for; otherwise ask for one (HelloRetryRequest).
        NamedGroup? group = null;
        byte[]? clientShare = null;
        foreach (NamedGroup candidate in _options.Groups)
        {
            foreach ((ushort g, byte[] key) in shares)
            {
                if (g == (ushort)candidate && KeyExchange.IsSupported(candidate))
                {
                    group = candidate;
                    clientShare = key;
                    break;
                }
            }

            if (group is not null)
            {
                break;
            }
        }

        if (group is null)
        {
            if (secondHello)
            {
                throw Alert(TlsAlert.IllegalParameter, "second ClientHello lacks the requested key share");
            }

            foreach (NamedGroup candidate in _options.Groups)
            {
                if (clientGroups.Contains((ushort)candidate) && KeyExchange.IsSupported(candidate))
                {
                    group = candidate;
                    break;
                }
            }

            if (group is null)
            {
                throw Alert(TlsAlert.HandshakeFailure, "no common key exchange group");
            }

            _suite = suite.Value;
            SendHelloRetryRequest(message, group.Value, extensions.Contains(ExtensionType.EarlyData));
            return;
        }

        if (secondHello && group != _helloRetryRequestGroup)
        {
            throw Alert(TlsAlert.IllegalParameter, "second ClientHello key share is not for the requested group");
        }

        _suite = suite.Value;
        NegotiatedCipherSuite = _suite;
        NegotiatedGroup = group;
        HashAlgorithmName hash = CipherSuiteInfo.Hash(_suite);
        _transcript.SetHash(hash);

        if (ticket is not null && CipherSuiteInfo.Hash(ticket.CipherSuite) == hash)
        {
            var pskSchedule = new KeySchedule(hash, ticket.Psk);
            int truncatedLength = message.Length - bindersLength;
            byte[] expected = pskSchedule.ComputeFinished(pskSchedule.BinderKey(), _transcript.HashWith(hash, message[..truncatedLength]));
            if (!CryptographicOperations.FixedTimeEquals(expected, binder))
            {
                throw Alert(TlsAlert.DecryptError, "PSK binder mismatch"); // RFC 8446 §4.2.11.2
            }

            IsResumed = true;
            ResumedTicketApplicationData = ticket.ApplicationData;
            _keySchedule = pskSchedule;
        }
        else
        {
            _keySchedule = new KeySchedule(hash, []);
        }

        _transcript.Add(message);

        if (extensions.Contains(ExtensionType.EarlyData))
        {
            if (extensions.Get(ExtensionType.EarlyData)!.Length != 0)
            {
                throw DecodeError("early_data");
            }

            EarlyData = EarlyDataStatus.Rejected;
            EarlyDataRejection = DecideEarlyData(ticket, pskIndex, obfuscatedAge, pskData: extensions.Get(ExtensionType.PreSharedKey));
            if (EarlyDataRejection == EarlyDataRejection.None)
            {
                EarlyData = EarlyDataStatus.Accepted;
                byte[] secret = _keySchedule.DeriveSecret(_keySchedule.EarlySecret, "c e traffic"u8, _transcript.CurrentHash());
                InstallSecret(EncryptionLevel.ZeroRtt, TrafficDirection.Read, _suite, secret, "CLIENT_EARLY_TRAFFIC_SECRET");
            }
        }

        _keyExchange = KeyExchange.Create(group.Value);
        byte[] shared = _keyExchange.TryDeriveSharedSecret(clientShare) ?? throw Alert(TlsAlert.IllegalParameter, "invalid client key share");

        WriteServerHello(RandomNumberGenerator.GetBytes(32), group.Value, _keyExchange.PublicKey, IsResumed ? pskIndex : -1);
        Emit(EncryptionLevel.Initial);
        DeriveHandshakeTrafficSecrets(shared);
        InstallSecret(EncryptionLevel.Handshake, TrafficDirection.Write, _suite, _serverHandshakeSecret!, "SERVER_HANDSHAKE_TRAFFIC_SECRET");
        InstallSecret(EncryptionLevel.Handshake, TrafficDirection.Read, _suite, _clientHandshakeSecret!, "CLIENT_HANDSHAKE_TRAFFIC_SECRET");

        WriteEncryptedExtensions(extensions.Contains(ExtensionType.ServerName));
        Emit(EncryptionLevel.Handshake);

        if (!IsResumed)
        {
            TlsCertificate certificate = _options.CertificateSelector?.Invoke(ServerName) ?? _options.Certificate
                ?? throw Alert(TlsAlert.HandshakeFailure, "no server certificate configured");
            SignatureScheme scheme = ChooseSignatureScheme(certificate, clientSchemes)
                ?? throw Alert(TlsAlert.HandshakeFailure, "no common signature scheme for the certificate");

            // No CertificateRequest in PSK handshakes (RFC 8446 §4.3.2).
            if (_options.ClientCertificateMode != ClientCertificateMode.None)
            {
                WriteCertificateRequest();
                Emit(EncryptionLevel.Handshake);
                _certificateRequested = true;
            }

            WriteCertificate(certificate);
            Emit(EncryptionLevel.Handshake);
            WriteCertificateVerify(certificate, scheme, server: true);
            Emit(EncryptionLevel.Handshake);
        }

        WriteFinished(_serverHandshakeSecret!);
        Emit(EncryptionLevel.Handshake);

        // RFC 9001 §4.1.4: the server may install 1-RTT write keys after sending its Finished.
        DeriveApplicationTrafficSecrets();
        InstallSecret(EncryptionLevel.OneRtt, TrafficDirection.Write, _suite, _serverApplicationSecret!, "SERVER_TRAFFIC_SECRET_0");
        _state = _certificateRequested ? State.ServerWaitCertificate : State.ServerWaitFinished;
    }

    /// <summary>
    /// Whether the client's early data can be accepted (RFC 8446 §4.2.10, §8; RFC 9001 §4.6). Every check that can
    /// refuse runs before the anti-replay register records the ticket, so a refused attempt does not use it up.
    /// </summary>
    private EarlyDataRejection DecideEarlyData(TicketState? ticket, int pskIndex, uint obfuscatedAge, byte[]? pskData)
    {
        if (!_options.EnableEarlyData) return EarlyDataRejection.Disabled;
        if (!IsResumed || pskIndex != 0 || ticket is null || pskData is null) return EarlyDataRejection.NotResumed;
        if (HelloRetryRequestUsed) return EarlyDataRejection.HelloRetryRequest;
        if (ticket.MaxEarlyDataSize == 0 || ticket.CipherSuite != _suite || ticket.ApplicationProtocol != NegotiatedApplicationProtocol)
        {
            return EarlyDataRejection.Incompatible;
        }

        // RFC 8446 §8.3: the client's view of the ticket's age must match ours, which confines a replay of this
        // ClientHello to a short window even without the register.
        long now = _options.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        long serverAge = now - ticket.IssuedUnixMilliseconds;
        long clientAge = unchecked(obfuscatedAge - ticket.AgeAdd);
        if (Math.Abs(serverAge - clientAge) > MaxEarlyDataAgeSkewMilliseconds) return EarlyDataRejection.TicketAge;
        if (_options.AcceptEarlyData is { } accept && !accept(ticket.ApplicationData)) return EarlyDataRejection.Incompatible;

        // RFC 8446 §8.1: single-use tickets. Without a register there is no replay protection, so no 0-RTT.
        if (_options.AntiReplay is not { } register) return EarlyDataRejection.NoAntiReplay;
        long expires = ticket.IssuedUnixMilliseconds + ticket.LifetimeSeconds * 1000L + MaxEarlyDataAgeSkewMilliseconds;
        return register.TryRecord(FirstPskIdentity(pskData), expires, now) switch
        {
            AntiReplayResult.Fresh => EarlyDataRejection.None,
            AntiReplayResult.Replay => EarlyDataRejection.Replay,
            _ => EarlyDataRejection.AntiReplayFull,
        };
    }

    // The identity FindTicket already parsed and validated (early data is only ever accepted for the first PSK).
    private static ReadOnlySpan<byte> FirstPskIdentity(byte[] pskData)
    {
        var r = new SpanReader(pskData);
        r.TryReadVector(2, out ReadOnlySpan<byte> identities);
        var ir = new SpanReader(identities);
        ir.TryReadVector(2, out ReadOnlySpan<byte> identity);
        return identity;
    }

    private (int Index, TicketState? Ticket, byte[]? Binder, uint ObfuscatedAge, int BindersLength) FindTicket(
        byte[] pskData, List<ushort> clientSuites, CipherSuite? requiredSuite)
    {
        // OfferedPsks: PskIdentity identities<7..2^16-1>; PskBinderEntry binders<33..2^16-1> (RFC 8446 §4.2.11).
        var r = new SpanReader(pskData);
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> identities) || identities.IsEmpty
            || !r.TryReadVector(2, out ReadOnlySpan<byte> binders) || binders.IsEmpty || !r.IsEmpty)
        {
            throw DecodeError("pre_shared_key");
        }

        var identityList = new List<(byte[] Identity, uint Age)>();
        var ir = new SpanReader(identities);
        while (!ir.IsEmpty)
        {
            if (!ir.TryReadVector(2, out ReadOnlySpan<byte> identity) || identity.IsEmpty || !ir.TryReadUInt32(out uint age))
            {
                throw DecodeError("PskIdentity");
            }

            identityList.Add((identity.ToArray(), age));
        }

        var binderList = new List<byte[]>();
        var br = new SpanReader(binders);
        while (!br.IsEmpty)
        {
            if (!br.TryReadVector(1, out ReadOnlySpan<byte> binder) || binder.Length < 32)
            {
                throw DecodeError("PskBinderEntry");
            }

            binderList.Add(binder.ToArray());
        }

        if (binderList.Count != identityList.Count)
        {
            throw Alert(TlsAlert.IllegalParameter, "PSK identities and binders differ in number");
        }

        int bindersLength = 2 + binders.Length;
        if (!_clientOffersPskDheKe)
        {
            return (-1, null, null, 0, bindersLength);
        }

        byte[] key = _options.GetEffectiveSessionTicketKey();
        long now = _options.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        for (int i = 0; i < identityList.Count; i++)
        {
            TicketState? state = TicketState.TryOpen(key, identityList[i].Identity);
            if (state is null || !_options.CipherSuites.Contains(state.CipherSuite) || !clientSuites.Contains((ushort)state.CipherSuite))
            {
                continue;
            }

            long age = now - state.IssuedUnixMilliseconds;
            bool sameHash = requiredSuite is not { } required || CipherSuiteInfo.Hash(required) == CipherSuiteInfo.Hash(state.CipherSuite);
            if (age < -MaxEarlyDataAgeSkewMilliseconds || age > state.LifetimeSeconds * 1000L || !sameHash
                || !string.Equals(state.ServerName, ServerName, StringComparison.OrdinalIgnoreCase)
                || binderList[i].Length != CipherSuiteInfo.HashLength(state.CipherSuite)
                || (_options.AcceptTicket is { } acceptTicket && !acceptTicket(state.ApplicationData)))
            {
                continue;
            }

            return (i, state, binderList[i], identityList[i].Age, bindersLength);
        }

        return (-1, null, null, 0, bindersLength);
    }

    private static string ReadServerName(byte[] extension)
    {
        // ServerNameList server_name_list<1..2^16-1>, at most one host_name (RFC 6066 §3).
        var r = new SpanReader(extension);
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> list) || list.IsEmpty || !r.IsEmpty)
        {
            throw DecodeError("server_name");
        }

        string? hostName = null;
        var lr = new SpanReader(list);
        while (!lr.IsEmpty)
        {
            if (!lr.TryReadByte(out byte nameType) || !lr.TryReadVector(2, out ReadOnlySpan<byte> name) || name.IsEmpty)
            {
                throw DecodeError("ServerName");
            }

            if (nameType == 0)
            {
                if (hostName is not null)
                {
                    throw Alert(TlsAlert.IllegalParameter, "two host_name entries");
                }

                foreach (byte b in name)
                {
                    if (b is < 0x21 or > 0x7e)
                    {
                        throw Alert(TlsAlert.IllegalParameter, "host_name is not an ASCII DNS name");
                    }
                }

                hostName = System.Text.Encoding.ASCII.GetString(name);
            }
        }

        return hostName ?? throw DecodeError("server_name");
    }

    private void SendHelloRetryRequest(ReadOnlySpan<byte> clientHello, NamedGroup group, bool clientOfferedEarlyData)
    {
        HelloRetryRequestUsed = true;
        _helloRetryRequestGroup = group;
        if (clientOfferedEarlyData)
        {
            EarlyData = EarlyDataStatus.Rejected;
        }

        _transcript.SetHash(CipherSuiteInfo.Hash(_suite));
        _transcript.Add(clientHello);
        _transcript.ReplaceWithMessageHash();

        TlsMessageWriter w = _writer;
        int m = w.BeginMessage(HandshakeType.ServerHello);
        w.WriteUInt16(LegacyVersion);
        w.WriteBytes(s_helloRetryRequestRandom);
        w.WriteUInt8(0);
        w.WriteUInt16((ushort)_suite);
        w.WriteUInt8(0);
        int extensions = w.BeginVector(2);
        int e = w.BeginExtension(ExtensionType.SupportedVersions);
        w.WriteUInt16(Tls13);
        w.EndExtension(e);
        e = w.BeginExtension(ExtensionType.KeyShare);
        w.WriteUInt16((ushort)group);
        w.EndExtension(e);
        w.EndVector(extensions);
        w.EndVector(m);
        Emit(EncryptionLevel.Initial);
        _state = State.ServerWaitSecondClientHello;
    }

    private void WriteServerHello(byte[] random, NamedGroup group, byte[] publicKey, int pskIndex)
    {
        TlsMessageWriter w = _writer;
        int m = w.BeginMessage(HandshakeType.ServerHello);
        w.WriteUInt16(LegacyVersion);
        w.WriteBytes(random);
        w.WriteUInt8(0); // legacy_session_id_echo (the client's is empty)
        w.WriteUInt16((ushort)_suite);
        w.WriteUInt8(0);
        int extensions = w.BeginVector(2);
        int e = w.BeginExtension(ExtensionType.SupportedVersions);
        w.WriteUInt16(Tls13);
        w.EndExtension(e);
        e = w.BeginExtension(ExtensionType.KeyShare);
        w.WriteUInt16((ushort)group);
        int v = w.BeginVector(2);
        w.WriteBytes(publicKey);
        w.EndVector(v);
        w.EndExtension(e);
        if (pskIndex >= 0)
        {
            e = w.BeginExtension(ExtensionType.PreSharedKey);
            w.WriteUInt16((ushort)pskIndex);
            w.EndExtension(e);
        }

        w.EndVector(extensions);
        w.EndVector(m);
    }

    private void WriteEncryptedExtensions(bool acknowledgeServerName)
    {
        TlsMessageWriter w = _writer;
        int m = w.BeginMessage(HandshakeType.EncryptedExtensions);
        int extensions = w.BeginVector(2);
        if (acknowledgeServerName && ServerName is not null)
        {
            int s = w.BeginExtension(ExtensionType.ServerName); // empty: SNI was used (RFC 6066 §3)
            w.EndExtension(s);
        }

        WriteAlpnExtension([NegotiatedApplicationProtocol!]);
        int e = w.BeginExtension(ExtensionType.QuicTransportParameters);
        w.WriteBytes(_localTransportParameters);
        w.EndExtension(e);
        if (EarlyData == EarlyDataStatus.Accepted)
        {
            e = w.BeginExtension(ExtensionType.EarlyData);
            w.EndExtension(e);
        }

        w.EndVector(extensions);
        w.EndVector(m);
    }

    private void WriteCertificateRequest()
    {
        TlsMessageWriter w = _writer;
        int m = w.BeginMessage(HandshakeType.CertificateRequest);
        w.WriteUInt8(0); // certificate_request_context
        int extensions = w.BeginVector(2);
        int e = w.BeginExtension(ExtensionType.SignatureAlgorithms);
        int v = w.BeginVector(2);
        foreach (SignatureScheme scheme in _options.SignatureAlgorithms)
        {
            w.WriteUInt16((ushort)scheme);
        }

        w.EndVector(v);
        w.EndExtension(e);
        w.EndVector(extensions);
        w.EndVector(m);
    }

    private void ServerProcessFinished(ReadOnlySpan<byte> message)
    {
        VerifyPeerFinished(message, _clientHandshakeSecret!);
        InstallSecret(EncryptionLevel.OneRtt, TrafficDirection.Read, _suite, _clientApplicationSecret!, "CLIENT_TRAFFIC_SECRET_0");
        DeriveResumptionMasterSecret();
        IsHandshakeComplete = true;
        _state = State.ServerConnected;
    }
}
