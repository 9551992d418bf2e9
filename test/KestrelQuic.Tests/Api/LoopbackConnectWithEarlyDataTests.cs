using KestrelQuic.Configuration;

namespace KestrelQuic.Tests.Api;

/// <summary>ConnectWithEarlyData: ConnectAsync returns before the handshake and stream data goes out in 0-RTT.</summary>
public sealed class LoopbackConnectWithEarlyDataTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task ConnectWithEarlyData_ReturnsBeforeHandshake_StreamDataEchoed_EarlyDataAccepted()
    {
        QuicListenerOptions options = LoopbackTests.ListenerOptions(c => c.EnableEarlyData = true);
        bool delay = false;
        options.ConnectionOptionsCallback = async (connection, hello, ct) =>
        {
            // Hold the second handshake back so ConnectAsync provably returns before it completes.
            if (delay)
            {
                await Task.Delay(300, ct);
            }

            return options.Configuration;
        };
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        var store = new TicketWitnessStore();
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.EnableEarlyData = true);
        clientOptions.SessionStore = store;
        clientOptions.ConnectWithEarlyData = true;

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection first = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout))
        {
            // Without a ticket there is no 0-RTT: ConnectAsync waited for the handshake.
            Assert.True(first.HandshakeCompleted.IsCompletedSuccessfully);
            await using QuicConnection firstServer = await acceptTask.WaitAsync(Timeout);
            await first.PingAsync().AsTask().WaitAsync(Timeout);
            await store.TicketStored.Task.WaitAsync(Timeout);
        }

        delay = true;
        acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection second = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        Assert.False(second.HandshakeCompleted.IsCompleted);
        await using QuicStream stream = await second.OpenOutboundStreamAsync(QuicStreamType.Bidirectional).AsTask().WaitAsync(Timeout);
        await stream.WriteAsync("early"u8.ToArray(), completeWrites: true);

        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await using (QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout))
        {
            var received = new MemoryStream();
            await inbound.CopyToAsync(received).WaitAsync(Timeout);
            await inbound.WriteAsync(received.ToArray(), completeWrites: true);
        }

        var echoed = new MemoryStream();
        await stream.CopyToAsync(echoed).WaitAsync(Timeout);
        await second.HandshakeCompleted.WaitAsync(Timeout);
        Assert.Equal("early"u8.ToArray(), echoed.ToArray());
        Assert.True(second.IsResumed);
        Assert.True(second.IsEarlyDataAccepted);
    }

    /// <summary>The store is the reliable witness: the ticket event may fire before a handler is attached.</summary>
    private sealed class TicketWitnessStore : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _inner = new();

        public TaskCompletionSource TicketStored { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            _inner.StoreSessionTicket(serverName, ticket);
            TicketStored.TrySetResult();
        }

        public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token) => _inner.StoreToken(serverName, token);
    }
}
