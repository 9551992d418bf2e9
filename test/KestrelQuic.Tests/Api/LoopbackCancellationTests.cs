using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// Cancelling each waiting operation of the public API over real UDP: it throws <see cref="OperationCanceledException"/>
/// promptly, loses nothing (the item a cancelled wait would have taken goes to the next call), and the connection,
/// listener or local port stays usable.
/// </summary>
public sealed class LoopbackCancellationTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    /// <summary>How long a cancelled operation may take to throw after the token fires (a thread-pool hop, under load).</summary>
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(2);

    /// <summary>How long an operation is left waiting before it is cancelled, to be sure it really waits.</summary>
    private static readonly TimeSpan Pending = TimeSpan.FromMilliseconds(200);

    /// <summary>Starts <paramref name="operation"/>, checks it is still waiting after <see cref="Pending"/>, cancels it and checks it throws promptly.</summary>
    private static async Task AssertCancelsPromptlyAsync(Func<CancellationToken, Task> operation)
    {
        using var cts = new CancellationTokenSource();
        Task task = operation(cts.Token);
        await Task.Delay(Pending);
        Assert.False(task.IsCompleted, $"the operation did not wait: {task.Status} {task.Exception?.InnerException}");
        var clock = Stopwatch.StartNew();
        cts.Cancel();
        OperationCanceledException e = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => task).WaitAsync(Timeout);
        Assert.True(clock.Elapsed < Prompt, $"threw {clock.ElapsedMilliseconds} ms after cancellation");
        Assert.Equal(cts.Token, e.CancellationToken);
    }

    private static async Task<(QuicListener Listener, QuicConnection Client, QuicConnection Server)> ConnectAsync(Action<KestrelQuic.Configuration.QuicConfiguration>? server = null, Action<KestrelQuic.Configuration.QuicConfiguration>? client = null)
    {
        QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(server));
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        QuicConnection c = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, client)).AsTask().WaitAsync(Timeout);
        QuicConnection s = await accept.WaitAsync(Timeout);
        return (listener, c, s);
    }

    [Fact]
    public async Task AcceptConnectionAsync_Cancelled_ThrowsPromptly_NextAcceptGetsTheNextConnection()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await AssertCancelsPromptlyAsync(ct => listener.AcceptConnectionAsync(ct).AsTask());

        // An already-cancelled token throws without waiting.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => listener.AcceptConnectionAsync(new CancellationToken(true)).AsTask());

        // The connection that arrives afterwards is not swallowed by the cancelled waits.
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await listener.AcceptConnectionAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(client.LocalEndPoint.Port, server.RemoteEndPoint.Port);
        await LoopbackLifecycleTests.AssertEchoAsync(client, server, 10_000);
    }

    [Fact]
    public async Task AcceptInboundStreamAsync_Cancelled_ThrowsPromptly_NextAcceptGetsTheStream()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync();
        await using (listener)
        await using (client)
        await using (server)
        {
            await AssertCancelsPromptlyAsync(ct => server.AcceptInboundStreamAsync(ct).AsTask());

            await using QuicStream outbound = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await outbound.WriteAsync(new byte[] { 1, 2, 3 }, completeWrites: true);
            await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(outbound.Id, inbound.Id);
            var received = new MemoryStream();
            await inbound.CopyToAsync(received).WaitAsync(Timeout);
            Assert.Equal(new byte[] { 1, 2, 3 }, received.ToArray());
            Assert.False(server.Closed.IsCompleted);
            Assert.False(client.Closed.IsCompleted);
        }
    }

    [Fact]
    public async Task OpenOutboundStreamAsync_CancelledWhileAtThePeersLimit_ThrowsPromptly_LaterOpenSucceedsWhenTheLimitRises()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync(server: c => c.MaxBidirectionalStreams = 1);
        await using (listener)
        await using (client)
        await using (server)
        {
            QuicStream first = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            Assert.Equal(0, first.Id);
            Assert.Equal(0, client.GetAvailableOutboundStreamCount(QuicStreamType.Bidirectional));

            // Twice: a second cancelled wait on the same blocked limit must behave like the first.
            await AssertCancelsPromptlyAsync(ct => client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, ct).AsTask());
            await AssertCancelsPromptlyAsync(ct => client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional, ct).AsTask());

            // A new wait, then the server finishes the first stream: its MAX_STREAMS lets exactly the next stream open,
            // with the next stream ID (the cancelled calls consumed none).
            Task<QuicStream> second = client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask();
            await first.WriteAsync(new byte[] { 42 }, completeWrites: true);
            QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var buffer = new byte[4];
            Assert.Equal(1, await inbound.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
            Assert.Equal(0, await inbound.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
            await inbound.WriteAsync(ReadOnlyMemory<byte>.Empty, completeWrites: true);
            Assert.Equal(0, await first.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
            await first.DisposeAsync();
            await inbound.DisposeAsync();

            await using QuicStream opened = await second.WaitAsync(Timeout);
            Assert.Equal(4, opened.Id);
            await opened.WriteAsync(new byte[] { 7 }, completeWrites: true);
            await using QuicStream inbound2 = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(4, inbound2.Id);
            Assert.Equal(1, await inbound2.ReadAsync(buffer).AsTask().WaitAsync(Timeout));
            Assert.Equal(7, buffer[0]);
        }
    }

    [Fact]
    public async Task ReadAsync_Cancelled_ThrowsPromptly_StreamStaysOpenAndLaterDataIsRead()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync();
        await using (listener)
        await using (client)
        await using (server)
        {
            await using QuicStream outbound = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await outbound.WriteAsync(new byte[] { 1 });
            await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var buffer = new byte[16];
            Assert.Equal(1, await inbound.ReadAsync(buffer).AsTask().WaitAsync(Timeout));

            await AssertCancelsPromptlyAsync(ct => inbound.ReadAsync(buffer, ct).AsTask());
            await AssertCancelsPromptlyAsync(ct => outbound.ReadAsync(buffer, ct).AsTask());

            // Nothing was aborted: data flows both ways afterwards and both halves finish cleanly.
            await outbound.WriteAsync(new byte[] { 2, 3 }, completeWrites: true);
            var received = new MemoryStream();
            await inbound.CopyToAsync(received).WaitAsync(Timeout);
            Assert.Equal(new byte[] { 2, 3 }, received.ToArray());
            await inbound.WriteAsync(new byte[] { 9, 8 }, completeWrites: true);
            var echoed = new MemoryStream();
            await outbound.CopyToAsync(echoed).WaitAsync(Timeout);
            Assert.Equal(new byte[] { 9, 8 }, echoed.ToArray());
            await outbound.WritesClosed.WaitAsync(Timeout);
            await inbound.WritesClosed.WaitAsync(Timeout);
            await inbound.ReadsClosed.WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task ReceiveDatagramAsync_Cancelled_ThrowsPromptly_NextReceiveGetsTheDatagram()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync(server: c => c.MaxDatagramFrameSize = 1200, client: c => c.MaxDatagramFrameSize = 1200);
        await using (listener)
        await using (client)
        await using (server)
        {
            await AssertCancelsPromptlyAsync(ct => server.ReceiveDatagramAsync(ct).AsTask());
            await AssertCancelsPromptlyAsync(ct => server.ReceiveDatagramAsync(ct).AsTask());

            await client.SendDatagramAsync(new byte[] { 5, 6, 7 });
            Assert.Equal(new byte[] { 5, 6, 7 }, await server.ReceiveDatagramAsync().AsTask().WaitAsync(Timeout));
            await server.SendDatagramAsync(new byte[] { 8 });
            Assert.Equal(new byte[] { 8 }, await client.ReceiveDatagramAsync().AsTask().WaitAsync(Timeout));
        }
    }

    [Fact]
    public async Task ConnectAsync_CancelledWhileNobodyAnswers_ThrowsPromptly_ReleasesItsSocket_PortConnectsAfterwards()
    {
        // A bound socket that never answers: the client's Initials go nowhere.
        using var blackhole = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        blackhole.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        int localPort = FreeUdpPort();
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions((IPEndPoint)blackhole.LocalEndPoint!);
        options.LocalEndPoint = new IPEndPoint(IPAddress.Loopback, localPort);
        options.HandshakeTimeout = TimeSpan.FromMinutes(1); // the cancellation, not the timeout, must end it

        await AssertCancelsPromptlyAsync(ct => QuicConnection.ConnectAsync(options, ct).AsTask());
        Assert.True(blackhole.Available > 0, "the client never sent its Initial");

        // The connection's private endpoint and socket are gone: the port can be bound again.
        var clock = Stopwatch.StartNew();
        while (!CanBind(localPort))
        {
            Assert.True(clock.Elapsed < Prompt, $"port {localPort} still bound {clock.ElapsedMilliseconds} ms after the cancelled connect");
            await Task.Delay(20);
        }

        // And a connection from the same local port to a real server works.
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        QuicClientConnectionOptions again = LoopbackTests.ClientOptions(listener.LocalEndPoint);
        again.LocalEndPoint = new IPEndPoint(IPAddress.Loopback, localPort);
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(again).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await accept.WaitAsync(Timeout);
        Assert.Equal(localPort, server.RemoteEndPoint.Port);
        await LoopbackLifecycleTests.AssertEchoAsync(client, server, 1000);
    }

    [Fact]
    public async Task ConnectAsync_AlreadyCancelledToken_ThrowsWithoutBindingASocket()
    {
        int localPort = FreeUdpPort();
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions(new IPEndPoint(IPAddress.Loopback, 9));
        options.LocalEndPoint = new IPEndPoint(IPAddress.Loopback, localPort);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => QuicConnection.ConnectAsync(options, new CancellationToken(true)).AsTask()).WaitAsync(Timeout);
        Assert.True(CanBind(localPort));
    }

    private static int FreeUdpPort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static bool CanBind(int port)
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            return false;
        }
    }
}
