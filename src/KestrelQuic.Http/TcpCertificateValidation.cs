using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;

namespace KestrelQuic.Http;

/// <summary>
/// The trust a <see cref="QuicConfiguration"/> describes (system store, extra certificate authorities, callback, or
/// none at all) applied to a TCP/TLS connection, so that <see cref="AltSvcHttp3Handler"/>'s default fallback handler
/// accepts the servers its HTTP/3 connections accept. SslStream has already checked the host name and the chain
/// against the system store; this adds the configured authorities and hands the outcome to the callback, as the
/// QUIC handshake does.
/// </summary>
internal static class TcpCertificateValidation
{
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    /// <summary>True when the configuration trusts something other than the system store alone.</summary>
    public static bool IsCustom(QuicConfiguration configuration) =>
        configuration.DangerousAcceptAnyServerCertificate || !configuration.ValidateCertificates || !configuration.UseSystemTrust
        || configuration.TrustedCertificateAuthorities is { Count: > 0 } || configuration.CertificateValidationCallback is not null;

    public static bool Validate(QuicConfiguration configuration, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        if (configuration.DangerousAcceptAnyServerCertificate || !configuration.ValidateCertificates)
        {
            return true;
        }

        if (certificate is null)
        {
            return false;
        }

        using X509Certificate2? converted = certificate as X509Certificate2 is null ? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()) : null;
        X509Certificate2 leaf = converted ?? (X509Certificate2)certificate;
        SslPolicyErrors result = errors & ~SslPolicyErrors.RemoteCertificateChainErrors;
        bool trustedBySystem = configuration.UseSystemTrust && (errors & SslPolicyErrors.RemoteCertificateChainErrors) == 0;
        bool built = false;
        using X509Chain? custom = !trustedBySystem && configuration.TrustedCertificateAuthorities is { Count: > 0 } authorities
            ? BuildCustomChain(leaf, chain, authorities, out built)
            : null;
        if (!trustedBySystem && !built)
        {
            result |= SslPolicyErrors.RemoteCertificateChainErrors;
        }

        return configuration.CertificateValidationCallback is { } callback
            ? callback(leaf, custom ?? chain, result)
            : result == SslPolicyErrors.None;
    }

    private static X509Chain BuildCustomChain(X509Certificate2 leaf, X509Chain? received, X509Certificate2Collection authorities, out bool built)
    {
        var chain = new X509Chain();
        X509ChainPolicy policy = chain.ChainPolicy;
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.ApplicationPolicy.Add(new Oid(ServerAuthOid));
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(authorities);
        if (received is not null)
        {
            // The intermediates the server sent.
            policy.ExtraStore.AddRange(received.ChainPolicy.ExtraStore);
        }

        try
        {
            built = chain.Build(leaf);
        }
        catch (CryptographicException)
        {
            built = false;
        }

        return chain;
    }
}
