using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using KestrelQuic.Configuration;
using KestrelQuic.Tls;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore;

/// <summary>
/// A bound QUIC endpoint for Kestrel. The TLS settings come from what Kestrel passed to BindAsync: at each
/// ClientHello the listener asks Kestrel's callback for the connection's <see cref="SslServerAuthenticationOptions"/>
/// (certificate, SNI selection, ALPN, client certificates) and turns them into the connection's configuration.
/// </summary>
internal sealed class ManagedQuicConnectionListener : IMultiplexedConnectionListener
{
    private const long H3RequestCancelled = 0x10c;
    private const long H3NoError = 0x100;

    private readonly TlsConnectionCallbackOptions _tls;
    private readonly QuicConfiguration _configuration;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<QuicConnection, ManagedQuicConnectionContext> _handshaking = new();
    private QuicListener _listener = null!;
    private int _unbound;

    private ManagedQuicConnectionListener(TlsConnectionCallbackOptions tls, QuicConfiguration configuration, ILogger logger)
    {
        _tls = tls;
        _configuration = configuration;
        _logger = logger;
    }

    public EndPoint EndPoint { get; private set; } = null!;

    internal QuicListener QuicListener => _listener;

    /// <summary>
    /// Binds the endpoint. <paramref name="loggerFactory"/> also goes to the engine, so its events (category
    /// <c>KestrelQuic</c>: handshake failures with the TLS alert, protocol errors, dropped datagrams, the secrets-log
    /// warning) reach the host's logging next to the transport's own (<paramref name="logger"/>).
    /// </summary>
    public static async ValueTask<ManagedQuicConnectionListener> BindAsync(IPEndPoint endPoint, TlsConnectionCallbackOptions tls, QuicConfiguration configuration, ILogger logger, ILoggerFactory? loggerFactory, CancellationToken cancellationToken)
    {
        QuicConfiguration baseConfiguration = configuration.Clone();
        baseConfiguration.ApplicationProtocols = tls.ApplicationProtocols.Select(ToAlpn).ToList();

        // Each connection gets a clone of this configuration; without a shared key every clone would encrypt its
        // session tickets with a key of its own and no client could ever resume (or send 0-RTT).
        baseConfiguration.SessionTicketKey ??= RandomNumberGenerator.GetBytes(32);
        var listener = new ManagedQuicConnectionListener(tls, baseConfiguration, logger);
        try
        {
            listener._listener = await QuicListener.ListenAsync(new QuicListenerOptions
            {
                ListenEndPoint = endPoint,
                Configuration = baseConfiguration,
                ConnectionOptionsCallback = listener.ChooseConfigurationAsync,
                DefaultStreamErrorCode = H3RequestCancelled,
                DefaultCloseErrorCode = H3NoError,
                LoggerFactory = loggerFactory,
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new AddressInUseException(e.Message, e);
        }

        listener._listener.ConnectionOptionsCallbackFailed += listener.OnCallbackFailed;
        listener.EndPoint = listener._listener.LocalEndPoint;
        Log.Listening(logger, listener.EndPoint, string.Join(",", baseConfiguration.ApplicationProtocols));
        return listener;
    }

    public async ValueTask<MultiplexedConnectionContext?> AcceptAsync(IFeatureCollection? features = null, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            QuicConnection connection;
            try
            {
                connection = await _listener.AcceptConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            catch (OperationCanceledException)
            {
                return null;
            }
            catch (Exception e) when (Volatile.Read(ref _unbound) == 0)
            {
                // One failed connection must not stop the accept loop (Kestrel would stop accepting for good).
                Log.AcceptFailed(_logger, e);
                continue;
            }

            if (!_handshaking.TryRemove(connection, out ManagedQuicConnectionContext? context))
            {
                context = new ManagedQuicConnectionContext(connection, _logger);
            }

            context.Start();
            return context;
        }
    }

    public async ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _unbound, 1) != 0) return;
        await _listener.DisposeAsync().ConfigureAwait(false);
        Log.Unbound(_logger, EndPoint);
    }

    public ValueTask DisposeAsync() => UnbindAsync();

    private static string ToAlpn(SslApplicationProtocol protocol) => Encoding.UTF8.GetString(protocol.Protocol.Span);

    private async ValueTask<QuicConfiguration> ChooseConfigurationAsync(QuicConnection connection, ClientHelloInfo hello, CancellationToken cancellationToken)
    {
        // Kestrel's callback gets the connection context it will later accept (as with the msquic transport).
        ManagedQuicConnectionContext context = _handshaking.GetOrAdd(connection, static (c, logger) => new ManagedQuicConnectionContext(c, logger), _logger);
        _ = connection.Closed.ContinueWith(
            static (closed, s) =>
            {
                var (self, c) = ((ManagedQuicConnectionListener, QuicConnection))s!;
                if (self._handshaking.TryRemove(c, out ManagedQuicConnectionContext? _) && closed.IsCompletedSuccessfully)
                {
                    // Closed before Kestrel got it: the handshake failed (a TLS alert shows as CRYPTO_ERROR 0x100 + alert).
                    Log.HandshakeFailed(self._logger, c.RemoteEndPoint, closed.Result.ToString());
                }
            },
            (this, connection), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        var callbackContext = new TlsConnectionCallbackContext
        {
            ClientHelloInfo = new SslClientHelloInfo(hello.ServerName ?? string.Empty, SslProtocols.Tls13),
            State = _tls.OnConnectionState,
            Connection = context,
        };
        SslServerAuthenticationOptions ssl = await _tls.OnConnection(callbackContext, cancellationToken).ConfigureAwait(false);

        QuicConfiguration configuration = _configuration.Clone();
        if (ssl.ApplicationProtocols is { Count: > 0 } alpn) configuration.ApplicationProtocols = alpn.Select(ToAlpn).ToList();

        X509Certificate2? certificate = null;
        if (ssl.ServerCertificateContext is { } certificateContext)
        {
            certificate = certificateContext.TargetCertificate;
            if (certificateContext.IntermediateCertificates.Count > 0)
            {
                configuration.CertificateChain = new X509Certificate2Collection(certificateContext.IntermediateCertificates.ToArray());
            }
        }

        certificate ??= ssl.ServerCertificate as X509Certificate2;
        if (certificate is null && ssl.ServerCertificateSelectionCallback is { } select)
        {
            certificate = select(this, hello.ServerName) as X509Certificate2;
        }

        if (certificate is null)
        {
            Log.NoCertificate(_logger, hello.ServerName);
            throw new InvalidOperationException($"No server certificate for '{hello.ServerName}'.");
        }

        configuration.Certificate = certificate;
        configuration.ServerCertificateSelector = null;
        if (ssl.ClientCertificateRequired)
        {
            // The options cannot say whether a missing certificate is acceptable (Kestrel's AllowCertificate and
            // RequireCertificate both set ClientCertificateRequired); the validation callback answers when asked
            // about a null certificate, as SslStream asks it. Without a callback a certificate is required.
            configuration.ClientCertificateMode = AcceptsMissingCertificate(ssl.RemoteCertificateValidationCallback, connection)
                ? KestrelQuic.Configuration.ClientCertificateMode.AllowCertificate
                : KestrelQuic.Configuration.ClientCertificateMode.RequireCertificate;
        }

        if (ssl.RemoteCertificateValidationCallback is { } validate)
        {
            configuration.CertificateValidationCallback = (cert, chain, errors) => validate(connection, cert, chain, errors);
        }

        return configuration;
    }

    private static bool AcceptsMissingCertificate(RemoteCertificateValidationCallback? validate, QuicConnection connection)
    {
        if (validate is null) return false;
        try
        {
            return validate(connection, null, null, SslPolicyErrors.RemoteCertificateNotAvailable);
        }
        catch (Exception)
        {
            // A callback that cannot handle a null certificate does not accept a missing one.
            return false;
        }
    }

    private void OnCallbackFailed(object? sender, Exception error) => Log.HandshakeRefused(_logger, error);
}
