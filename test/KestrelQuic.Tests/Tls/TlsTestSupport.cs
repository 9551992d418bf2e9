using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;
using Org.BouncyCastle.Crypto.Operators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Math;
using Org.BouncyCastle.Security;
using Org.BouncyCastle.X509;

namespace KestrelQuic.Tests.Tls;

internal sealed class ManualTimeProvider(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>Records everything a <see cref="TlsHandshake"/> hands to its connection.</summary>
internal sealed class RecordingHost : ITlsHandshakeHost
{
    public Queue<(EncryptionLevel Level, byte[] Data)> Pending { get; } = new();

    public List<(EncryptionLevel Level, byte[] Data)> Sent { get; } = [];

    public Dictionary<(EncryptionLevel, TrafficDirection), (CipherSuite Suite, byte[] Secret)> Secrets { get; } = [];

    public List<(EncryptionLevel, TrafficDirection)> SecretOrder { get; } = [];

    public List<TlsSessionTicket> Tickets { get; } = [];

    public void OnHandshakeData(EncryptionLevel level, ReadOnlySpan<byte> data)
    {
        Pending.Enqueue((level, data.ToArray()));
        Sent.Add((level, data.ToArray()));
    }

    public void OnSecret(EncryptionLevel level, TrafficDirection direction, CipherSuite suite, ReadOnlySpan<byte> secret)
    {
        Assert.True(Secrets.TryAdd((level, direction), (suite, secret.ToArray())), $"secret {level}/{direction} installed twice");
        SecretOrder.Add((level, direction));
    }

    public void OnSessionTicket(TlsSessionTicket ticket) => Tickets.Add(ticket);

    /// <summary>Message types sent, in order (messages are parsed out of the byte stream per level).</summary>
    public List<(EncryptionLevel Level, byte Type)> SentMessageTypes()
    {
        var result = new List<(EncryptionLevel, byte)>();
        var streams = new Dictionary<EncryptionLevel, List<byte>>();
        foreach ((EncryptionLevel level, byte[] data) in Sent)
        {
            if (!streams.TryGetValue(level, out List<byte>? s))
            {
                streams[level] = s = [];
            }

            s.AddRange(data);
            while (s.Count >= 4)
            {
                int length = (s[1] << 16) | (s[2] << 8) | s[3];
                if (s.Count < 4 + length)
                {
                    break;
                }

                result.Add((level, s[0]));
                s.RemoveRange(0, 4 + length);
            }
        }

        return result;
    }
}

internal sealed class TlsPair : IDisposable
{
    public TlsPair(TlsOptions clientOptions, TlsOptions serverOptions)
    {
        ClientOptions = clientOptions;
        ServerOptions = serverOptions;
        Client = new TlsHandshake(clientOptions, ClientHost);
        Server = new TlsHandshake(serverOptions, ServerHost);
    }

    public TlsOptions ClientOptions { get; }

    public TlsOptions ServerOptions { get; }

    public RecordingHost ClientHost { get; } = new();

    public RecordingHost ServerHost { get; } = new();

    public TlsHandshake Client { get; }

    public TlsHandshake Server { get; }

    public TlsAlert? ClientAlert { get; private set; }

    public TlsAlert? ServerAlert { get; private set; }

    public byte[] ClientTransportParameters { get; set; } = [0x01, 0x02, 0x03];

    /// <summary>Rewrites a flight before delivery: (fromClient, level, message) → bytes to deliver.</summary>
    public Func<bool, EncryptionLevel, byte[], byte[]>? Transform { get; set; }

    public byte[] ServerTransportParameters { get; set; } = [0x0a, 0x0b];

    public static TlsPair Run(TlsOptions clientOptions, TlsOptions serverOptions, bool byteByByte = false, Func<bool, EncryptionLevel, byte[], byte[]>? transform = null)
    {
        var pair = new TlsPair(clientOptions, serverOptions) { Transform = transform };
        pair.Start();
        pair.Pump(byteByByte);
        return pair;
    }

    public void Start()
    {
        Server.Start(ServerTransportParameters);
        Client.Start(ClientTransportParameters);
    }

    public void Pump(bool byteByByte = false)
    {
        for (int i = 0; i < 100 && ClientAlert is null && ServerAlert is null; i++)
        {
            bool progressed = false;
            while (ClientHost.Pending.Count > 0 && ServerAlert is null)
            {
                (EncryptionLevel level, byte[] data) = ClientHost.Pending.Dequeue();
                data = Transform?.Invoke(true, level, data) ?? data;
                ServerAlert = Feed(Server, level, data, byteByByte);
                progressed = true;
            }

            while (ServerHost.Pending.Count > 0 && ClientAlert is null && ServerAlert is null)
            {
                (EncryptionLevel level, byte[] data) = ServerHost.Pending.Dequeue();
                data = Transform?.Invoke(false, level, data) ?? data;
                ClientAlert = Feed(Client, level, data, byteByByte);
                progressed = true;
            }

            if (!progressed)
            {
                break;
            }
        }
    }

    private static TlsAlert? Feed(TlsHandshake tls, EncryptionLevel level, byte[] data, bool byteByByte)
    {
        if (!byteByByte)
        {
            return tls.ProcessCryptoData(level, data);
        }

        foreach (byte b in data)
        {
            if (tls.ProcessCryptoData(level, [b]) is { } alert)
            {
                return alert;
            }
        }

        return null;
    }

    public void AssertSucceeded()
    {
        Assert.True(ClientAlert is null, $"client alert {ClientAlert}: {Client.FailureReason}");
        Assert.True(ServerAlert is null, $"server alert {ServerAlert}: {Server.FailureReason}");
        Assert.True(Client.IsHandshakeComplete);
        Assert.True(Server.IsHandshakeComplete);
        AssertSecretsMatch(EncryptionLevel.Handshake);
        AssertSecretsMatch(EncryptionLevel.OneRtt);
        Assert.Equal(ServerTransportParameters, Client.PeerTransportParameters);
        Assert.Equal(ClientTransportParameters, Server.PeerTransportParameters);
        Assert.Equal(Client.NegotiatedCipherSuite, Server.NegotiatedCipherSuite);
        Assert.Equal(Client.NegotiatedApplicationProtocol, Server.NegotiatedApplicationProtocol);
        Assert.Equal(Client.NegotiatedGroup, Server.NegotiatedGroup);
    }

    public void AssertSecretsMatch(EncryptionLevel level)
    {
        (CipherSuite cs, byte[] clientWrite) = ClientHost.Secrets[(level, TrafficDirection.Write)];
        (CipherSuite ss, byte[] serverRead) = ServerHost.Secrets[(level, TrafficDirection.Read)];
        Assert.Equal(cs, ss);
        Assert.Equal(clientWrite, serverRead);
        if (level != EncryptionLevel.ZeroRtt)
        {
            Assert.Equal(ClientHost.Secrets[(level, TrafficDirection.Read)].Secret, ServerHost.Secrets[(level, TrafficDirection.Write)].Secret);
            Assert.NotEqual(clientWrite, ClientHost.Secrets[(level, TrafficDirection.Read)].Secret);
        }

        Assert.Equal(CipherSuiteInfo.HashLength(cs), clientWrite.Length);
    }

    public void Dispose()
    {
        Client.Dispose();
        Server.Dispose();
    }
}

internal static class TestCertificates
{
    public static readonly DateTimeOffset NotBefore = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset NotAfter = new(2034, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset Now = new(2026, 6, 1, 12, 0, 0, TimeSpan.Zero);

    private static readonly Lazy<X509Certificate2> s_ca = new(() => CreateCa("CN=KestrelQuic Test CA"));
    private static readonly Lazy<X509Certificate2> s_otherCa = new(() => CreateCa("CN=Untrusted CA"));
    private static readonly Lazy<TlsCertificate> s_p256 = new(() => CreateLeaf("ecdsa256", "localhost"));
    private static readonly Lazy<TlsCertificate> s_p384 = new(() => CreateLeaf("ecdsa384", "localhost"));
    private static readonly Lazy<TlsCertificate> s_rsa = new(() => CreateLeaf("rsa", "localhost"));
    private static readonly Lazy<TlsCertificate> s_ed25519 = new(CreateEd25519);

    public static X509Certificate2 Ca => s_ca.Value;

    public static X509Certificate2 OtherCa => s_otherCa.Value;

    public static TlsCertificate EcdsaP256 => s_p256.Value;

    public static TlsCertificate EcdsaP384 => s_p384.Value;

    public static TlsCertificate Rsa2048 => s_rsa.Value;

    public static TlsCertificate Ed25519 => s_ed25519.Value;

    public static TlsCertificate Get(string keyType) => keyType switch
    {
        "ecdsa256" => EcdsaP256,
        "ecdsa384" => EcdsaP384,
        "rsa" => Rsa2048,
        "ed25519" => Ed25519,
        _ => throw new ArgumentOutOfRangeException(nameof(keyType)),
    };

    private static X509Certificate2 CreateCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(NotBefore, NotAfter);
    }

    public static TlsCertificate CreateLeaf(string keyType, string dnsName, X509Certificate2? issuer = null, DateTimeOffset? notAfter = null, string? ipAddress = null)
    {
        issuer ??= Ca;
        AsymmetricAlgorithm key = keyType switch
        {
            "ecdsa256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "ecdsa384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            "rsa" => RSA.Create(2048),
            _ => throw new ArgumentOutOfRangeException(nameof(keyType)),
        };
        CertificateRequest request = key is ECDsa ec
            ? new CertificateRequest("CN=" + dnsName, ec, HashAlgorithmName.SHA256)
            : new CertificateRequest("CN=" + dnsName, (RSA)key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(dnsName);
        if (ipAddress is not null)
        {
            san.AddIpAddress(IPAddress.Parse(ipAddress));
        }

        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        byte[] serial = RandomNumberGenerator.GetBytes(8);
        serial[0] &= 0x7f;
        using ECDsa issuerKey = issuer.GetECDsaPrivateKey()!;
        using X509Certificate2 cert = request.Create(issuer.SubjectName, X509SignatureGenerator.CreateForECDsa(issuerKey), NotBefore, notAfter ?? NotAfter.AddDays(-1), serial);
        X509Certificate2 withKey = key is ECDsa e2 ? cert.CopyWithPrivateKey(e2) : cert.CopyWithPrivateKey((RSA)key);
        return TlsCertificate.FromX509(withKey);
    }

    private static TlsCertificate CreateEd25519()
    {
        var random = new SecureRandom();
        var privateKey = new Ed25519PrivateKeyParameters(random);
        Ed25519PublicKeyParameters publicKey = privateKey.GeneratePublicKey();
        var generator = new X509V3CertificateGenerator();
        generator.SetSerialNumber(BigInteger.ValueOf(42));
        generator.SetIssuerDN(new Org.BouncyCastle.Asn1.X509.X509Name("CN=localhost"));
        generator.SetSubjectDN(new Org.BouncyCastle.Asn1.X509.X509Name("CN=localhost"));
        generator.SetNotBefore(NotBefore.UtcDateTime);
        generator.SetNotAfter(NotAfter.UtcDateTime);
        generator.SetPublicKey(publicKey);
        generator.AddExtension(
            Org.BouncyCastle.Asn1.X509.X509Extensions.SubjectAlternativeName,
            false,
            new Org.BouncyCastle.Asn1.X509.GeneralNames(new Org.BouncyCastle.Asn1.X509.GeneralName(Org.BouncyCastle.Asn1.X509.GeneralName.DnsName, "localhost")));
        Org.BouncyCastle.X509.X509Certificate cert = generator.Generate(new Asn1SignatureFactory("Ed25519", privateKey));
        return TlsCertificate.FromEd25519(cert.GetEncoded(), privateKey.GetEncoded());
    }

    public static TlsOptions ClientOptions(Action<TlsOptions>? configure = null)
    {
        var options = new TlsOptions
        {
            IsClient = true,
            ServerName = "localhost",
            ApplicationProtocols = ["h3"],
            TrustedCertificateAuthorities = [Ca],
            UseSystemTrust = false,
            TimeProvider = new ManualTimeProvider(Now),
        };
        configure?.Invoke(options);
        return options;
    }

    public static TlsOptions ServerOptions(Action<TlsOptions>? configure = null)
    {
        var options = new TlsOptions
        {
            IsClient = false,
            ApplicationProtocols = ["h3"],
            Certificate = EcdsaP256,
            TrustedCertificateAuthorities = [Ca],
            UseSystemTrust = false,
            TimeProvider = new ManualTimeProvider(Now),
        };
        configure?.Invoke(options);
        return options;
    }
}
