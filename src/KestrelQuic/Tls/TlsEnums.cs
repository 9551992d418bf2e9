namespace KestrelQuic.Tls;

/// <summary>TLS alert descriptions (RFC 8446 §6). QUIC sends them as CRYPTO_ERROR 0x100 + alert (RFC 9001 §4.8).</summary>
public enum TlsAlert : byte
{
    /// <summary>close_notify.</summary>
    CloseNotify = 0,
    /// <summary>unexpected_message.</summary>
    UnexpectedMessage = 10,
    /// <summary>bad_record_mac.</summary>
    BadRecordMac = 20,
    /// <summary>record_overflow.</summary>
    RecordOverflow = 22,
    /// <summary>handshake_failure.</summary>
    HandshakeFailure = 40,
    /// <summary>bad_certificate.</summary>
    BadCertificate = 42,
    /// <summary>unsupported_certificate.</summary>
    UnsupportedCertificate = 43,
    /// <summary>certificate_revoked.</summary>
    CertificateRevoked = 44,
    /// <summary>certificate_expired.</summary>
    CertificateExpired = 45,
    /// <summary>certificate_unknown.</summary>
    CertificateUnknown = 46,
    /// <summary>illegal_parameter.</summary>
    IllegalParameter = 47,
    /// <summary>unknown_ca.</summary>
    UnknownCa = 48,
    /// <summary>access_denied.</summary>
    AccessDenied = 49,
    /// <summary>decode_error.</summary>
    DecodeError = 50,
    /// <summary>decrypt_error.</summary>
    DecryptError = 51,
    /// <summary>protocol_version.</summary>
    ProtocolVersion = 70,
    /// <summary>insufficient_security.</summary>
    InsufficientSecurity = 71,
    /// <summary>internal_error.</summary>
    InternalError = 80,
    /// <summary>inappropriate_fallback.</summary>
    InappropriateFallback = 86,
    /// <summary>user_canceled.</summary>
    UserCanceled = 90,
    /// <summary>missing_extension.</summary>
    MissingExtension = 109,
    /// <summary>unsupported_extension.</summary>
    UnsupportedExtension = 110,
    /// <summary>unrecognized_name.</summary>
    UnrecognizedName = 112,
    /// <summary>bad_certificate_status_response.</summary>
    BadCertificateStatusResponse = 113,
    /// <summary>unknown_psk_identity.</summary>
    UnknownPskIdentity = 115,
    /// <summary>certificate_required.</summary>
    CertificateRequired = 116,
    /// <summary>no_application_protocol.</summary>
    NoApplicationProtocol = 120,
}

/// <summary>Direction of a traffic secret handed to the QUIC layer.</summary>
public enum TrafficDirection
{
    /// <summary>Secret protecting packets received from the peer.</summary>
    Read,
    /// <summary>Secret protecting packets sent to the peer.</summary>
    Write,
}

/// <summary>Key exchange groups (RFC 8446 §4.2.7), IANA values.</summary>
public enum NamedGroup : ushort
{
    /// <summary>secp256r1 (NIST P-256).</summary>
    Secp256r1 = 0x0017,
    /// <summary>secp384r1 (NIST P-384).</summary>
    Secp384r1 = 0x0018,
    /// <summary>x25519.</summary>
    X25519 = 0x001d,
}

