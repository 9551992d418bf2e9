using System.Diagnostics;
using System.Security.Cryptography;
using KestrelQuic.Streams;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// A client that opens every stream the server allows, asks each for a large response and never reads (so it never
/// opens a flow-control window): the server application's writes block instead of buffering without limit, per
/// stream and per connection; another client on the same listener downloads at full speed meanwhile; the
/// application's write timeout, or the idle timeout once the client goes silent, releases everything.
/// </summary>
[Collection(SerialLoopbackCollection.Name)]
public sealed class NeverReadingPeerLoopbackTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private const int ResponseSize = 64 * 1024 * 1024;
    private const int HonestSize = 16 * 1024 * 1024;
    private const int Chunk = 64 * 1024;

    /// <summary>What the server application did on one stream.</summary>
    private sealed class Response
    {
        public long Id;
        public long Written;        // bytes WriteAsync accepted
        public string Outcome = "writing";
    }

    /// <summary>
    /// The server application: answers every request on <paramref name="connection"/> with <paramref name="size"/>
    /// deterministic bytes; a write that makes no progress for <paramref name="writeTimeout"/> aborts the stream.
    /// </summary>
    private static async Task ServeAsync(QuicConnection connection, int size, TimeSpan writeTimeout, List<Response> responses)
    {
        var tasks = new List<Task>();
        try
        {
            while (true)
            {
                QuicStream stream = await connection.AcceptInboundStreamAsync();
                var r = new Response { Id = stream.Id };
                lock (responses) responses.Add(r);
                tasks.Add(Task.Run(async () =>
                {
                    await using QuicStream s = stream;
                    try
                    {
                        var request = new byte[64];
                        while (await s.ReadAsync(request) > 0)
                        {
                        }

                        byte[] chunk = new byte[Chunk];
                        for (int offset = 0; offset < size; offset += Chunk)
                        {
                            FillResponse(chunk, offset);
                            using var cts = new CancellationTokenSource(writeTimeout);
                            try
                            {
                                await s.WriteAsync(chunk, completeWrites: offset + Chunk >= size, cts.Token);
                            }
                            catch (OperationCanceledException)
                            {
                                // The peer does not read: give up on it rather than wait forever.
                                s.Abort(QuicAbortDirection.Both, 0x10c);
                                r.Outcome = "aborted after a write timeout";
                                return;
                            }

                            Interlocked.Add(ref r.Written, Chunk);
                        }

                        await s.WritesClosed;
                        r.Outcome = "complete";
                    }
                    catch (QuicException e)
                    {
                        r.Outcome = e.QuicError.ToString();
                    }
                }));
            }
        }
        catch (QuicException)
        {
            // The connection ended.
        }

        await Task.WhenAll(tasks);
    }

    /// <summary>Response bytes are a function of their offset, so the client can check every byte.</summary>
    private static void FillResponse(Span<byte> chunk, long offset)
    {
        for (int i = 0; i < chunk.Length; i += 8)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(chunk[i..], (offset + i) * unchecked((long)0x9E3779B97F4A7C15UL));
        }
    }

    private static async Task<int> OpenGreedyStreamsAsync(QuicConnection greedy, List<QuicStream> streams)
    {
        // Every bidirectional stream the server allows, each asking for a large response; none is ever read.
        while (greedy.GetAvailableOutboundStreamCount(QuicStreamType.Bidirectional) > 0)
        {
            QuicStream s = await greedy.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await s.WriteAsync("GET /64MB"u8.ToArray(), completeWrites: true);
            streams.Add(s);
        }

        return streams.Count;
    }

    private static (long Connection, long Limit, long MaxStream) ServerBuffered(QuicConnection server, List<Response>? responses = null)
    {
        lock (server.Endpoint.Lock)
        {
            var core = server.Handle.Core;
            long maxStream = 0;
            foreach (Response r in responses ?? [])
            {
                if (core.GetStream((ulong)r.Id)?.Send is { IsDiscarded: false } send) maxStream = Math.Max(maxStream, send.BufferedBytes);
            }

            return (core.SendBufferedBytes, core.SendBufferLimit, maxStream);
        }
    }

    private static async Task WaitForStallAsync(List<Response> responses, int streams)
    {
        // Until every stream has a response in progress and the application's writes stopped making progress.
        long last = -1;
        var stable = Stopwatch.StartNew();
        var clock = Stopwatch.StartNew();
        while (stable.Elapsed < TimeSpan.FromSeconds(1))
        {
            Assert.True(clock.Elapsed < Timeout, "the server kept accepting writes");
            await Task.Delay(100);
            long total;
            int count;
            lock (responses)
            {
                count = responses.Count;
                total = responses.Sum(r => Interlocked.Read(ref r.Written));
            }

            if (count < streams || total != last) stable.Restart();
            last = total;
        }
    }

    private static async Task<byte[]> DownloadAsync(QuicConnection client)
    {
        await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await s.WriteAsync("GET /16MB"u8.ToArray(), completeWrites: true);
        var received = new MemoryStream();
        var buffer = new byte[Chunk];
        int n;
        while ((n = await s.ReadAsync(buffer)) > 0) received.Write(buffer, 0, n);
        return received.ToArray();
    }

    private static byte[] Expected(int size)
    {
        var all = new byte[size];
        for (int offset = 0; offset < size; offset += Chunk) FillResponse(all.AsSpan(offset, Chunk), offset);
        return all;
    }

    [Fact]
    public async Task PeerOpensAllStreamsAndNeverReads_ServerBuffersBounded_OtherClientUnaffected_WriteTimeoutCleansUp()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        var greedyResponses = new List<Response>();
        var honestResponses = new List<Response>();
        TimeSpan writeTimeout = TimeSpan.FromSeconds(4);

        Task<QuicConnection> acceptGreedy = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection greedy = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection greedyServer = await acceptGreedy.WaitAsync(Timeout);
        Task serveGreedy = ServeAsync(greedyServer, ResponseSize, writeTimeout, greedyResponses);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var greedyStreams = new List<QuicStream>();
        int opened = await OpenGreedyStreamsAsync(greedy, greedyStreams).WaitAsync(Timeout);
        Assert.Equal(LoopbackTests.ListenerOptions().Configuration.MaxBidirectionalStreams, opened);
        await WaitForStallAsync(greedyResponses, opened);

        // The greedy client's windows: 4 MiB for the connection, 1 MiB per stream; it never reads, so they never open.
        long clientMaxData = (long)greedy.Handle.Core.LocalTransportParameters.InitialMaxData;
        long written = greedyResponses.Sum(r => r.Written);
        (long buffered, long limit, long maxStream) = ServerBuffered(greedyServer, greedyResponses);
        long heapStalled = GC.GetTotalMemory(forceFullCollection: true);
        output.WriteLine($"{opened} streams asking for 64 MiB each, never read: the server application wrote {written / 1048576.0:F1} MiB in all " +
            $"(at most {greedyResponses.Max(r => r.Written) / 1048576.0:F1} MiB on one stream) and is blocked; the transport holds {buffered / 1048576.0:F1} MiB " +
            $"(limit {limit / 1048576.0:F0} MiB, at most {maxStream / 1048576.0:F2} MiB on one stream); heap +{(heapStalled - heapBefore) / 1048576.0:F1} MiB");

        // Writes block instead of buffering: per connection within the send buffer limit (what the client acknowledged
        // was released), per stream within the client's stream window plus the write-ahead allowance.
        Assert.True(buffered <= limit, $"{buffered} bytes buffered");
        Assert.Equal(16L * 1024 * 1024, limit);
        Assert.True(written <= clientMaxData + limit + opened * (long)Chunk, $"the application wrote {written} bytes");
        Assert.True(maxStream <= (long)greedy.Handle.Core.LocalTransportParameters.InitialMaxStreamDataBidiRemote + StreamState.SendAheadLimit, $"{maxStream} bytes buffered on one stream");
        Assert.All(greedyResponses, r => Assert.Equal("writing", r.Outcome));
        Assert.True(heapStalled - heapBefore < 2 * limit + (16L << 20), $"heap grew by {(heapStalled - heapBefore) / 1048576.0:F1} MiB");

        // Meanwhile another client on the same listener downloads at full speed, every byte checked.
        Task<QuicConnection> acceptHonest = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection honest = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection honestServer = await acceptHonest.WaitAsync(Timeout);
        Task serveHonest = ServeAsync(honestServer, HonestSize, writeTimeout, honestResponses);
        var clock = Stopwatch.StartNew();
        byte[] download = await DownloadAsync(honest).WaitAsync(Timeout);
        output.WriteLine($"the other client downloaded {HonestSize / 1048576} MiB in {clock.ElapsedMilliseconds} ms meanwhile");
        Assert.Equal(Expected(HonestSize), download);
        Assert.Equal("complete", Assert.Single(honestResponses).Outcome);

        // The application's write timeout aborts the stuck streams, and the transport lets go of their buffers.
        await LoopbackLifecycleTests.WaitUntilAsync(() => greedyResponses.All(r => r.Outcome != "writing"), Timeout);
        Assert.All(greedyResponses, r => Assert.Equal("aborted after a write timeout", r.Outcome));
        await LoopbackLifecycleTests.WaitUntilAsync(() => ServerBuffered(greedyServer).Connection == 0, Timeout);
        output.WriteLine($"after the write timeouts: {ServerBuffered(greedyServer).Connection} bytes buffered");
        foreach (QuicStream s in greedyStreams) await s.DisposeAsync();
        await greedy.CloseAsync(0);
        await honest.CloseAsync(0);
        await Task.WhenAll(serveGreedy, serveHonest).WaitAsync(Timeout);
    }

    [Fact]
    public async Task PeerNeverReadsThenGoesSilent_IdleTimeoutEndsTheConnection_BlockedWritesFail_BuffersReleased()
    {
        QuicListenerOptions options = LoopbackTests.ListenerOptions(c => c.IdleTimeout = TimeSpan.FromSeconds(2));
        await using QuicListener listener = await QuicListener.ListenAsync(options);
        var responses = new List<Response>();
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        QuicConnection greedy = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await accept.WaitAsync(Timeout);
        Task serve = ServeAsync(server, ResponseSize, Timeout, responses); // no write timeout that could fire first

        var streams = new List<QuicStream>();
        int opened = await OpenGreedyStreamsAsync(greedy, streams).WaitAsync(Timeout);
        await WaitForStallAsync(responses, opened);
        (long buffered, long limit, _) = ServerBuffered(server);
        Assert.True(buffered <= limit);

        // Acknowledging keeps a connection alive even when nothing is read; the client now vanishes without a word.
        var clock = Stopwatch.StartNew();
        await greedy.Endpoint.DisposeAsync();
        QuicCloseReason reason = await server.Closed.WaitAsync(Timeout);
        await serve.WaitAsync(Timeout);
        output.WriteLine($"server: {reason} after {clock.ElapsedMilliseconds} ms; the blocked writes ended with: {string.Join(", ", responses.GroupBy(r => r.Outcome).Select(g => $"{g.Count()} {g.Key}"))}");
        Assert.True(reason.IdleTimeout);
        Assert.Equal(opened, responses.Count);
        Assert.All(responses, r => Assert.Equal(nameof(QuicError.ConnectionIdle), r.Outcome));
        lock (listener.Endpoint.Lock) Assert.Equal(0, listener.Endpoint.Core.ConnectionCount);
        await greedy.DisposeAsync();
    }
}
