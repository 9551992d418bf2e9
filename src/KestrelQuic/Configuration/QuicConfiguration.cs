using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;

namespace KestrelQuic.Configuration;

/// <summary>When the server asks clients to prove their address with a Retry packet (RFC 9000 §8.1.2).</summary>
public enum RetryMode
{
    /// <summary>Never send Retry.</summary>
    Never,

    /// <summary>Send Retry for every new connection without a valid token.</summary>
    Always,

    /// <summary>Send Retry only while the number of handshakes in progress has reached <see cref="QuicConfiguration.RetryHandshakeThreshold"/>.</summary>
    UnderLoad,
}

/// <summary>(EC)DHE groups for the TLS key exchange. Values are the IANA NamedGroup code points.</summary>
public enum KeyExchangeGroup : ushort
{
    /// <summary>secp256r1 (NIST P-256).</summary>
    Secp256r1 = 0x0017,

    /// <summary>secp384r1 (NIST P-384).</summary>
    Secp384r1 = 0x0018,

    /// <summary>X25519.</summary>
    X25519 = 0x001d,
}

/// <summary>Whether a server asks clients for a certificate.</summary>
public enum ClientCertificateMode
{
    /// <summary>No client certificate is requested.</summary>
    NoCertificate,

    /// <summary>A client certificate is requested but not required.</summary>
    AllowCertificate,

    /// <summary>A client certificate is required; the handshake fails without one.</summary>
    RequireCertificate,
}

/// <summary>
/// Settings of a QUIC endpoint and its connections, for both client and server roles. Defaults are safe for the
/// public internet; <see cref="Validate"/> reports invalid combinations naming the offending property.
/// </summary>
public sealed class QuicConfiguration
{
    /// <summary>Application protocols (ALPN) offered by a client or accepted by a server, in preference order. QUIC requires at least one.</summary>
    public IList<string> ApplicationProtocols { get; set; } = new List<string>();

    /// <summary>Congestion controller for new connections. Default <see cref="CongestionControlAlgorithm.Cubic"/>.</summary>
    public CongestionControlAlgorithm CongestionControl { get; set; } = CongestionControlAlgorithm.Cubic;

    /// <summary>Length in bytes of the connection IDs this endpoint issues (4 to 20). Default 8.</summary>
    public int ConnectionIdLength { get; set; } = 8;

    /// <summary>Idle timeout advertised in max_idle_timeout; <see cref="TimeSpan.Zero"/> disables it. Default 30 s.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Initial connection-level receive window (initial_max_data), in bytes. Default 4 MiB.</summary>
    public long MaxData { get; set; } = 4 * 1024 * 1024;

    /// <summary>Initial per-stream receive window (initial_max_stream_data_*), in bytes. Default 1 MiB.</summary>
    public long MaxStreamData { get; set; } = 1024 * 1024;

    /// <summary>Upper bound for connection window auto-tuning, in bytes. Default 32 MiB.</summary>
    public long MaxConnectionReceiveWindow { get; set; } = 32 * 1024 * 1024;

    /// <summary>Upper bound for stream window auto-tuning, in bytes. Default 16 MiB.</summary>
    public long MaxStreamReceiveWindow { get; set; } = 16 * 1024 * 1024;

    /// <summary>Number of bidirectional streams the peer may open concurrently (initial_max_streams_bidi). Default 100.</summary>
    public long MaxBidirectionalStreams { get; set; } = 100;

    /// <summary>Number of unidirectional streams the peer may open concurrently (initial_max_streams_uni). Default 100.</summary>
    public long MaxUnidirectionalStreams { get; set; } = 100;

    /// <summary>Largest UDP payload this endpoint sends, in bytes (1200 to 65527). Default 1200, which every path carries.</summary>
    public int MaxDatagramSize { get; set; } = 1200;