/// <summary>Signature schemes (RFC 8446 §4.2.3), IANA values.</summary>
public enum SignatureScheme : ushort
{
    /// <summary>rsa_pkcs1_sha1 (certificates only).</summary>
    RsaPkcs1Sha1 = 0x0201,
    /// <summary>ecdsa_sha1 (certificates only).</summary>
    EcdsaSha1 = 0x0203,
    /// <summary>rsa_pkcs1_sha256 (certificates only).</summary>
    RsaPkcs1Sha256 = 0x0401,
    /// <summary>ecdsa_secp256r1_sha256.</summary>
    EcdsaSecp256r1Sha256 = 0x0403,
    /// <summary>rsa_pkcs1_sha384 (certificates only).</summary>
    RsaPkcs1Sha384 = 0x0501,
    /// <summary>ecdsa_secp384r1_sha384.</summary>
    EcdsaSecp384r1Sha384 = 0x0503,
    /// <summary>rsa_pkcs1_sha512 (certificates only).</summary>
    RsaPkcs1Sha512 = 0x0601,
    /// <summary>ecdsa_secp521r1_sha512.</summary>
    EcdsaSecp521r1Sha512 = 0x0603,
    /// <summary>rsa_pss_rsae_sha256.</summary>
    RsaPssRsaeSha256 = 0x0804,
    /// <summary>rsa_pss_rsae_sha384.</summary>
    RsaPssRsaeSha384 = 0x0805,
    /// <summary>rsa_pss_rsae_sha512.</summary>
    RsaPssRsaeSha512 = 0x0806,
    /// <summary>ed25519.</summary>
    Ed25519 = 0x0807,
    /// <summary>ed448.</summary>
    Ed448 = 0x0808,
    /// <summary>rsa_pss_pss_sha256.</summary>
    RsaPssPssSha256 = 0x0809,
    /// <summary>rsa_pss_pss_sha384.</summary>
    RsaPssPssSha384 = 0x080a,
    /// <summary>rsa_pss_pss_sha512.</summary>
    RsaPssPssSha512 = 0x080b,
}

/// <summary>Outcome of 0-RTT for this handshake.</summary>
public enum EarlyDataStatus
{
    /// <summary>Early data was not offered.</summary>
    None,
    /// <summary>Client: offered, the server has not answered yet.</summary>
    Offered,
    /// <summary>The server accepted early data.</summary>
    Accepted,
    /// <summary>Early data was offered but the server declined it (or a HelloRetryRequest was used).</summary>
    Rejected,
}

/// <summary>Server: why offered early data was rejected (the handshake then continues in 1-RTT).</summary>
internal enum EarlyDataRejection
{
    /// <summary>Not rejected (accepted, or not offered).</summary>
    None,
    /// <summary>The server does not accept early data.</summary>
    Disabled,
    /// <summary>The first offered PSK was not accepted (full handshake or another PSK).</summary>
    NotResumed,
    /// <summary>A HelloRetryRequest was sent (RFC 8446 §4.1.2).</summary>
    HelloRetryRequest,
    /// <summary>The ticket does not allow it, or its cipher suite, ALPN or remembered parameters differ.</summary>
    Incompatible,
    /// <summary>The obfuscated_ticket_age is outside the freshness window (RFC 8446 §8.3).</summary>
    TicketAge,
    /// <summary>The ticket's early data was accepted before (RFC 8446 §8.1).</summary>
    Replay,
    /// <summary>The anti-replay register is full.</summary>
    AntiReplayFull,
    /// <summary>No anti-replay register is configured.</summary>
    NoAntiReplay,
}

/// <summary>Whether a server asks the client for a certificate.</summary>
public enum ClientCertificateMode
{
    /// <summary>No CertificateRequest is sent.</summary>
    None,
    /// <summary>A certificate is requested; the client may send none.</summary>
    Allow,
    /// <summary>A certificate is requested and must be provided (certificate_required otherwise).</summary>
    Require,
}

/// <summary>Handshake message types (RFC 8446 §4).</summary>
internal enum HandshakeType : byte
{
    ClientHello = 1,
    ServerHello = 2,
    NewSessionTicket = 4,
    EndOfEarlyData = 5,
    EncryptedExtensions = 8,
    Certificate = 11,
    CertificateRequest = 13,
    CertificateVerify = 15,
    Finished = 20,
    KeyUpdate = 24,
    MessageHash = 254,
}

/// <summary>Extension code points (RFC 8446 §4.2, RFC 7301, RFC 9001 §8.2).</summary>
internal static class ExtensionType
{
    public const ushort ServerName = 0;
    public const ushort SupportedGroups = 10;
    public const ushort SignatureAlgorithms = 13;
    public const ushort ApplicationLayerProtocolNegotiation = 16;
    public const ushort PreSharedKey = 41;
    public const ushort EarlyData = 42;
    public const ushort SupportedVersions = 43;
    public const ushort Cookie = 44;
    public const ushort PskKeyExchangeModes = 45;
    public const ushort CertificateAuthorities = 47;
    public const ushort PostHandshakeAuth = 49;
    public const ushort SignatureAlgorithmsCert = 50;
    public const ushort KeyShare = 51;
    public const ushort QuicTransportParameters = 0x39;
}
