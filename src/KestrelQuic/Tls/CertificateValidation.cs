using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace KestrelQuic.Tls;

/// <summary>Validates the peer's certificate chain and (for servers) host name.</summary>
internal static class CertificateValidation
{
    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// Returns null when the certificate is accepted, else the alert to send and, in <paramref name="reason"/>, what
    /// failed (the chain status, the names the certificate holds, or the callback), for the error the application sees.
    /// </summary>
    public static TlsAlert? Validate(TlsOptions options, X509Certificate2 leaf, X509Certificate2Collection chainCertificates, bool peerIsServer, string? hostName, out string? reason)
    {
        reason = null;
        if (options.DangerousAcceptAnyServerCertificate || !options.ValidateCertificate)
        {
            return null;
        }

        bool haveCustom = options.TrustedCertificateAuthorities is { Count: > 0 };
        using X509Chain chain = BuildChain(options, leaf, chainCertificates, peerIsServer, custom: haveCustom, out bool built);
        X509Chain? finalChain = chain;
        using X509Chain? systemChain = haveCustom && !built && options.UseSystemTrust
            ? BuildChain(options, leaf, chainCertificates, peerIsServer, custom: false, out built)
            : null;
        if (systemChain is not null && built)
        {
            finalChain = systemChain;
        }

        SslPolicyErrors errors = SslPolicyErrors.None;
        bool noAnchors = !haveCustom && !options.UseSystemTrust;
        if (!built || noAnchors)
        {
            errors |= SslPolicyErrors.RemoteCertificateChainErrors;
        }

        if (peerIsServer && hostName is not null && !MatchesHostName(leaf, hostName))
        {
            errors |= SslPolicyErrors.RemoteCertificateNameMismatch;
        }

        if (options.CertificateValidationCallback is { } callback)
        {
            if (callback(leaf, finalChain, errors)) return null;
            reason = $"rejected by CertificateValidationCallback (policy errors: {errors})";
            return TlsAlert.BadCertificate;
        }

        if (errors == SslPolicyErrors.None)
        {
            return null;
        }

        TlsAlert alert = TlsAlert.BadCertificate;
        var text = new System.Text.StringBuilder();
        if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
        {
            X509ChainStatusFlags flags = X509ChainStatusFlags.NoError;
            foreach (X509ChainStatus status in finalChain.ChainStatus)
            {
                flags |= status.Status;
            }

            if (noAnchors)
            {
                text.Append("no trust anchors (UseSystemTrust is off and TrustedCertificateAuthorities/TrustedCertificateAuthoritiesPath give no root)");
                alert = TlsAlert.UnknownCa;
            }
            else
            {
                text.Append($"chain of '{leaf.Subject}' is not valid: {(flags == X509ChainStatusFlags.NoError ? "chain not built" : flags.ToString())}");
                if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
                {
                    text.Append($" (valid {leaf.NotBefore.ToUniversalTime():u} to {leaf.NotAfter.ToUniversalTime():u}, now {options.TimeProvider.GetUtcNow().UtcDateTime:u})");
                    alert = TlsAlert.CertificateExpired;
                }
                else if ((flags & X509ChainStatusFlags.Revoked) != 0)
                {
                    alert = TlsAlert.CertificateRevoked;
                }
                else if ((flags & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0 || !built)
                {
                    alert = TlsAlert.UnknownCa;
                }
            }
        }

        if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            if (text.Length > 0) text.Append("; ");
            text.Append($"name mismatch: '{hostName}' is not among the certificate's names ({DescribeNames(leaf)})");
        }

        reason = text.ToString();
        return alert;
    }

    private static string DescribeNames(X509Certificate2 leaf)
    {
        var names = new List<string>();
        foreach (X509Extension extension in leaf.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                try
                {
                    foreach (string dns in san.EnumerateDnsNames()) names.Add("DNS:" + dns);
                    foreach (System.Net.IPAddress ip in san.EnumerateIPAddresses()) names.Add("IP:" + ip);
                }
                catch (CryptographicException)
                {
                    names.Add("malformed subjectAltName");
                }
            }
        }

        if (names.Count == 0) names.Add(leaf.Subject);
        return string.Join(", ", names.Take(8)) + (names.Count > 8 ? ", ..." : string.Empty);
    }

    private static X509Chain BuildChain(TlsOptions options, X509Certificate2 leaf, X509Certificate2Collection certificates, bool peerIsServer, bool custom, out bool built)
    {
        var chain = new X509Chain();
        X509ChainPolicy policy = chain.ChainPolicy;
        policy.RevocationMode = options.RevocationMode;
        policy.VerificationTime = options.TimeProvider.GetUtcNow().UtcDateTime;
        policy.ApplicationPolicy.Add(new Oid(peerIsServer ? ServerAuthOid : ClientAuthOid));
        for (int i = 1; i < certificates.Count; i++)
        {
            policy.ExtraStore.Add(certificates[i]);
        }

        if (custom)
        {
            policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            policy.CustomTrustStore.AddRange(options.TrustedCertificateAuthorities!);
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

    private static bool MatchesHostName(X509Certificate2 leaf, string hostName)
    {
        try
        {
            // SAN DNS names (with left-most wildcard) and SAN IP addresses; CN only when there is no SAN (RFC 6125).
            return leaf.MatchesHostname(hostName, allowWildcards: true, allowCommonName: true);
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}
