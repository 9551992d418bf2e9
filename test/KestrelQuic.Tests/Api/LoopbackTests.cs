using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Api;

/// <summary>The public async API over real UDP sockets on loopback.</summary>
public sealed class LoopbackTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    internal static QuicListenerOptions ListenerOptions(Action<QuicConfiguration>? configure = null, IPAddress? address = null) => new()
    {
        ListenEndPoint = new IPEndPoint(address ?? IPAddress.Loopback, 0),
        Configuration = SimulationHelpers.ServerConfig(configure),
    };

    internal static QuicClientConnectionOptions ClientOptions(IPEndPoint server, Action<QuicConfiguration>? configure = null) => new()
    {
        RemoteEndPoint = server,
        Configuration = SimulationHelpers.ClientConfig(configure),
    };

    [Fact]
    public async Task Connect_EchoOverBidirectionalStream_ContentMatches()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        Assert.Equal(SimulationHelpers.Alpn, client.NegotiatedApplicationProtocol.ToString());
        Assert.Equal(SimulationHelpers.Alpn, server.NegotiatedApplicationProtocol.ToString());
        Assert.Equal("localhost", server.TargetHostName);
        Assert.NotNull(client.RemoteCertificate);
        Assert.Equal(listener.LocalEndPoint, client.RemoteEndPoint);

        byte[] payload = SimulationHelpers.Payload(3 * 1024 * 1024 + 17, 1);
        Task echo = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            var buffer = new byte[64 * 1024];
            int n;
            while ((n = await s.ReadAsync(buffer)) > 0) await s.WriteAsync(buffer.AsMemory(0, n));
            s.CompleteWrites();
            await s.WritesClosed;
        });

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        Assert.Equal(0, stream.Id);
        Task write = Task.Run(async () =>
        {
            for (int i = 0; i < payload.Length; i += 50_000) await stream.WriteAsync(payload.AsMemory(i, Math.Min(50_000, payload.Length - i)));
            stream.CompleteWrites();
        });
        var received = new MemoryStream();
        await stream.CopyToAsync(received).WaitAsync(Timeout);
        await write.WaitAsync(Timeout);
        await echo.WaitAsync(Timeout);
        Assert.Equal(payload, received.ToArray());
        await stream.ReadsClosed.WaitAsync(Timeout);
    }

    [Fact]
    public async Task Connect_ClientStartingInV1_ServerPreferringV2_CompletesInV2()
    {
        // Compatible version negotiation (RFC 9368, RFC 9369) over real sockets: no Version Negotiation round trip.
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions(c => c.SupportedVersions = [Protocol.QuicVersion.Version2, Protocol.QuicVersion.Version1]));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        Assert.Equal(Protocol.QuicVersion.Version2, client.Version);
        Assert.Equal(Protocol.QuicVersion.Version2, server.Version);
        byte[] payload = SimulationHelpers.Payload(100_000, 5);
        Task<byte[]> serverRead = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            var received = new MemoryStream();
            await s.CopyToAsync(received);
            return received.ToArray();
        });
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        await stream.WriteAsync(payload);
        stream.CompleteWrites();
        Assert.Equal(payload, await serverRead.WaitAsync(Timeout));
    }

    [Fact]
    public async Task ManyStreams_BeyondPeerLimit_OpenWaitsThenAllComplete()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions(c => c.MaxBidirectionalStreams = 5));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        Task serverLoop = Task.Run(async () =>
        {
            for (int i = 0; i < 40; i++)
            {
                QuicStream s = await server.AcceptInboundStreamAsync();
                _ = Task.Run(async () =>
                {
                    await using (s)
                    {
                        var buf = new byte[256];
                        int total = 0, n;
                        while ((n = await s.ReadAsync(buf.AsMemory(total))) > 0) total += n;
                        await s.WriteAsync(buf.AsMemory(0, total), completeWrites: true);
                    }
                });
            }
        });

        var tasks = Enumerable.Range(0, 40).Select(async i =>
        {
            await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            byte[] msg = System.Text.Encoding.ASCII.GetBytes($"request {i}");
            await s.WriteAsync(msg, completeWrites: true);
            var ms = new MemoryStream();
            await s.CopyToAsync(ms);
            return System.Text.Encoding.ASCII.GetString(ms.ToArray());
        }).ToArray();
        string[] replies = await Task.WhenAll(tasks).WaitAsync(Timeout);
        for (int i = 0; i < 40; i++) Assert.Equal($"request {i}", replies[i]);
        await serverLoop.WaitAsync(Timeout);
    }

    [Fact]
    public async Task StreamAbort_PeerSeesErrorCodes()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync(new byte[] { 1, 2, 3 });
        QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        stream.Abort(QuicAbortDirection.Write, 0x1234);
        var buf = new byte[10];
        QuicException readError = await Assert.ThrowsAsync<QuicException>(async () =>
        {
            while (await inbound.ReadAsync(buf) > 0)
            {
            }
        }).WaitAsync(Timeout);
        Assert.Equal(QuicError.StreamAborted, readError.QuicError);
        Assert.Equal(0x1234, readError.ApplicationErrorCode);

        inbound.Abort(QuicAbortDirection.Read, 0x42); // already reset: no-op
        QuicStream second = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await second.WriteAsync(new byte[] { 9 });
        QuicStream inbound2 = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        inbound2.Abort(QuicAbortDirection.Read, 0x77);
        QuicException writeError = await Assert.ThrowsAsync<QuicException>(async () =>
        {
            for (int i = 0; i < 1000; i++)
            {
                await second.WriteAsync(new byte[1000]);
                await Task.Delay(5);
            }
        }).WaitAsync(Timeout);
        Assert.Equal(QuicError.StreamAborted, writeError.QuicError);
        Assert.Equal(0x77, writeError.ApplicationErrorCode);
    }

    [Fact]
    public async Task Close_PeerSeesApplicationErrorCode()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        Task<QuicStream> pendingAccept = server.AcceptInboundStreamAsync().AsTask();
        await client.CloseAsync(0x99);
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => pendingAccept).WaitAsync(Timeout);
        Assert.Equal(QuicError.ConnectionAborted, e.QuicError);
        Assert.Equal(0x99, e.ApplicationErrorCode);
        QuicCloseReason reason = await server.Closed.WaitAsync(Timeout);
        Assert.True(reason.ClosedByPeer);
        Assert.Equal(0x99UL, reason.ErrorCode);
    }

    [Fact]
    public async Task PingDatagramsKeyUpdateAndConnectionIdChange_Work()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions(c => c.MaxDatagramFrameSize = 1200));

        // Through a relay that records the destination connection ID of every short-header datagram to the server.
        int cidLength = new QuicConfiguration().ConnectionIdLength;
        var dcids = new List<string>();
        await using var relay = new KestrelQuic.Testing.UdpRelay(listener.LocalEndPoint, seed: 1);
        relay.ToServer.Filter = (_, datagram) =>
        {
            if ((datagram[0] & 0x80) == 0 && datagram.Length > cidLength)
            {
                lock (dcids) dcids.Add(Convert.ToHexString(datagram, 1, cidLength));
            }

            return true;
        };
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(relay.LocalEndPoint, c => c.MaxDatagramFrameSize = 1200)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        await client.PingAsync().AsTask().WaitAsync(Timeout);
        Assert.True(client.MaxDatagramPayloadSize > 1000);
        await client.SendDatagramAsync(new byte[] { 7, 7, 7 });
        byte[] datagram = await server.ReceiveDatagramAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(new byte[] { 7, 7, 7 }, datagram);

        // Key update (RFC 9001 §6): the client moves to key phase 1 at once, the server when it opens a packet of it.
        await client.PingAsync().AsTask().WaitAsync(Timeout); // confirms the handshake on both sides before the key update
        QuicConnectionCore clientCore = client.Handle.Core, serverCore = server.Handle.Core;
        lock (client.Endpoint.Lock) Assert.Equal((false, 0), (clientCore.KeyPhase, clientCore.KeyPhaseGeneration));
        lock (server.Endpoint.Lock) Assert.Equal((false, 0), (serverCore.KeyPhase, serverCore.KeyPhaseGeneration));
        Assert.True(client.RequestKeyUpdate());
        lock (client.Endpoint.Lock) Assert.Equal((true, 1), (clientCore.KeyPhase, clientCore.KeyPhaseGeneration));

        // Data flows both ways under the new keys, and each side has opened packets sealed with them.
        await LoopbackLifecycleTests.AssertEchoAsync(client, server, 200_000);
        await LoopbackLifecycleTests.WaitUntilAsync(() =>
        {
            lock (client.Endpoint.Lock)
            {
                lock (server.Endpoint.Lock)
                {
                    return serverCore.KeyPhase && serverCore.KeyPhaseGeneration == 1 && serverCore.CurrentKeysReceived && serverCore.CurrentKeysAcknowledged
                        && clientCore.CurrentKeysReceived && clientCore.CurrentKeysAcknowledged;
                }
            }
        });
        lock (client.Endpoint.Lock) Assert.Equal(1, clientCore.Statistics.KeyUpdates);
        lock (server.Endpoint.Lock) Assert.Equal(1, serverCore.Statistics.KeyUpdates);

        // Connection ID change (RFC 9000 §5.1.2): later packets reach the server under another ID it issued, and the
        // old one is retired.
        byte[] oldId, newId;
        lock (client.Endpoint.Lock) oldId = clientCore.ConnectionIds.ActivePeer!.ConnectionId;
        string[] before;
        lock (dcids) before = dcids.ToArray();
        Assert.Contains(Convert.ToHexString(oldId), before);
        Assert.True(client.ChangeConnectionId());
        lock (client.Endpoint.Lock) newId = clientCore.ConnectionIds.ActivePeer!.ConnectionId;
        Assert.NotEqual(oldId, newId);
        lock (server.Endpoint.Lock) Assert.NotNull(serverCore.ConnectionIds.FindLocal(newId));
        Assert.DoesNotContain(Convert.ToHexString(newId), before);

        await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        Assert.False(s.CanRead);
        await s.WriteAsync(new byte[] { 1, 2, 3, 4 }, completeWrites: true);
        QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        Assert.False(inbound.CanWrite);
        Assert.Equal(QuicStreamType.Unidirectional, inbound.Type);
        var ms = new MemoryStream();
        await inbound.CopyToAsync(ms).WaitAsync(Timeout);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, ms.ToArray());
        lock (dcids) Assert.Contains(Convert.ToHexString(newId), dcids);

        // RETIRE_CONNECTION_ID arrived: the server no longer routes the old ID; from then on only the new one is seen.
        await LoopbackLifecycleTests.WaitUntilAsync(() =>
        {
            lock (server.Endpoint.Lock) return serverCore.ConnectionIds.FindLocal(oldId) is null;
        });
        int seen;
        lock (dcids) seen = dcids.Count;
        await client.PingAsync().AsTask().WaitAsync(Timeout);
        await LoopbackLifecycleTests.AssertEchoAsync(client, server, 50_000);
        lock (dcids)
        {
            Assert.True(dcids.Count > seen);
            Assert.All(dcids.Skip(seen), d => Assert.Equal(Convert.ToHexString(newId), d));
        }

        Assert.Null(client.CloseReason);
        Assert.Null(server.CloseReason);
    }

    [Fact]
    public async Task SessionStore_SecondConnectionResumesWithoutRetry()
    {
        var options = ListenerOptions(c =>
        {
            c.Retry = RetryMode.Always;
            c.EnableEarlyData = true;
        });
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        var store = new RecordingSessionStore();
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicClientConnectionOptions clientOptions = ClientOptions(listener.LocalEndPoint, c => c.EnableEarlyData = true);
        clientOptions.SessionStore = store;
        QuicConnection first = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        QuicConnection firstServer = await acceptTask.WaitAsync(Timeout);
        await first.PingAsync().AsTask().WaitAsync(Timeout);
        // The events fire on the thread pool after the store was written: the store is the reliable witness.
        await Task.WhenAll(store.TicketStored.Task, store.TokenStored.Task).WaitAsync(Timeout);
        Assert.False(first.IsResumed);
        await first.DisposeAsync();
        await firstServer.DisposeAsync();

        acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection second = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        await using QuicConnection secondServer = await acceptTask.WaitAsync(Timeout);
        Assert.True(second.IsResumed);
        Assert.True(secondServer.IsResumed);
    }

    [Fact]
    public async Task ConnectFromAChosenLocalPort_SuiteTicketAndTokenEvents_DisposeClosesWithTheDefaultCode()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions());
        int port;
        using (var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        QuicClientConnectionOptions options = ClientOptions(listener.LocalEndPoint, c => c.CipherSuites = [KestrelQuic.Crypto.CipherSuite.ChaCha20Poly1305Sha256]);
        options.LocalEndPoint = new IPEndPoint(IPAddress.Loopback, port);
        options.DefaultCloseErrorCode = 0x2a;
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        // Handlers attached after the ticket and token have arrived still see them (no session store here: the
        // events are the only way to keep them).
        await client.PingAsync().AsTask().WaitAsync(Timeout);
        await Task.Delay(200);
        var ticket = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        var token = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.SessionTicketReceived += (sender, data) => { Assert.Same(client, sender); ticket.TrySetResult(data); };
        client.NewTokenReceived += (sender, data) => { Assert.Same(client, sender); token.TrySetResult(data); };
        Assert.NotEmpty(await ticket.Task.WaitAsync(Timeout));
        Assert.NotEmpty(await token.Task.WaitAsync(Timeout));

        Assert.Equal(port, client.LocalEndPoint.Port);
        Assert.Equal(port, server.RemoteEndPoint.Port);
        Assert.Equal(System.Net.Security.TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256, client.NegotiatedCipherSuite);
        Assert.Equal(System.Net.Security.TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256, server.NegotiatedCipherSuite);

        await client.DisposeAsync();
        QuicCloseReason reason = await server.Closed.WaitAsync(Timeout);
        Assert.True(reason.IsApplicationError);
        Assert.True(reason.ClosedByPeer);
        Assert.Equal(0x2aUL, reason.ErrorCode);
    }

    [Fact]
    public async Task ConnectionOptionsCallback_FreshCloneEachTime_SecondConnectionStillResumes()
    {
        // A callback that builds a new configuration per connection (as Kestrel's does) sets no ticket key: the
        // listener's key must seal and open tickets, or no client could ever resume.
        QuicListenerOptions options = ListenerOptions();
        options.ConnectionOptionsCallback = (_, _, _) => ValueTask.FromResult(options.Configuration.Clone());
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        var store = new RecordingSessionStore();
        QuicClientConnectionOptions clientOptions = ClientOptions(listener.LocalEndPoint);
        clientOptions.SessionStore = store;

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection first = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout))
        await using (QuicConnection firstServer = await acceptTask.WaitAsync(Timeout))
        {
            await first.PingAsync().AsTask().WaitAsync(Timeout);
            await store.TicketStored.Task.WaitAsync(Timeout);
            Assert.False(first.IsResumed);
        }

        acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection second = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        await using QuicConnection secondServer = await acceptTask.WaitAsync(Timeout);
        Assert.True(second.IsResumed);
        Assert.True(secondServer.IsResumed);
    }

    [Fact]
    public async Task ConnectionOptionsCallback_ChoosesConfigurationBySni()
    {
        QuicListenerOptions options = ListenerOptions();
        string? seenSni = null;
        IReadOnlyList<string>? seenAlpn = null;
        options.ConnectionOptionsCallback = async (connection, hello, ct) =>
        {
            await Task.Delay(10, ct);
            seenSni = hello.ServerName;
            seenAlpn = hello.ApplicationProtocols;
            QuicConfiguration c = options.Configuration.Clone();
            c.MaxBidirectionalStreams = 3;
            return c;
        };
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        Assert.Equal("localhost", seenSni);
        Assert.Equal(new[] { SimulationHelpers.Alpn }, seenAlpn);
        lock (client.Endpoint.Lock)
        {
            Assert.Equal(3UL, client.Handle.Core.PeerTransportParameters!.InitialMaxStreamsBidi);
        }
    }

    [Fact]
    public async Task ConnectionOptionsCallbackThrows_ClientFailsWithHandshakeFailure()
    {
        QuicListenerOptions options = ListenerOptions();
        options.ConnectionOptionsCallback = (_, _, _) => throw new InvalidOperationException("no");
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask()).WaitAsync(Timeout);
        Assert.Equal(QuicError.TransportError, e.QuicError);
        Assert.Equal(0x128, e.TransportErrorCode);
    }

    [Fact]
    public async Task DualStackListener_AcceptsIPv4AndIPv6Clients()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(ListenerOptions(address: IPAddress.IPv6Any));
        int port = listener.LocalEndPoint.Port;
        foreach (IPAddress address in new[] { IPAddress.Loopback, IPAddress.IPv6Loopback })
        {
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(new IPEndPoint(address, port))).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await s.WriteAsync(new byte[] { 5 }, completeWrites: true);
            QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var buf = new byte[4];
            Assert.Equal(1, await inbound.ReadAsync(buf).AsTask().WaitAsync(Timeout));
            Assert.Equal(address.AddressFamily, server.RemoteEndPoint.Address.AddressFamily);
        }
    }

    [Fact]
    public async Task ConnectToNothing_TimesOut()
    {
        using var blackhole = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        blackhole.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        QuicClientConnectionOptions options = ClientOptions((IPEndPoint)blackhole.LocalEndPoint!);
        options.HandshakeTimeout = TimeSpan.FromMilliseconds(500);
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => QuicConnection.ConnectAsync(options).AsTask()).WaitAsync(Timeout);
        Assert.Equal(QuicError.ConnectionTimeout, e.QuicError);
    }

    [Fact]
    public async Task ListenerDispose_AcceptedConnectionsLiveOn()
    {
        QuicListener listener = await QuicListener.ListenAsync(ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await listener.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => listener.AcceptConnectionAsync().AsTask());

        await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        byte[] data = RandomNumberGenerator.GetBytes(100_000);
        await s.WriteAsync(data, completeWrites: true);
        QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        var ms = new MemoryStream();
        await inbound.CopyToAsync(ms).WaitAsync(Timeout);
        Assert.Equal(data, ms.ToArray());
    }

    internal sealed class RecordingSessionStore : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _inner = new();

        public TaskCompletionSource TicketStored { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource TokenStored { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            _inner.StoreSessionTicket(serverName, ticket);
            TicketStored.TrySetResult();
        }

        public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token)
        {
            _inner.StoreToken(serverName, token);
            TokenStored.TrySetResult();
        }
    }
}
