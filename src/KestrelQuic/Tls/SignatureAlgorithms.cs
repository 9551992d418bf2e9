using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;

namespace KestrelQuic.Tls;

/// <summary>CertificateVerify construction and verification (RFC 8446 §4.4.3).</summary>
internal static class SignatureAlgorithms
{
    public const string RsaPssOid = "1.2.840.113549.1.1.10";
    public const string RsaOid = "1.2.840.113549.1.1.1";
    public const string EcPublicKeyOid = "1.2.840.10045.2.1";
    public const string Ed25519Oid = "1.3.101.112";

    private static readonly byte[] s_serverContext = "TLS 1.3, server CertificateVerify"u8.ToArray();
    private static readonly byte[] s_clientContext = "TLS 1.3, client CertificateVerify"u8.ToArray();

    public static HashAlgorithmName GetHash(SignatureScheme scheme) => scheme switch
    {
        SignatureScheme.EcdsaSecp384r1Sha384 or SignatureScheme.RsaPssRsaeSha384 or SignatureScheme.RsaPssPssSha384 or SignatureScheme.RsaPkcs1Sha384 => HashAlgorithmName.SHA384,
        SignatureScheme.EcdsaSecp521r1Sha512 or SignatureScheme.RsaPssRsaeSha512 or SignatureScheme.RsaPssPssSha512 or SignatureScheme.RsaPkcs1Sha512 => HashAlgorithmName.SHA512,
        SignatureScheme.RsaPkcs1Sha1 or SignatureScheme.EcdsaSha1 => HashAlgorithmName.SHA1,
        _ => HashAlgorithmName.SHA256,
    };

    /// <summary>Schemes allowed in CertificateVerify (no PKCS#1 v1.5, no SHA-1, RFC 8446 §4.4.3).</summary>
    public static bool IsHandshakeScheme(SignatureScheme scheme) => scheme is
        SignatureScheme.EcdsaSecp256r1Sha256 or SignatureScheme.EcdsaSecp384r1Sha384 or SignatureScheme.EcdsaSecp521r1Sha512 or
        SignatureScheme.RsaPssRsaeSha256 or SignatureScheme.RsaPssRsaeSha384 or SignatureScheme.RsaPssRsaeSha512 or
        SignatureScheme.RsaPssPssSha256 or SignatureScheme.RsaPssPssSha384 or SignatureScheme.RsaPssPssSha512 or
        SignatureScheme.Ed25519;

    /// <summary>64 spaces, the context string, a zero byte, then the transcript hash.</summary>
    public static byte[] BuildSignedContent(bool server, ReadOnlySpan<byte> transcriptHash)
    {
        byte[] context = server ? s_serverContext : s_clientContext;
        byte[] content = new byte[64 + context.Length + 1 + transcriptHash.Length];
        content.AsSpan(0, 64).Fill(0x20);
        context.CopyTo(content, 64);
        transcriptHash.CopyTo(content.AsSpan(64 + context.Length + 1));
        return content;
    }

    /// <summary>Verifies a CertificateVerify signature; null when valid, else the alert.</summary>
    public static TlsAlert? Verify(X509Certificate2 certificate, SignatureScheme scheme, byte[] content, ReadOnlySpan<byte> signature)
    {
        try
        {
            string? keyOid = certificate.PublicKey.Oid.Value;
            switch (scheme)
            {
                case SignatureScheme.EcdsaSecp256r1Sha256:
                case SignatureScheme.EcdsaSecp384r1Sha384:
                case SignatureScheme.EcdsaSecp521r1Sha512:
                {
                    using ECDsa? ecdsa = keyOid == EcPublicKeyOid ? certificate.GetECDsaPublicKey() : null;
                    int expectedSize = scheme switch
                    {
                        SignatureScheme.EcdsaSecp256r1Sha256 => 256,
                        SignatureScheme.EcdsaSecp384r1Sha384 => 384,
                        _ => 521,
                    };

                    // In TLS 1.3 the scheme pins the curve (RFC 8446 §4.2.3).
                    if (ecdsa is null || ecdsa.KeySize != expectedSize)
                    {
                        return TlsAlert.IllegalParameter;
                    }

                    return ecdsa.VerifyData(content, signature, GetHash(scheme), DSASignatureFormat.Rfc3279DerSequence) ? null : TlsAlert.DecryptError;
                }

                case SignatureScheme.RsaPssRsaeSha256:
                case SignatureScheme.RsaPssRsaeSha384:
                case SignatureScheme.RsaPssRsaeSha512:
                case SignatureScheme.RsaPssPssSha256:
                case SignatureScheme.RsaPssPssSha384:
                case SignatureScheme.RsaPssPssSha512:
                {
                    bool pssKey = scheme >= SignatureScheme.RsaPssPssSha256;
                    if (keyOid != (pssKey ? RsaPssOid : RsaOid))
                    {
                        return TlsAlert.IllegalParameter;
                    }

                    using RSA? rsa = certificate.GetRSAPublicKey();
                    if (rsa is null)
                    {
                        return TlsAlert.UnsupportedCertificate;
                    }

                    return rsa.VerifyData(content, signature, GetHash(scheme), RSASignaturePadding.Pss) ? null : TlsAlert.DecryptError;
                }

                case SignatureScheme.Ed25519:
                {
                    byte[] key = certificate.PublicKey.EncodedKeyValue.RawData;
                    if (keyOid != Ed25519Oid || key.Length != 32)
                    {
                        return TlsAlert.IllegalParameter;
                    }

                    var verifier = new Ed25519Signer();
                    verifier.Init(false, new Ed25519PublicKeyParameters(key, 0));
                    verifier.BlockUpdate(content, 0, content.Length);
                    return verifier.VerifySignature(signature.ToArray()) ? null : TlsAlert.DecryptError;
                }

                default:
                    return TlsAlert.IllegalParameter;
            }
        }
        catch (CryptographicException)
        {
            return TlsAlert.DecryptError;
        }
        catch (ArgumentException)
        {
            return TlsAlert.DecryptError;
        }
    }
}
