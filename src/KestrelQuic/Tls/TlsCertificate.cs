using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;

namespace KestrelQuic.Tls;

/// <summary>A certificate chain plus the private key operation used for CertificateVerify (RFC 8446 §4.4.3).</summary>
public abstract class TlsCertificate
{
    private protected TlsCertificate(IReadOnlyList<byte[]> certificateChain, X509Certificate2 leaf)
    {
        CertificateChain = certificateChain;
        Leaf = leaf;
    }

    /// <summary>DER certificates, leaf first.</summary>
    public IReadOnlyList<byte[]> CertificateChain { get; }

    /// <summary>The leaf certificate.</summary>
    public X509Certificate2 Leaf { get; }

    /// <summary>Signature schemes this key can produce, in preference order.</summary>
    public abstract IReadOnlyList<SignatureScheme> SupportedSchemes { get; }

    /// <summary>Signs <paramref name="data"/> with <paramref name="scheme"/> (ECDSA signatures DER-encoded).</summary>
    public abstract byte[] Sign(SignatureScheme scheme, ReadOnlySpan<byte> data);

    /// <summary>Wraps a platform certificate with an ECDSA (P-256/P-384/P-521) or RSA private key.</summary>
    public static TlsCertificate FromX509(X509Certificate2 leafWithPrivateKey, X509Certificate2Collection? intermediates = null)
    {
        ArgumentNullException.ThrowIfNull(leafWithPrivateKey);
        List<byte[]> chain = [leafWithPrivateKey.RawData];
        if (intermediates is not null)
        {
            foreach (X509Certificate2 c in intermediates)
            {
                chain.Add(c.RawData);
            }
        }

        ECDsa? ecdsa = leafWithPrivateKey.GetECDsaPrivateKey();
        if (ecdsa is not null)
        {
            return new EcdsaTlsCertificate(chain, leafWithPrivateKey, ecdsa);
        }

        RSA? rsa = leafWithPrivateKey.GetRSAPrivateKey();
        if (rsa is not null)
        {
            return new RsaTlsCertificate(chain, leafWithPrivateKey, rsa);
        }

        throw new ArgumentException("The certificate has no supported private key (ECDSA or RSA).", nameof(leafWithPrivateKey));
    }

    /// <summary>Wraps an Ed25519 certificate (DER) and its 32-byte private key (RFC 8032 seed).</summary>
    public static TlsCertificate FromEd25519(byte[] certificateDer, byte[] privateKey32, IReadOnlyList<byte[]>? intermediatesDer = null)
    {
        ArgumentNullException.ThrowIfNull(certificateDer);
        ArgumentNullException.ThrowIfNull(privateKey32);
        if (privateKey32.Length != 32)
        {
            throw new ArgumentException("An Ed25519 private key is 32 bytes.", nameof(privateKey32));
        }

        List<byte[]> chain = [certificateDer];
        if (intermediatesDer is not null)
        {
            chain.AddRange(intermediatesDer);
        }

        return new Ed25519TlsCertificate(chain, X509CertificateLoader.LoadCertificate(certificateDer), privateKey32);
    }

    private sealed class EcdsaTlsCertificate : TlsCertificate
    {
        private readonly ECDsa _key;
        private readonly SignatureScheme[] _schemes;

        public EcdsaTlsCertificate(IReadOnlyList<byte[]> chain, X509Certificate2 leaf, ECDsa key)
            : base(chain, leaf)
        {
            _key = key;
            _schemes = key.KeySize switch
            {
                256 => [SignatureScheme.EcdsaSecp256r1Sha256],
                384 => [SignatureScheme.EcdsaSecp384r1Sha384],
                521 => [SignatureScheme.EcdsaSecp521r1Sha512],
                _ => throw new ArgumentException("Unsupported ECDSA curve.", nameof(key)),
            };
        }

        public override IReadOnlyList<SignatureScheme> SupportedSchemes => _schemes;

        public override byte[] Sign(SignatureScheme scheme, ReadOnlySpan<byte> data) =>
            _key.SignData(data, SignatureAlgorithms.GetHash(scheme), DSASignatureFormat.Rfc3279DerSequence);
    }

    private sealed class RsaTlsCertificate : TlsCertificate
    {
        private static readonly SignatureScheme[] s_rsaeSchemes =
            [SignatureScheme.RsaPssRsaeSha256, SignatureScheme.RsaPssRsaeSha384, SignatureScheme.RsaPssRsaeSha512];

        private static readonly SignatureScheme[] s_pssSchemes =
            [SignatureScheme.RsaPssPssSha256, SignatureScheme.RsaPssPssSha384, SignatureScheme.RsaPssPssSha512];

        private readonly RSA _key;
        private readonly SignatureScheme[] _schemes;

        public RsaTlsCertificate(IReadOnlyList<byte[]> chain, X509Certificate2 leaf, RSA key)
            : base(chain, leaf)
        {
            _key = key;

            // A key with the id-RSASSA-PSS OID signs with rsa_pss_pss_*, an rsaEncryption key with rsa_pss_rsae_* (RFC 8446 §4.2.3).
            _schemes = leaf.PublicKey.Oid.Value == SignatureAlgorithms.RsaPssOid ? s_pssSchemes : s_rsaeSchemes;
        }

        public override IReadOnlyList<SignatureScheme> SupportedSchemes => _schemes;

        // RSASSA-PSS with salt length = hash length (RFC 8446 §4.2.3); .NET's PSS padding uses exactly that.
        public override byte[] Sign(SignatureScheme scheme, ReadOnlySpan<byte> data) =>
            _key.SignData(data.ToArray(), SignatureAlgorithms.GetHash(scheme), RSASignaturePadding.Pss);
    }

    private sealed class Ed25519TlsCertificate : TlsCertificate
    {
        private static readonly SignatureScheme[] s_schemes = [SignatureScheme.Ed25519];
        private readonly Ed25519PrivateKeyParameters _key;

        public Ed25519TlsCertificate(IReadOnlyList<byte[]> chain, X509Certificate2 leaf, byte[] privateKey)
            : base(chain, leaf)
        {
            _key = new Ed25519PrivateKeyParameters(privateKey, 0);
        }

        public override IReadOnlyList<SignatureScheme> SupportedSchemes => s_schemes;

        public override byte[] Sign(SignatureScheme scheme, ReadOnlySpan<byte> data)
        {
            var signer = new Ed25519Signer();
            signer.Init(true, _key);
            byte[] message = data.ToArray();
            signer.BlockUpdate(message, 0, message.Length);
            return signer.GenerateSignature();
        }
    }
}
