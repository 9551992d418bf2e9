namespace KestrelQuic.Http.Tests;

/// <summary>
/// Http3HandlerOptions.MaxConcurrentStreamsPerConnection as documented: when every connection has that many requests
/// in flight another connection is opened (up to MaxConnectionsPerServer); once no more may be opened, requests go to
/// the least loaded connection and wait there only for the server's MAX_STREAMS.
/// </summary>
public sealed class ConnectionPoolTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ClientLimitReached_NextRequestsOpenAnotherConnection()
    {
        const int Limit = 3;
        const int Requests = 7;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var allArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int arrived = 0;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            if (Interlocked.Increment(ref arrived) == Requests) allArrived.TrySetResult();
            await release.Task;
            await request.RespondAsync(200, request.Path);
        });
        using var handler = new ManagedHttp3Handler(FakeH3Server.ClientOptions(o => o.MaxConcurrentStreamsPerConnection = Limit));
        using var client = new HttpClient(handler);

        Task<string>[] inFlight = [.. Enumerable.Range(0, Requests).Select(i => client.GetStringAsync(new Uri(server.BaseUri, $"/{i}")))];

        // All seven are at the server at once (the server allows 100 streams per connection), three at most per connection.
        await allArrived.Task.WaitAsync(Timeout);
        Assert.Equal([1, Limit, Limit], server.Connections.Select(c => RequestCount(c)).Order());
        Assert.Equal(3, handler.ConnectionsOpened);

        release.TrySetResult();
        string[] bodies = await Task.WhenAll(inFlight).WaitAsync(Timeout);
        Assert.Equal(Enumerable.Range(0, Requests).Select(i => $"/{i}"), bodies);

        // Requests within the limits of the connections already open reuse them.
        string[] more = await Task.WhenAll(Enumerable.Range(0, 2 * Limit).Select(i => client.GetStringAsync(new Uri(server.BaseUri, $"/more{i}")))).WaitAsync(Timeout);
        Assert.Equal(2 * Limit, more.Length);
        Assert.Equal(3, handler.ConnectionsOpened);
        Assert.Equal(3, server.ConnectionCount);
    }

    [Fact]
    public async Task NoMoreConnectionsAllowed_RequestsShareTheConnection_WaitingOnlyForTheServersStreamLimit()
    {
        const int ServerStreams = 3;
        const int Requests = 5;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var serverFull = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int active = 0;
        int maxActive = 0;
        await using FakeH3Server server = await FakeH3Server.StartAsync(
            async request =>
            {
                int now = Interlocked.Increment(ref active);
                InterlockedMax(ref maxActive, now);
                if (now == ServerStreams) serverFull.TrySetResult();
                await release.Task;
                Interlocked.Decrement(ref active);
                await request.RespondAsync(200, request.Path);
            },
            c => c.MaxBidirectionalStreams = ServerStreams);
        using var handler = new ManagedHttp3Handler(FakeH3Server.ClientOptions(o =>
        {
            o.MaxConcurrentStreamsPerConnection = 2;
            o.MaxConnectionsPerServer = 1;
        }));
        using var client = new HttpClient(handler);

        Task<string>[] inFlight = [.. Enumerable.Range(0, Requests).Select(i => client.GetStringAsync(new Uri(server.BaseUri, $"/{i}")))];

        // Past the client's limit of 2 (no second connection may be opened), up to the server's 3.
        await serverFull.Task.WaitAsync(Timeout);
        await Task.Delay(300);
        Assert.Equal(ServerStreams, Volatile.Read(ref active));
        Assert.DoesNotContain(inFlight, t => t.IsCompleted);

        release.TrySetResult();
        string[] bodies = await Task.WhenAll(inFlight).WaitAsync(Timeout);
        Assert.Equal(Enumerable.Range(0, Requests).Select(i => $"/{i}"), bodies);
        Assert.Equal(ServerStreams, maxActive);
        Assert.Equal(1, handler.ConnectionsOpened);
        Assert.Equal(1, server.ConnectionCount);
    }

    private static int RequestCount(FakeH3Connection connection)
    {
        lock (connection.RequestStreamIds)
        {
            return connection.RequestStreamIds.Count;
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