    /// <summary>
    /// Path MTU discovery (RFC 9000 §14.3, DPLPMTUD): after the handshake, padded PING probes search for the largest
    /// datagram the path carries between <see cref="MaxDatagramSize"/> and this bound; 0 disables it. Default 1452
    /// (an Ethernet path over IPv6). Loopback and jumbo-frame networks may set up to 65527.
    /// </summary>
    public int PathMtuDiscoveryUpperBound { get; set; } = 1452;

    /// <summary>Largest UDP payload this endpoint accepts (max_udp_payload_size). Default 65527.</summary>
    public int MaxUdpPayloadSize { get; set; } = 65527;

    /// <summary>Largest DATAGRAM frame accepted (RFC 9221 max_datagram_frame_size); null disables DATAGRAM frames. Default null.</summary>
    public long? MaxDatagramFrameSize { get; set; }

    /// <summary>RTT assumed before the first sample (RFC 9002 kInitialRtt). Default 333 ms.</summary>
    public TimeSpan InitialRtt { get; set; } = TimeSpan.FromMilliseconds(333);

    /// <summary>Maximum delay before acknowledging (max_ack_delay). Default 25 ms.</summary>
    public TimeSpan MaxAckDelay { get; set; } = TimeSpan.FromMilliseconds(25);

    /// <summary>ack_delay_exponent advertised (0 to 20). Default 3.</summary>
    public int AckDelayExponent { get; set; } = 3;

    /// <summary>Number of peer connection IDs kept (active_connection_id_limit, at least 2). Default 4.</summary>
    public int ActiveConnectionIdLimit { get; set; } = 4;

    /// <summary>
    /// 1-RTT packets sealed under one key before this endpoint starts a key update by itself (RFC 9001 §6). Null (the
    /// default) updates only at the AEAD's confidentiality limit (2^23 packets for AES-GCM, RFC 9001 §6.6), which an
    /// endpoint must never pass; a smaller value renews keys more often (e.g. 1,000,000 packets, about 1.2 GB).
    /// </summary>
    public long? KeyUpdateInterval { get; set; }

    /// <summary>Disallow the peer from migrating to a new address (disable_active_migration). Default false.</summary>
    public bool DisableActiveMigration { get; set; }

    /// <summary>Advertise grease_quic_bit (RFC 9287), allowing the peer to vary the fixed bit. Default true.</summary>
    public bool GreaseQuicBit { get; set; } = true;

    /// <summary>
    /// QUIC versions supported, preferred first. Default version 1 then version 2. A client starts with the first and
    /// offers all of them in its version_information (RFC 9368). A server accepts a client's first flight in any of
    /// them, and when the client also offers a version listed before the one it started with, the server switches the
    /// connection to that version without a round trip (compatible version negotiation, RFC 9368 §2.3 and RFC 9369):
    /// with version 2 listed first, a client that starts in version 1 and offers version 2 completes in version 2.
    /// </summary>
    public IList<uint> SupportedVersions { get; set; } = new List<uint> { QuicVersion.Version1, QuicVersion.Version2 };

    /// <summary>Tests only: edits a copy of the local transport parameters (and whether we are the server) before TLS sends them, to play a misbehaving peer.</summary>
    internal Action<Parameters.TransportParameters, bool>? LocalTransportParametersTestHook { get; set; }

    /// <summary>TLS 1.3 cipher suites, preferred first. Default AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM.</summary>
    public IList<CipherSuite> CipherSuites { get; set; } = new List<CipherSuite> { CipherSuite.Aes128GcmSha256, CipherSuite.ChaCha20Poly1305Sha256, CipherSuite.Aes256GcmSha384 };

    /// <summary>Key exchange groups, preferred first; the client sends a key share for the first. Default X25519, secp256r1.</summary>
    public IList<KeyExchangeGroup> KeyExchangeGroups { get; set; } = new List<KeyExchangeGroup> { KeyExchangeGroup.X25519, KeyExchangeGroup.Secp256r1 };

    /// <summary>Server certificate with its private key (ECDSA P-256/P-384 or RSA).</summary>
    public X509Certificate2? Certificate { get; set; }

