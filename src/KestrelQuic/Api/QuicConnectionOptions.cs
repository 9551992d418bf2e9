using System.Collections.Concurrent;
using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Tls;
using Microsoft.Extensions.Logging;

namespace KestrelQuic;

/// <summary>Options of <see cref="QuicConnection.ConnectAsync"/>.</summary>
public sealed class QuicClientConnectionOptions
{
    /// <summary>The server: an <see cref="IPEndPoint"/>, or a <see cref="DnsEndPoint"/> (its host also becomes the SNI name unless <see cref="QuicConfiguration.ServerName"/> is set).</summary>
    public EndPoint RemoteEndPoint { get; set; } = null!;

    /// <summary>Local address and port to bind (port 0 = ephemeral). Default: any address of the remote's family.</summary>
    public IPEndPoint? LocalEndPoint { get; set; }

    /// <summary>Protocol settings: ALPN list, server name, trust, 0-RTT, windows, … (see <see cref="QuicConfiguration"/>).</summary>
    public QuicConfiguration Configuration { get; set; } = new();

    /// <summary>Where session tickets and NEW_TOKEN tokens are kept between connections (resumption, 0-RTT, skipping Retry). Null: none.</summary>
    public IQuicSessionStore? SessionStore { get; set; }

    /// <summary>
    /// When true (the default), <see cref="QuicConnection.ConnectAsync"/> returns once the handshake completed. When
    /// false it returns as soon as the first flight is sent, so streams can be opened and written at once: with a
    /// session ticket and <see cref="QuicConfiguration.EnableEarlyData"/>, that data goes out as 0-RTT. Await
    /// <see cref="QuicConnection.HandshakeCompleted"/> to learn the outcome.
    /// </summary>
    public bool WaitForHandshake { get; set; } = true;

    /// <summary>How long the handshake may take before <see cref="QuicError.ConnectionTimeout"/>. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// When 0-RTT is possible (<see cref="QuicConfiguration.EnableEarlyData"/> and a session ticket that allows it),
    /// <see cref="QuicConnection.ConnectAsync"/> returns as soon as the ClientHello is sent instead of after the
    /// handshake, so data written at once travels in 0-RTT packets (replayable: send only idempotent requests before
    /// <see cref="QuicConnection.HandshakeCompleted"/>). If the server rejects 0-RTT, that data is resent in 1-RTT.
    /// <see cref="HandshakeTimeout"/> still applies: the connection is aborted if the handshake does not complete.
    /// Default false.
    /// </summary>
    public bool ConnectWithEarlyData { get; set; }

    /// <summary>Error code used when a stream is disposed before its peer finished (STOP_SENDING).</summary>
    public long DefaultStreamErrorCode { get; set; }

    /// <summary>Error code used when the connection is disposed without <see cref="QuicConnection.CloseAsync"/>.</summary>
    public long DefaultCloseErrorCode { get; set; }

    /// <summary>Creates the "KestrelQuic" logger (connection lifecycle, handshake failures, protocol errors, dropped datagrams). Null: no logging.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }
}

/// <summary>Options of <see cref="QuicListener.ListenAsync"/>.</summary>
public sealed class QuicListenerOptions
{
    /// <summary>Address and port to listen on; <see cref="IPAddress.IPv6Any"/> listens on IPv4 and IPv6 (dual-stack).</summary>
    public IPEndPoint ListenEndPoint { get; set; } = new(IPAddress.IPv6Any, 0);

    /// <summary>The server configuration (certificate, ALPN, limits). Also the base for <see cref="ConnectionOptionsCallback"/>.</summary>
    public QuicConfiguration Configuration { get; set; } = new();

    /// <summary>
    /// Chooses a connection's configuration once its ClientHello arrived (certificate by SNI, ALPN, limits). The
    /// handshake waits for it. Return <see cref="Configuration"/> or a modified <see cref="QuicConfiguration.Clone"/>;
    /// throwing refuses the connection (handshake_failure).
    /// </summary>
    public Func<QuicConnection, ClientHelloInfo, CancellationToken, ValueTask<QuicConfiguration>>? ConnectionOptionsCallback { get; set; }

