using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Tls;

namespace KestrelQuic.Connection;

/// <summary>Maps a <see cref="QuicConfiguration"/> onto the TLS handshake options of one connection.</summary>
internal static class TlsOptionsFactory
{
    // A server without a configured ticket key still needs one key for all its connections, or no ticket it issues could ever be used.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<QuicConfiguration, byte[]> s_ticketKeys = new();

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
            TrustedCertificateAuthorities = config.TrustedCertificateAuthorities,
            CertificateValidationCallback = config.CertificateValidationCallback,
            DangerousAcceptAnyServerCertificate = config.DangerousAcceptAnyServerCertificate,
            EnableEarlyData = config.EnableEarlyData,
            SessionTicketLifetime = config.SessionTicketLifetime,
            MaxHandshakeMessageSize = config.MaxCryptoBufferSize,
        };

        if (isServer)
        {
            if (config.Certificate is not null) options.Certificate = TlsCertificate.FromX509(config.Certificate, config.CertificateChain);
            if (config.ServerCertificateSelector is { } selector)
            {
                options.CertificateSelector = sni => selector(sni) is { } cert ? TlsCertificate.FromX509(cert, null) : null;
            }

            options.ClientCertificateMode = config.ClientCertificateMode switch
            {
                Configuration.ClientCertificateMode.AllowCertificate => Tls.ClientCertificateMode.Allow,
                Configuration.ClientCertificateMode.RequireCertificate => Tls.ClientCertificateMode.Require,
                _ => Tls.ClientCertificateMode.None,
            };
            options.SessionTicketKey = config.SessionTicketKey ?? s_ticketKeys.GetValue(config, _ => RandomNumberGenerator.GetBytes(32));
            options.AcceptEarlyData = connection.IsEarlyDataCompatible;
        }
        else
        {
            if (config.ClientCertificate is not null) options.ClientCertificate = TlsCertificate.FromX509(config.ClientCertificate, null);
            if (config.SessionTicket is not null && TlsSessionTicket.TryDeserialize(config.SessionTicket, out TlsSessionTicket? ticket))
            {
                options.SessionTicket = ticket;
            }
        }

        // The core does no I/O: the sink (set by the layer above) hands the lines to a background writer.
        if (connection.KeyLog is { } keyLog) options.KeyLogCallback = keyLog.Write;

        return options;
    }
}
