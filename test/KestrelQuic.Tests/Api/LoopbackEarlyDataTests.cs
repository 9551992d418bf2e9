using System.Security.Cryptography;
using KestrelQuic.Configuration;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// 0-RTT over real UDP sockets. A relay holds the server's datagrams back on the second connection, so the client
/// provably writes its request before the handshake can complete.
/// </summary>
public sealed class LoopbackEarlyDataTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public enum RejectingServer
    {
        /// <summary>Same ticket key (the session resumes) but early data disabled.</summary>
        EarlyDataDisabled,

        /// <summary>Another ticket key: the ticket is useless, a full handshake follows.</summary>
        OtherTicketKey,
    }

    [Fact]
    public async Task SecondConnection_RequestSentBeforeHandshake_AcceptedAsEarlyData()
    {
        QuicListenerOptions options = LoopbackTests.ListenerOptions(c => c.EnableEarlyData = true);
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        await using var relay = new UdpRelay(listener.LocalEndPoint);
        var store = new LoopbackTests.RecordingSessionStore();
        await ObtainTicketAsync(listener, relay, store);

        relay.HoldServerToClient();
        QuicClientConnectionOptions clientOptions = ClientOptions(relay, store);
        await using QuicConnection client = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        byte[] request = RandomNumberGenerator.GetBytes(5000);
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask().WaitAsync(Timeout);
        await stream.WriteAsync(request, completeWrites: true).AsTask().WaitAsync(Timeout);

        // Nothing from the server has reached the client: all of the request can only travel in 0-RTT packets, and
        // the server takes it in before its handshake can complete (the client's Finished cannot exist yet).
        EndpointConnection serverHandle = await SingleConnectionAsync(listener);
        await LoopbackLifecycleTests.WaitUntilAsync(() => ServerReceivedAll(listener, serverHandle, stream.Id));
        Assert.False(client.HandshakeCompleted.IsCompleted);
        lock (listener.Endpoint.Lock)
        {
            Assert.False(serverHandle.Core.IsHandshakeComplete);
            Assert.True(serverHandle.Core.Statistics.ZeroRttPacketsReceived > 0);
        }

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        relay.Release();
        await client.HandshakeCompleted.WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        Assert.True(client.IsResumed);
        Assert.True(client.IsEarlyDataAccepted);
        Assert.True(server.IsEarlyDataAccepted);
        lock (client.Endpoint.Lock)
        {
            Assert.True(client.Handle.Core.Statistics.ZeroRttPacketsSent > 0);
        }

        await AssertEchoedAsync(server, stream, request);
    }

    [Theory]
    [InlineData(RejectingServer.EarlyDataDisabled)]
    [InlineData(RejectingServer.OtherTicketKey)]
    public async Task ServerRejectsEarlyData_RequestArrivesIn1Rtt(RejectingServer kind)
    {
        byte[] ticketKey = RandomNumberGenerator.GetBytes(32);
        await using QuicListener ticketServer = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c =>
        {
            c.EnableEarlyData = true;
            c.SessionTicketKey = ticketKey;
        }));
        await using var relay = new UdpRelay(ticketServer.LocalEndPoint);
        var store = new LoopbackTests.RecordingSessionStore();
        await ObtainTicketAsync(ticketServer, relay, store);

        // The client comes back to "the same server" (the relay's address), which now runs another configuration.
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c =>
        {
            c.EnableEarlyData = kind == RejectingServer.OtherTicketKey;
            c.SessionTicketKey = kind == RejectingServer.OtherTicketKey ? RandomNumberGenerator.GetBytes(32) : ticketKey;
        }));
        relay.Server = listener.LocalEndPoint;
        relay.HoldServerToClient();
        await using QuicConnection client = await QuicConnection.ConnectAsync(ClientOptions(relay, store)).AsTask().WaitAsync(Timeout);
        byte[] request = RandomNumberGenerator.GetBytes(5000);
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask().WaitAsync(Timeout);
        await stream.WriteAsync(request, completeWrites: true).AsTask().WaitAsync(Timeout);
        await LoopbackLifecycleTests.WaitUntilAsync(() =>
        {
            lock (client.Endpoint.Lock) return client.Handle.Core.Statistics.ZeroRttPacketsSent > 0;
        });
        Assert.False(client.HandshakeCompleted.IsCompleted);

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        relay.Release();
        await client.HandshakeCompleted.WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        Assert.False(client.IsEarlyDataAccepted);
        Assert.False(server.IsEarlyDataAccepted);
        Assert.Equal(kind == RejectingServer.EarlyDataDisabled, client.IsResumed);
        lock (listener.Endpoint.Lock)
        {
            Assert.Equal(0, server.Handle.Core.Statistics.ZeroRttPacketsReceived);
        }

        // What went out in 0-RTT was thrown away by the server and sent again in 1-RTT.
        await AssertEchoedAsync(server, stream, request);
    }

    [Fact]
    public async Task WaitForHandshakeFalse_NoTicket_StreamOpensOnceTheServerGrantsStreams()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions(listener.LocalEndPoint);
        options.WaitForHandshake = false;
        await using QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout);

        // Without a ticket there are no remembered stream limits: the open waits for the server's transport parameters.
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask().WaitAsync(Timeout);
        byte[] request = RandomNumberGenerator.GetBytes(2000);
        await stream.WriteAsync(request, completeWrites: true).AsTask().WaitAsync(Timeout);
        await client.HandshakeCompleted.WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        Assert.False(client.IsResumed);
        lock (client.Endpoint.Lock)
        {
            Assert.Equal(0, client.Handle.Core.Statistics.ZeroRttPacketsSent);
        }

        await AssertEchoedAsync(server, stream, request);
    }

    [Fact]
    public async Task WaitForHandshakeFalse_NoServer_HandshakeCompletedFailsWithTimeout()
    {
        using var blackhole = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        blackhole.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions((System.Net.IPEndPoint)blackhole.LocalEndPoint!);
        options.WaitForHandshake = false;
        options.HandshakeTimeout = TimeSpan.FromMilliseconds(300);
        await using QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout);
        Task<QuicStream> open = client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask(); // no ticket: waits for the server's limits
        QuicException e = await Assert.ThrowsAsync<QuicException>(() => client.HandshakeCompleted).WaitAsync(Timeout);
        Assert.Equal(QuicError.ConnectionTimeout, e.QuicError);
        Assert.Equal(QuicError.ConnectionTimeout, (await Assert.ThrowsAsync<QuicException>(() => open).WaitAsync(Timeout)).QuicError);
    }

    private static QuicClientConnectionOptions ClientOptions(UdpRelay relay, IQuicSessionStore store)
    {
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions(relay.EndPoint, c => c.EnableEarlyData = true);
        options.SessionStore = store;
        options.WaitForHandshake = false;
        return options;
    }

    private static async Task ObtainTicketAsync(QuicListener listener, UdpRelay relay, LoopbackTests.RecordingSessionStore store)
    {
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions(relay.EndPoint, c => c.EnableEarlyData = true);
        options.SessionStore = store;
        await using QuicConnection first = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout);
        await using QuicConnection firstServer = await acceptTask.WaitAsync(Timeout);
        await first.PingAsync().AsTask().WaitAsync(Timeout);
        await store.TicketStored.Task.WaitAsync(Timeout);
        Assert.False(first.IsEarlyDataAccepted);
        await LoopbackLifecycleTests.AssertEchoAsync(first, firstServer, 100);
    }

    private static async Task<EndpointConnection> SingleConnectionAsync(QuicListener listener)
    {
        EndpointConnection? found = null;
        await LoopbackLifecycleTests.WaitUntilAsync(() =>
        {
            lock (listener.Endpoint.Lock)
            {
                found = listener.Endpoint.Core.Connections.SingleOrDefault(c => !c.Core.IsHandshakeComplete);
                return found is not null;
            }
        });
        return found!;
    }

    private static bool ServerReceivedAll(QuicListener listener, EndpointConnection handle, long streamId)
    {
        lock (listener.Endpoint.Lock) return handle.Core.GetStream((ulong)streamId)?.Receive?.IsAllReceived == true;
    }

    private static async Task AssertEchoedAsync(QuicConnection server, QuicStream clientStream, byte[] request)
    {
        await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        var ms = new MemoryStream();
        await inbound.CopyToAsync(ms).WaitAsync(Timeout);
        Assert.Equal(request, ms.ToArray());
        await inbound.WriteAsync(ms.ToArray(), completeWrites: true).AsTask().WaitAsync(Timeout);
        var reply = new MemoryStream();
        await clientStream.CopyToAsync(reply).WaitAsync(Timeout);
        Assert.Equal(request, reply.ToArray());
    }
}