    /// <summary>Handshaken connections waiting in <see cref="QuicListener.AcceptConnectionAsync"/> at most; more are refused.</summary>
    public int ListenBacklog { get; set; } = 512;

    /// <summary>Open connections at most; clients beyond are refused with CONNECTION_REFUSED.</summary>
    public int MaxConnections { get; set; } = 10_000;

    /// <summary>Handshakes in progress at most (Retry first when <see cref="QuicConfiguration.Retry"/> allows).</summary>
    public int MaxHandshakes { get; set; } = 1_000;

    /// <summary>
    /// 32 bytes or more keying stateless reset tokens and address validation (Retry, NEW_TOKEN) tokens. Share it
    /// between instances behind one address, and keep it across restarts, so tokens and resets stay valid. Null: random.
    /// </summary>
    public byte[]? StaticKey { get; set; }

    /// <summary>Stateless resets sent per second at most.</summary>
    public int StatelessResetsPerSecond { get; set; } = 100;

    /// <summary>Error code used when an accepted stream is disposed before its peer finished (STOP_SENDING).</summary>
    public long DefaultStreamErrorCode { get; set; }

    /// <summary>Error code used when a connection is disposed without <see cref="QuicConnection.CloseAsync"/>.</summary>
    public long DefaultCloseErrorCode { get; set; }

    /// <summary>Creates the "KestrelQuic" logger (connection lifecycle, handshake failures, protocol errors, dropped datagrams). Null: no logging.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }
}

/// <summary>Keeps what a client learns for its next connections to the same server: session tickets and address validation tokens.</summary>
public interface IQuicSessionStore
{
    /// <summary>The newest session ticket for <paramref name="serverName"/>, if any (tickets are single-use: remove it).</summary>
    byte[]? TakeSessionTicket(string serverName);

    /// <summary>Stores a ticket received from <paramref name="serverName"/>.</summary>
    void StoreSessionTicket(string serverName, byte[] ticket);

    /// <summary>A NEW_TOKEN token for <paramref name="serverName"/>, if any.</summary>
    byte[]? TakeToken(string serverName);

    /// <summary>Stores a token received from <paramref name="serverName"/>.</summary>
    void StoreToken(string serverName, byte[] token);
}

/// <summary>An in-process <see cref="IQuicSessionStore"/> keeping the newest few tickets and tokens per server.</summary>
public sealed class InMemoryQuicSessionStore : IQuicSessionStore
{
    private const int PerServer = 4;
    private readonly ConcurrentDictionary<string, ConcurrentStack<byte[]>> _tickets = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<string, ConcurrentStack<byte[]>> _tokens = new(StringComparer.OrdinalIgnoreCase);

    /// <inheritdoc />
    public byte[]? TakeSessionTicket(string serverName) => Take(_tickets, serverName);

    /// <inheritdoc />
    public void StoreSessionTicket(string serverName, byte[] ticket) => Store(_tickets, serverName, ticket);

    /// <inheritdoc />
    public byte[]? TakeToken(string serverName) => Take(_tokens, serverName);

    /// <inheritdoc />
    public void StoreToken(string serverName, byte[] token) => Store(_tokens, serverName, token);

    private static byte[]? Take(ConcurrentDictionary<string, ConcurrentStack<byte[]>> map, string key)
        => map.TryGetValue(key, out ConcurrentStack<byte[]>? stack) && stack.TryPop(out byte[]? value) ? value : null;

    private static void Store(ConcurrentDictionary<string, ConcurrentStack<byte[]>> map, string key, byte[] value)
    {
        ConcurrentStack<byte[]> stack = map.GetOrAdd(key, _ => new ConcurrentStack<byte[]>());
        stack.Push(value);
        while (stack.Count > PerServer)
        {
            // Keep the newest: drop from the bottom by rebuilding (rare, small).
            byte[][] items = stack.ToArray();
            stack.Clear();
            for (int i = Math.Min(items.Length, PerServer) - 1; i >= 0; i--) stack.Push(items[i]);
        }
    }
}
