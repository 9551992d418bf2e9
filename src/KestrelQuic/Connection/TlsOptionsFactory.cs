using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;
using KestrelQuic.Tls;

namespace KestrelQuic.Connection;

/// <summary>Maps a <see cref="QuicConfiguration"/> onto the TLS handshake options of one connection.</summary>
internal static class TlsOptionsFactory
{
    /// <summary>
    /// The key that seals this configuration's session tickets: the configured one, or one random key per
    /// configuration object (kept for its lifetime, so every connection made from it can resume).
    /// </summary>
    public static byte[] EffectiveSessionTicketKey(QuicConfiguration config) =>
        config.SessionTicketKey ?? s_ticketKeys.GetValue(config, static _ => RandomNumberGenerator.GetBytes(32));

    // A server without a configured ticket key still needs one key for all its connections, or no ticket it issues could ever be used.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<QuicConfiguration, byte[]> s_ticketKeys = new();

    // Wrapping a certificate opens its private key (a native key object of a few KiB) and copies its DER: done once
    // per certificate, not per connection. Signing with a shared key is safe from several threads (OpenSSL gets a
    // fresh context per operation), as SslStreamCertificateContext shares one key across connections.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<X509Certificate2, WrappedCertificate> s_certificates = new();

    public static TlsOptions Create(QuicConfiguration config, bool isServer, QuicConnectionCore connection)
    {
        var options = new TlsOptions
        {
            IsClient = !isServer,
            ServerName = isServer ? null : config.ServerName,
            ApplicationProtocols = config.ApplicationProtocols.ToArray(),
            CipherSuites = config.CipherSuites.ToArray(),
            Groups = config.KeyExchangeGroups.Select(g => (NamedGroup)(ushort)g).ToArray(),
            ValidateCertificate = config.ValidateCertificates,
            UseSystemTrust = config.UseSystemTrust,
            TrustedCertificateAuthorities = config.EffectiveTrustedCertificateAuthorities(),
            CertificateValidationCallback = config.CertificateValidationCallback,
            DangerousAcceptAnyServerCertificate = config.DangerousAcceptAnyServerCertificate,
            EnableEarlyData = config.EnableEarlyData,
            SessionTicketLifetime = config.SessionTicketLifetime,
            MaxHandshakeMessageSize = config.MaxCryptoBufferSize,
            // Ticket ages and lifetimes, certificate validity: the connection's time, never the system clock.
            TimeProvider = connection.WallClock,
        };

        if (isServer)
        {
            if (config.Certificate is not null) options.Certificate = Wrap(config.Certificate, config.CertificateChain);
            if (config.ServerCertificateSelector is { } selector)
            {
                options.CertificateSelector = sni => selector(sni) is { } cert ? Wrap(cert, null) : null;
            }

            options.ClientCertificateMode = config.ClientCertificateMode switch
            {
                Configuration.ClientCertificateMode.AllowCertificate => Tls.ClientCertificateMode.Allow,
                Configuration.ClientCertificateMode.RequireCertificate => Tls.ClientCertificateMode.Require,
                _ => Tls.ClientCertificateMode.None,
            };
            options.SessionTicketKey = EffectiveSessionTicketKey(config);
            options.AcceptEarlyData = connection.IsEarlyDataCompatible;
            options.AcceptTicket = connection.IsTicketFromThisVersion;
            options.AntiReplay = connection.AntiReplay;
        }
        else
        {
            if (config.ClientCertificate is not null) options.ClientCertificate = Wrap(config.ClientCertificate, null);
            // RFC 9369 §5: a ticket from a connection of another QUIC version must not start this one.
            if (config.SessionTicket is not null && TlsSessionTicket.TryDeserialize(config.SessionTicket, out TlsSessionTicket? ticket)
                && (QuicConnectionCore.TicketVersion(ticket!) ?? connection.Version) == connection.Version)
            {
                options.SessionTicket = ticket;
            }
        }

        // The core does no I/O: the sink (set by the layer above) hands the lines to a background writer.
        if (connection.KeyLog is { } keyLog) options.KeyLogCallback = keyLog.Write;

        return options;
    }

    private static TlsCertificate Wrap(X509Certificate2 certificate, X509Certificate2Collection? chain)
    {
        if (s_certificates.TryGetValue(certificate, out WrappedCertificate? wrapped) && wrapped.HasChain(chain)) return wrapped.Certificate;
        wrapped = new WrappedCertificate(chain is null ? [] : [.. chain], TlsCertificate.FromX509(certificate, chain));
        s_certificates.AddOrUpdate(certificate, wrapped);
        return wrapped.Certificate;
    }

    /// <summary>A wrapped certificate and the intermediates it was wrapped with (callers may pass a new collection of the same certificates each time).</summary>
    private sealed record WrappedCertificate(X509Certificate2[] Chain, TlsCertificate Certificate)
    {
        public bool HasChain(X509Certificate2Collection? chain)
        {
            if ((chain?.Count ?? 0) != Chain.Length) return false;
            for (int i = 0; i < Chain.Length; i++)
            {
                if (!ReferenceEquals(chain![i], Chain[i])) return false;
            }

            return true;
        }
    }
}
