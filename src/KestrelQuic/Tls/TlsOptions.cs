using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Crypto;

namespace KestrelQuic.Tls;

/// <summary>Configuration of one TLS 1.3 handshake, built by the QUIC layer.</summary>
public sealed class TlsOptions
{
    /// <summary>True for the client role.</summary>
    public bool IsClient { get; set; }

    /// <summary>Client: the SNI to send and the host name to check the certificate against.</summary>
    public string? ServerName { get; set; }

    /// <summary>ALPN protocols in preference order (mandatory for QUIC, RFC 9001 §8.1).</summary>
    public IReadOnlyList<string> ApplicationProtocols { get; set; } = [];

    /// <summary>Cipher suites in preference order.</summary>
    public IReadOnlyList<CipherSuite> CipherSuites { get; set; } =
        [CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384, CipherSuite.ChaCha20Poly1305Sha256];

    /// <summary>Key exchange groups in preference order; the client sends a key share for the first one only.</summary>
    public IReadOnlyList<NamedGroup> Groups { get; set; } = [NamedGroup.X25519, NamedGroup.Secp256r1];

    /// <summary>Signature schemes accepted for (and used in) CertificateVerify.</summary>
    public IReadOnlyList<SignatureScheme> SignatureAlgorithms { get; set; } =
    [
        SignatureScheme.EcdsaSecp256r1Sha256, SignatureScheme.EcdsaSecp384r1Sha384,
        SignatureScheme.RsaPssRsaeSha256, SignatureScheme.RsaPssRsaeSha384, SignatureScheme.RsaPssRsaeSha512,
        SignatureScheme.Ed25519,
        SignatureScheme.RsaPssPssSha256, SignatureScheme.RsaPssPssSha384, SignatureScheme.RsaPssPssSha512,
    ];

    /// <summary>Server: default certificate.</summary>
    public TlsCertificate? Certificate { get; set; }

    /// <summary>Server: chooses a certificate from the SNI; a null result falls back to <see cref="Certificate"/>.</summary>
    public Func<string?, TlsCertificate?>? CertificateSelector { get; set; }

    /// <summary>Whether the peer certificate is validated at all (client: server certificate; server: client certificate).</summary>
    public bool ValidateCertificate { get; set; } = true;

    /// <summary>Custom trust anchors (X509ChainTrustMode.CustomRootTrust).</summary>
    public X509Certificate2Collection? TrustedCertificateAuthorities { get; set; }

    /// <summary>Whether the system trust store is used (when no custom anchors are given, or in addition to them).</summary>
    public bool UseSystemTrust { get; set; } = true;

    /// <summary>Overrides the validation result (like RemoteCertificateValidationCallback).</summary>
    public Func<X509Certificate2, X509Chain?, SslPolicyErrors, bool>? CertificateValidationCallback { get; set; }

    /// <summary>Accepts any peer certificate (tests only).</summary>
    public bool DangerousAcceptAnyServerCertificate { get; set; }

    /// <summary>Revocation checking mode for chain building.</summary>
    public X509RevocationMode RevocationMode { get; set; } = X509RevocationMode.NoCheck;

    /// <summary>Client: certificate sent when the server requests one.</summary>
    public TlsCertificate? ClientCertificate { get; set; }

    /// <summary>Server: whether a client certificate is requested.</summary>
    public ClientCertificateMode ClientCertificateMode { get; set; }

    /// <summary>Client: ticket to resume with.</summary>
    public TlsSessionTicket? SessionTicket { get; set; }

    /// <summary>Client: offer 0-RTT when the ticket allows it. Server: accept 0-RTT.</summary>
    public bool EnableEarlyData { get; set; }

    /// <summary>Server: 32-byte key protecting session tickets (random per instance if null).</summary>
    public byte[]? SessionTicketKey { get; set; }

    /// <summary>Server: ticket lifetime (at most 7 days, RFC 8446 §4.6.1).</summary>
    public TimeSpan SessionTicketLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Server: decides whether 0-RTT is compatible given the ticket's application data (RFC 9000 §7.4.1).</summary>
    public Func<ReadOnlySpan<byte>, bool>? AcceptEarlyData { get; set; }

    /// <summary>Server: decides whether a ticket may be used at all given its application data (QUIC: issued for the same version, RFC 9369 §5).</summary>
    internal Func<ReadOnlySpan<byte>, bool>? AcceptTicket { get; set; }

    /// <summary>
    /// Server: the strike register shared by every connection of one server that makes tickets single-use for
    /// 0-RTT. Without one, early data is always rejected (it could be replayed).
    /// </summary>
    internal EarlyDataAntiReplay? AntiReplay { get; set; }

    /// <summary>
    /// Clock for ticket ages and lifetimes and certificate validity. A QUIC connection sets it to its own clock (the
    /// time it is driven with), so that these follow the same time as the transport, simulated or real; the system
    /// clock default only serves a handshake driven on its own.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Largest handshake message accepted (buffered partial messages beyond this fail the handshake).</summary>
    public int MaxHandshakeMessageSize { get; set; } = 64 * 1024;

    /// <summary>Receives NSS key log lines (label, client random, secret).</summary>
    public Action<string, ReadOnlySpan<byte>, ReadOnlySpan<byte>>? KeyLogCallback { get; set; }

    private byte[]? _randomTicketKey;

    /// <summary>The configured ticket key, or one random key per options instance (shared by the connections built from it).</summary>
    internal byte[] GetEffectiveSessionTicketKey()
    {
        if (SessionTicketKey is { } key)
        {
            return key.Length == 32 ? key : throw new InvalidOperationException("SessionTicketKey must be 32 bytes.");
        }

        if (_randomTicketKey is null)
        {
            Interlocked.CompareExchange(ref _randomTicketKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), null);
        }

        return _randomTicketKey;
    }
}