    /// <summary>Intermediate certificates sent after <see cref="Certificate"/>.</summary>
    public X509Certificate2Collection? CertificateChain { get; set; }

    /// <summary>Server: chooses a certificate by the SNI name the client sent (null name when none); a null result falls back to <see cref="Certificate"/>.</summary>
    public Func<string?, X509Certificate2?>? ServerCertificateSelector { get; set; }

    /// <summary>Client: the server name sent in SNI and checked against the server certificate.</summary>
    public string? ServerName { get; set; }

    /// <summary>Validate the peer certificate chain (client: always the server's; server: the client's when one is requested). Default true.</summary>
    public bool ValidateCertificates { get; set; } = true;

    /// <summary>Trust the operating system's root store. Default true.</summary>
    public bool UseSystemTrust { get; set; } = true;

    /// <summary>Additional trusted certificate authorities (custom roots).</summary>
    public X509Certificate2Collection? TrustedCertificateAuthorities { get; set; }

    /// <summary>
    /// Path of a PEM file of additional trusted certificate authorities (a CA bundle: one or more
    /// <c>-----BEGIN CERTIFICATE-----</c> blocks; other blocks are ignored), trusted together with
    /// <see cref="TrustedCertificateAuthorities"/>. Read once, when <see cref="Validate"/> first runs (listening or
    /// connecting does that) and shared by every <see cref="Clone"/>; set the property again to read the file anew.
    /// A missing, unreadable or certificate-less file is a validation error. Default null.
    /// </summary>
    public string? TrustedCertificateAuthoritiesPath
    {
        get => _trustedCertificateAuthoritiesFile?.Path;
        set => _trustedCertificateAuthoritiesFile = value is null ? null : new CertificateAuthorityFile(value);
    }

    /// <summary>Called after chain validation; its result decides. Receives the leaf, the built chain and the policy errors found.</summary>
    public Func<X509Certificate2, X509Chain?, SslPolicyErrors, bool>? CertificateValidationCallback { get; set; }

    /// <summary>Accept any server certificate without validation. Only for tests; never enabled implicitly.</summary>
    public bool DangerousAcceptAnyServerCertificate { get; set; }

    /// <summary>Client certificate (with private key) presented when the server asks.</summary>
    public X509Certificate2? ClientCertificate { get; set; }

    /// <summary>Server: whether clients are asked for a certificate. Default none.</summary>
    public ClientCertificateMode ClientCertificateMode { get; set; } = ClientCertificateMode.NoCertificate;

    /// <summary>Client: a session ticket from an earlier connection (as delivered by the session ticket event) to resume with.</summary>
    public byte[]? SessionTicket { get; set; }

    /// <summary>
    /// Client: send 0-RTT data when resuming; server: accept 0-RTT, each session ticket's at most once per listener.
    /// Default false. 0-RTT data can still be replayed to another server sharing the ticket key: serve only safe
    /// (idempotent) requests from streams whose <see cref="QuicStream.IsEarlyData"/> is true.
    /// </summary>
    public bool EnableEarlyData { get; set; }

    /// <summary>Server: 32-byte key that encrypts session tickets; share it between instances to resume across them. Random when null.</summary>
    public byte[]? SessionTicketKey { get; set; }

    /// <summary>Server: session ticket lifetime (at most 7 days). Default 24 hours.</summary>
    public TimeSpan SessionTicketLifetime { get; set; } = TimeSpan.FromHours(24);

    /// <summary>
    /// Path of an NSS key log file (the SSLKEYLOGFILE format) to append TLS secrets to, for decrypting captures in
    /// Wireshark; null disables it. Anyone who can read the file can decrypt the traffic: debugging only. Default null.
    /// </summary>
    public string? SecretsLogFile { get; set; }

