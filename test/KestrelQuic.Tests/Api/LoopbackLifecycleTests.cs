using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Configuration;

namespace KestrelQuic.Tests.Api;

/// <summary>Connection lifecycle over real UDP sockets: Retry, stateless reset across a server restart, idle timeout.</summary>
public sealed class LoopbackLifecycleTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task RetryAlways_ClientConnectsAfterRetryAndTransfers()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Retry = RetryMode.Always));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        lock (listener.Endpoint.Lock)
        {
            Assert.Equal(1, listener.Endpoint.Core.Statistics.RetrySent);
            Assert.Equal(1, listener.Endpoint.Core.Statistics.ConnectionsAccepted);
        }

        await AssertEchoAsync(client, server, 20_000);
    }

    [Fact]
    public async Task ServerRestartWithSameStaticKey_ClientWriteEndsWithStatelessReset()
    {
        byte[] key = RandomNumberGenerator.GetBytes(32);
        QuicListenerOptions options = LoopbackTests.ListenerOptions();
        options.StaticKey = key;
        QuicListener listener = await QuicListener.ListenAsync(options);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await client.PingAsync().AsTask().WaitAsync(Timeout);
        Task<QuicStream> pendingAccept = client.AcceptInboundStreamAsync().AsTask();

        // The server "crashes": its socket and every connection state vanish without a CONNECTION_CLOSE.
        IPEndPoint address = listener.LocalEndPoint;
        await listener.DisposeAsync();
        await listener.Endpoint.DisposeAsync();
        Assert.Equal(QuicError.OperationAborted, (await Assert.ThrowsAsync<QuicException>(() => server.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask())).QuicError);

        // A new instance on the same port with the same key derives the same reset tokens.
        QuicListenerOptions restartOptions = LoopbackTests.ListenerOptions();
        restartOptions.ListenEndPoint = address;
        restartOptions.StaticKey = key;
        await using QuicListener restarted = await QuicListener.ListenAsync(restartOptions);

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        QuicException e = await Assert.ThrowsAsync<QuicException>(async () =>
        {
            // The first write is buffered and sent; the reset arrives in reply and fails everything pending afterwards.
            for (int i = 0; i < 200; i++)
            {
                await stream.WriteAsync(new byte[100]);
                await Task.Delay(10);
            }
        }).WaitAsync(Timeout);
        Assert.Equal(QuicError.StatelessReset, e.QuicError);

        QuicCloseReason reason = await client.Closed.WaitAsync(Timeout);
        Assert.True(reason.StatelessReset);
        Assert.Equal(QuicError.StatelessReset, (await Assert.ThrowsAsync<QuicException>(() => pendingAccept).WaitAsync(Timeout)).QuicError);
        lock (restarted.Endpoint.Lock)
        {
            Assert.True(restarted.Endpoint.Core.Statistics.StatelessResetsSent >= 1);
            Assert.Equal(0, restarted.Endpoint.Core.ConnectionCount);
        }

        await server.DisposeAsync();
    }

    [Fact]
    public async Task ServerRestartWithOtherKey_ClientIgnoresResetsAndTimesOut()
    {
        QuicListenerOptions options = LoopbackTests.ListenerOptions(c => c.IdleTimeout = TimeSpan.FromSeconds(1));
        options.StaticKey = RandomNumberGenerator.GetBytes(32);
        QuicListener listener = await QuicListener.ListenAsync(options);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.IdleTimeout = TimeSpan.FromSeconds(1))).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await client.PingAsync().AsTask().WaitAsync(Timeout);

        IPEndPoint address = listener.LocalEndPoint;
        await listener.DisposeAsync();
        await listener.Endpoint.DisposeAsync();
        QuicListenerOptions restartOptions = LoopbackTests.ListenerOptions();
        restartOptions.ListenEndPoint = address;
        restartOptions.StaticKey = RandomNumberGenerator.GetBytes(32);
        await using QuicListener restarted = await QuicListener.ListenAsync(restartOptions);

        // Resets with tokens the client was never given must not end the connection (RFC 9000 §10.3.1): it idles out.
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync(new byte[100]);
        QuicCloseReason reason = await client.Closed.WaitAsync(Timeout);
        Assert.False(reason.StatelessReset);
        Assert.True(reason.IdleTimeout);
        lock (restarted.Endpoint.Lock)
        {
            Assert.True(restarted.Endpoint.Core.Statistics.StatelessResetsSent >= 1);
        }
    }

    [Fact]
    public async Task IdleTimeout_BothSidesCloseAndPendingAcceptFailsWithConnectionIdle()
    {
        TimeSpan idle = TimeSpan.FromMilliseconds(600);
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.IdleTimeout = idle));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.IdleTimeout = idle)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await client.PingAsync().AsTask().WaitAsync(Timeout);

        Task<QuicStream> serverAccept = server.AcceptInboundStreamAsync().AsTask();
        Task<QuicStream> clientAccept = client.AcceptInboundStreamAsync().AsTask();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        QuicCloseReason serverReason = await server.Closed.WaitAsync(Timeout);
        QuicCloseReason clientReason = await client.Closed.WaitAsync(Timeout);
        Assert.True(serverReason.IdleTimeout);
        Assert.True(clientReason.IdleTimeout);
        Assert.False(serverReason.ClosedByPeer);
        Assert.True(clock.Elapsed >= idle - TimeSpan.FromMilliseconds(100), $"closed after {clock.Elapsed}");

        Assert.Equal(QuicError.ConnectionIdle, (await Assert.ThrowsAsync<QuicException>(() => serverAccept).WaitAsync(Timeout)).QuicError);
        Assert.Equal(QuicError.ConnectionIdle, (await Assert.ThrowsAsync<QuicException>(() => clientAccept).WaitAsync(Timeout)).QuicError);
        Assert.Equal(QuicError.ConnectionIdle, (await Assert.ThrowsAsync<QuicException>(() => client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask())).QuicError);

        // An idle close is silent: the endpoints forget the connections at once (no closing period to wait out).
        await WaitUntilAsync(() => ConnectionCount(listener.Endpoint) == 0);
    }

    [Fact]
    public async Task IdleTimeout_TrafficKeepsTheConnectionAlive()
    {
        TimeSpan idle = TimeSpan.FromMilliseconds(500);
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.IdleTimeout = idle));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.IdleTimeout = idle)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        // Pings every 150 ms for three idle periods.
        for (int i = 0; i < 10; i++)
        {
            await client.PingAsync().AsTask().WaitAsync(Timeout);
            await Task.Delay(150);
        }

        Assert.False(client.Closed.IsCompleted);
        Assert.False(server.Closed.IsCompleted);
        await AssertEchoAsync(client, server, 1000);
    }

    internal static async Task AssertEchoAsync(QuicConnection client, QuicConnection server, int size)
    {
        byte[] data = RandomNumberGenerator.GetBytes(size);
        await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        Task echo = Task.Run(async () =>
        {
            await using QuicStream inbound = await server.AcceptInboundStreamAsync();
            var ms = new MemoryStream();
            await inbound.CopyToAsync(ms);
            await inbound.WriteAsync(ms.ToArray(), completeWrites: true);
        });
        await s.WriteAsync(data, completeWrites: true);
        var received = new MemoryStream();
        await s.CopyToAsync(received).WaitAsync(Timeout);
        await echo.WaitAsync(Timeout);
        Assert.Equal(data, received.ToArray());
    }

    internal static int ConnectionCount(KestrelQuic.Udp.QuicSocketEndpoint endpoint)
    {
        lock (endpoint.Lock) return endpoint.Core.ConnectionCount;
    }

    internal static async Task WaitUntilAsync(Func<bool> condition, TimeSpan? timeout = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > (timeout ?? Timeout)) Assert.Fail("condition not met in time");
            await Task.Delay(20);
        }
    }
}
