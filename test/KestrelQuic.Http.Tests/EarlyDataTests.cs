using System.Collections.Concurrent;
using System.Net;

namespace KestrelQuic.Http.Tests;

/// <summary>The handler's 0-RTT: on a resumed connection, a GET leaves in early data, a POST waits for the handshake.</summary>
public sealed class EarlyDataTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ResumedConnection_GetGoesIn0Rtt_PostWaitsForTheHandshake()
    {
        var seen = new ConcurrentDictionary<string, bool>();
        await using FakeH3Server server = await FakeH3Server.StartAsync(
            async request =>
            {
                // After the whole request was read: IsEarlyData reflects every byte of it.
                long bodyLength = 0;
                await request.ReadBodyAsync(chunk =>
                {
                    bodyLength += chunk.Length;
                    return Task.CompletedTask;
                });
                seen[$"{request.Method} {request.Path}"] = request.Stream.IsEarlyData;
                await request.RespondAsync(200, $"{request.Method} {bodyLength}");
            },
            c => c.EnableEarlyData = true);

        // 20 ms each way: a request written at once leaves long before the handshake can complete.
        await using var proxy = new UdpDelayProxy(new IPEndPoint(IPAddress.Loopback, server.BaseUri.Port), TimeSpan.FromMilliseconds(20));
        var store = new TicketStore();
        Uri origin = new($"https://localhost:{proxy.Port}/");
        using (var first = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions(o => o.SessionStore = store))))
        {
            Assert.Equal("GET 0", await first.GetStringAsync(new Uri(origin, "/first")).WaitAsync(Timeout));
            await store.Stored.WaitAsync(Timeout);
        }

        Assert.False(seen["GET /first"]);
        using var handler = new ManagedHttp3Handler(FakeH3Server.ClientOptions(o =>
        {
            o.SessionStore = store;
            o.EnableEarlyData = true;
        }));
        using var second = new HttpClient(handler);

        // Both start before the handshake; the POST first, so that it is not merely later than the GET.
        using var post = new HttpRequestMessage(HttpMethod.Post, new Uri(origin, "/post")) { Content = new ByteArrayContent(new byte[100]) };
        Task<HttpResponseMessage> postTask = second.SendAsync(post);
        Task<string> getTask = second.GetStringAsync(new Uri(origin, "/get"));
        using HttpResponseMessage postResponse = await postTask.WaitAsync(Timeout);
        Assert.Equal("POST 100", await postResponse.Content.ReadAsStringAsync());
        Assert.Equal("GET 0", await getTask.WaitAsync(Timeout));

        QuicConnection connection = Assert.Single(handler.GetQuicConnections());
        Assert.True(connection.IsResumed);
        Assert.True(connection.IsEarlyDataAccepted);
        Assert.Equal(1, handler.ConnectionsOpened);
        Assert.True(seen["GET /get"], "the GET did not arrive in 0-RTT");
        Assert.False(seen["POST /post"], "the POST (not idempotent) was sent in 0-RTT");
    }

    private sealed class TicketStore : IQuicSessionStore
    {
        private readonly InMemoryQuicSessionStore _inner = new();
        private readonly TaskCompletionSource _stored = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Stored => _stored.Task;

        public byte[]? TakeSessionTicket(string serverName) => _inner.TakeSessionTicket(serverName);

        public void StoreSessionTicket(string serverName, byte[] ticket)
        {
            _inner.StoreSessionTicket(serverName, ticket);
            _stored.TrySetResult();
        }

        public byte[]? TakeToken(string serverName) => _inner.TakeToken(serverName);

        public void StoreToken(string serverName, byte[] token) => _inner.StoreToken(serverName, token);
    }
}