    /// <summary>
    /// When <see cref="SecretsLogFile"/> is null, use the path in the SSLKEYLOGFILE environment variable (if set).
    /// Opt-in so that a stray variable never leaks secrets; a warning is logged when active. Default false.
    /// </summary>
    public bool UseSslKeyLogFileEnvironmentVariable { get; set; }

    /// <summary>
    /// Directory receiving one qlog file per connection (JSON-SEQ, named by the original destination connection ID
    /// and role, e.g. <c>1a2b…_server.sqlog</c>), for qvis; created if missing. Null disables qlog. Default null.
    /// </summary>
    public string? QlogDirectory { get; set; }

    /// <summary>Server: when to send Retry. Default <see cref="RetryMode.UnderLoad"/>.</summary>
    public RetryMode Retry { get; set; } = RetryMode.UnderLoad;

    /// <summary>Server: once this many handshakes are in progress, <see cref="RetryMode.UnderLoad"/> answers new ones with Retry. Default 100.</summary>
    public int RetryHandshakeThreshold { get; set; } = 100;

    /// <summary>UDP socket receive buffer (SO_RCVBUF) in bytes; 0 keeps the system default. Default 4 MiB.</summary>
    public int SocketReceiveBufferSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>UDP socket send buffer (SO_SNDBUF) in bytes; 0 keeps the system default. Default 4 MiB.</summary>
    public int SocketSendBufferSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>Maximum bytes of CRYPTO data buffered out of order per encryption level. Default 64 KiB.</summary>
    public int MaxCryptoBufferSize { get; set; } = 64 * 1024;

    /// <summary>Returns every problem found, each naming the property; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (ConnectionIdLength is < 4 or > 20) errors.Add($"{nameof(ConnectionIdLength)} must be between 4 and 20 (was {ConnectionIdLength}).");
        if (IdleTimeout < TimeSpan.Zero) errors.Add($"{nameof(IdleTimeout)} must not be negative (was {IdleTimeout}).");
        if (IdleTimeout.TotalMilliseconds > (double)VarIntMax) errors.Add($"{nameof(IdleTimeout)} is too large.");
        // Receive windows only grow from their initial size and an update is sent when less than half is left:
        // a window of 0 or 1 byte never reopens and no stream data could ever be received.
        CheckRange(errors, nameof(MaxData), MaxData, 2, (long)VarIntMax);
        CheckRange(errors, nameof(MaxStreamData), MaxStreamData, 2, (long)VarIntMax);
        if (MaxConnectionReceiveWindow < MaxData) errors.Add($"{nameof(MaxConnectionReceiveWindow)} must be at least {nameof(MaxData)} ({MaxData}).");
        if (MaxStreamReceiveWindow < MaxStreamData) errors.Add($"{nameof(MaxStreamReceiveWindow)} must be at least {nameof(MaxStreamData)} ({MaxStreamData}).");
        CheckRange(errors, nameof(MaxBidirectionalStreams), MaxBidirectionalStreams, 0, 1L << 60);
        CheckRange(errors, nameof(MaxUnidirectionalStreams), MaxUnidirectionalStreams, 0, 1L << 60);
        CheckRange(errors, nameof(MaxDatagramSize), MaxDatagramSize, 1200, 65527);
        if (PathMtuDiscoveryUpperBound != 0) CheckRange(errors, nameof(PathMtuDiscoveryUpperBound), PathMtuDiscoveryUpperBound, 1200, 65527);
        CheckRange(errors, nameof(MaxUdpPayloadSize), MaxUdpPayloadSize, 1200, 65527);
        if (MaxDatagramFrameSize is long mdfs) CheckRange(errors, nameof(MaxDatagramFrameSize), mdfs, 0, (long)VarIntMax);
        if (InitialRtt <= TimeSpan.Zero || InitialRtt > TimeSpan.FromSeconds(60)) errors.Add($"{nameof(InitialRtt)} must be between 0 and 60 s (was {InitialRtt}).");
        if (MaxAckDelay < TimeSpan.Zero || MaxAckDelay.TotalMilliseconds >= 1 << 14) errors.Add($"{nameof(MaxAckDelay)} must be between 0 and 16383 ms (was {MaxAckDelay}).");
        CheckRange(errors, nameof(AckDelayExponent), AckDelayExponent, 0, 20);
        CheckRange(errors, nameof(ActiveConnectionIdLimit), ActiveConnectionIdLimit, 2, 64);
        if (KeyUpdateInterval is long kui) CheckRange(errors, nameof(KeyUpdateInterval), kui, 1, long.MaxValue);
        if (SupportedVersions is null || SupportedVersions.Count == 0) errors.Add($"{nameof(SupportedVersions)} must list at least one version.");
        else
        {
            foreach (uint v in SupportedVersions)
            {
                if (!QuicVersion.IsSupported(v)) errors.Add($"{nameof(SupportedVersions)} contains unsupported version 0x{v:x8}.");
            }
        }

        if (CipherSuites is null || CipherSuites.Count == 0) errors.Add($"{nameof(CipherSuites)} must list at least one cipher suite.");
        else
        {
            foreach (CipherSuite s in CipherSuites)
            {
                if (!CipherSuiteInfo.IsDefined((ushort)s)) errors.Add($"{nameof(CipherSuites)} contains unknown cipher suite 0x{(ushort)s:x4}.");
            }
        }

        if (KeyExchangeGroups is null || KeyExchangeGroups.Count == 0) errors.Add($"{nameof(KeyExchangeGroups)} must list at least one group.");
        else
        {
            foreach (KeyExchangeGroup g in KeyExchangeGroups)
            {
                if (!Enum.IsDefined(g)) errors.Add($"{nameof(KeyExchangeGroups)} contains unknown group 0x{(ushort)g:x4}.");
            }
        }

        if (ApplicationProtocols is null || ApplicationProtocols.Count == 0) errors.Add($"{nameof(ApplicationProtocols)} must list at least one ALPN protocol (QUIC requires ALPN).");
        else
        {
            foreach (string p in ApplicationProtocols)
            {
                if (string.IsNullOrEmpty(p) || System.Text.Encoding.UTF8.GetByteCount(p) > 255) errors.Add($"{nameof(ApplicationProtocols)} contains an empty or over-long (> 255 bytes) protocol.");
            }
        }

        if (SessionTicketKey is not null && SessionTicketKey.Length != 32) errors.Add($"{nameof(SessionTicketKey)} must be 32 bytes (was {SessionTicketKey.Length}).");
        if (SessionTicketLifetime <= TimeSpan.Zero || SessionTicketLifetime > TimeSpan.FromDays(7)) errors.Add($"{nameof(SessionTicketLifetime)} must be between 0 and 7 days (was {SessionTicketLifetime}).");
        if (_trustedCertificateAuthoritiesFile is { } caFile && caFile.Load() is string caProblem)
        {
            errors.Add($"{nameof(TrustedCertificateAuthoritiesPath)} {caProblem}");
        }

        if (Certificate is not null && !Certificate.HasPrivateKey) errors.Add($"{nameof(Certificate)} must include its private key.");
        if (ClientCertificate is not null && !ClientCertificate.HasPrivateKey) errors.Add($"{nameof(ClientCertificate)} must include its private key.");
        if (!Enum.IsDefined(CongestionControl)) errors.Add($"{nameof(CongestionControl)} must be NewReno or Cubic (was {CongestionControl}).");
        if (!Enum.IsDefined(Retry)) errors.Add($"{nameof(Retry)} must be Never, Always or UnderLoad (was {Retry}).");
        if (!Enum.IsDefined(ClientCertificateMode)) errors.Add($"{nameof(ClientCertificateMode)} is not a defined value (was {ClientCertificateMode}).");
        CheckRange(errors, nameof(RetryHandshakeThreshold), RetryHandshakeThreshold, 0, int.MaxValue);
        CheckRange(errors, nameof(SocketReceiveBufferSize), SocketReceiveBufferSize, 0, int.MaxValue);
        CheckRange(errors, nameof(SocketSendBufferSize), SocketSendBufferSize, 0, int.MaxValue);
        CheckRange(errors, nameof(MaxCryptoBufferSize), MaxCryptoBufferSize, 4096, 16 * 1024 * 1024);
        return errors;
    }

    /// <summary>Throws <see cref="ArgumentException"/> listing every problem <see cref="Validate"/> finds.</summary>
    public void ThrowIfInvalid()
    {
        IReadOnlyList<string> errors = Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid QUIC configuration: " + string.Join(" ", errors));
        }
    }

    /// <summary>A shallow copy, so per-connection changes (e.g. a certificate chosen by SNI) do not leak into the shared instance.</summary>
    public QuicConfiguration Clone()
    {
        var copy = (QuicConfiguration)MemberwiseClone();
        copy.ApplicationProtocols = new List<string>(ApplicationProtocols);
        copy.SupportedVersions = new List<uint>(SupportedVersions);
        copy.CipherSuites = new List<CipherSuite>(CipherSuites);
        copy.KeyExchangeGroups = new List<KeyExchangeGroup>(KeyExchangeGroups);
        return copy;
    }

    private const ulong VarIntMax = (1UL << 62) - 1;

    // Shared by clones (MemberwiseClone copies the reference): a client clones its configuration per connection, and
    // the file must still be read only once.
    private CertificateAuthorityFile? _trustedCertificateAuthoritiesFile;

    /// <summary>
    /// The roots chain validation trusts besides the system store: <see cref="TrustedCertificateAuthorities"/> plus
    /// the certificates of <see cref="TrustedCertificateAuthoritiesPath"/> (loaded by <see cref="Validate"/>, which
    /// every connection runs first; throws <see cref="InvalidOperationException"/> if the file cannot be loaded).
    /// </summary>
    internal X509Certificate2Collection? EffectiveTrustedCertificateAuthorities()
    {
        if (_trustedCertificateAuthoritiesFile is not { } file) return TrustedCertificateAuthorities;
        if (file.Load() is string problem) throw new InvalidOperationException($"{nameof(TrustedCertificateAuthoritiesPath)} {problem}");
        X509Certificate2Collection fromFile = file.Certificates!;
        if (TrustedCertificateAuthorities is not { Count: > 0 } inMemory) return fromFile;
        var both = new X509Certificate2Collection(inMemory);
        both.AddRange(fromFile);
        return both;
    }

    private static void CheckRange(List<string> errors, string name, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            errors.Add($"{name} must be between {min} and {max} (was {value}).");
        }
    }
}

/// <summary>A PEM file of trusted roots, read on first use; a failed read is retried next time (the file may appear later).</summary>
internal sealed class CertificateAuthorityFile(string path)
{
    private readonly Lock _lock = new();
    private X509Certificate2Collection? _certificates;

    public string Path { get; } = path;

    /// <summary>The certificates once <see cref="Load"/> succeeded.</summary>
    public X509Certificate2Collection? Certificates => Volatile.Read(ref _certificates);

    /// <summary>Reads the file unless already read; returns null on success, else what is wrong (completing "&lt;property&gt; ...").</summary>
    public string? Load()
    {
        if (Certificates is not null) return null;
        lock (_lock)
        {
            if (Certificates is not null) return null;
            if (string.IsNullOrWhiteSpace(Path)) return "must name a PEM file (was empty).";
            var certificates = new X509Certificate2Collection();
            try
            {
                certificates.ImportFromPemFile(Path);
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
            {
                return $"names a file that does not exist: '{Path}'.";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException or NotSupportedException)
            {
                return $"could not be read as a PEM file: '{Path}': {e.Message}";
            }

            if (certificates.Count == 0) return $"names a file with no PEM certificate (-----BEGIN CERTIFICATE-----) in it: '{Path}'.";
            Volatile.Write(ref _certificates, certificates);
            return null;
        }
    }
}
