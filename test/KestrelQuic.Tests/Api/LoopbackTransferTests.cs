using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using KestrelQuic.Tests.Simulation;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// Tests whose figures (throughput, memory) mean something only when nothing else runs: xunit runs this collection
/// after the parallel ones, alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialLoopbackCollection
{
    public const string Name = "Serial loopback";
}

/// <summary>Bulk transfer and stream fan-out over real UDP sockets on loopback.</summary>
[Collection(SerialLoopbackCollection.Name)]
public sealed class LoopbackTransferTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly ITestOutputHelper _output;

    public LoopbackTransferTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public async Task Echo100MegabytesOverOneStream_Sha256MatchesOnBothEnds()
    {
        const long Total = 100L * 1024 * 1024;
        const int Chunk = 64 * 1024;

        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        // The server hashes what it receives and echoes it; its hash proves the upload, the client's the download.
        Task<(byte[] Hash, long Bytes)> serverSide = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[Chunk];
            long bytes = 0;
            int n;
            while ((n = await s.ReadAsync(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                bytes += n;
                await s.WriteAsync(buffer.AsMemory(0, n));
            }

            s.CompleteWrites();
            await s.WritesClosed;
            return (sha.GetHashAndReset(), bytes);
        });

        long peakWorkingSet = 0;
        using var sampler = new Timer(_ => InterlockedMax(ref peakWorkingSet, Environment.WorkingSet), null, 0, 50);
        var clock = Stopwatch.StartNew();

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        Task<byte[]> upload = Task.Run(async () =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var random = new Random(42);
            var buffer = new byte[Chunk];
            for (long sent = 0; sent < Total; sent += Chunk)
            {
                random.NextBytes(buffer);
                sha.AppendData(buffer);
                await stream.WriteAsync(buffer);
            }

            stream.CompleteWrites();
            return sha.GetHashAndReset();
        });

        using var received = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var readBuffer = new byte[Chunk];
        long receivedBytes = 0;
        Task download = Task.Run(async () =>
        {
            int n;
            while ((n = await stream.ReadAsync(readBuffer)) > 0)
            {
                received.AppendData(readBuffer, 0, n);
                receivedBytes += n;
            }
        });

        byte[] sentHash = await upload.WaitAsync(Timeout);
        await download.WaitAsync(Timeout);
        clock.Stop();
        (byte[] serverHash, long serverBytes) = await serverSide.WaitAsync(Timeout);
        InterlockedMax(ref peakWorkingSet, Environment.WorkingSet);

        Assert.Equal(Total, serverBytes);
        Assert.Equal(Total, receivedBytes);
        Assert.Equal(Convert.ToHexString(sentHash), Convert.ToHexString(serverHash));
        Assert.Equal(Convert.ToHexString(sentHash), Convert.ToHexString(received.GetHashAndReset()));

        double seconds = clock.Elapsed.TotalSeconds;
        double mb = Total / (1024.0 * 1024.0);
        _output.WriteLine($"100 MB echo (up and back over one stream): {clock.Elapsed.TotalMilliseconds:F0} ms, {mb / seconds:F1} MB/s each way, {2 * mb / seconds:F1} MB/s total");
        _output.WriteLine($"peak working set during the transfer: {peakWorkingSet / (1024.0 * 1024.0):F1} MB (process peak {Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0):F1} MB); managed heap now {GC.GetTotalMemory(false) / (1024.0 * 1024.0):F1} MB");
        lock (client.Endpoint.Lock)
        {
            _output.WriteLine($"client socket: {client.Endpoint.Socket.DatagramsSent} datagrams / {client.Endpoint.Socket.GsoSends} GSO sends, {client.Endpoint.Socket.SendErrors} send errors; smoothed RTT {client.SmoothedRtt.TotalMilliseconds:F2} ms");
        }
    }

    [Fact]
    public async Task ThousandParallelStreamsOnOneConnection_AllEchoed()
    {
        const int Streams = 1000;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.MaxBidirectionalStreams = Streams));
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        var handlers = new List<Task>();
        Task serverLoop = Task.Run(async () =>
        {
            for (int i = 0; i < Streams; i++)
            {
                QuicStream s = await server.AcceptInboundStreamAsync();
                handlers.Add(Task.Run(async () =>
                {
                    await using (s)
                    {
                        var ms = new MemoryStream();
                        await s.CopyToAsync(ms);
                        byte[] request = ms.ToArray();
                        await s.WriteAsync(Encoding.ASCII.GetBytes($"{s.Id}:").Concat(request).ToArray(), completeWrites: true);
                        await s.WritesClosed;
                    }
                }));
            }
        });

        var clock = Stopwatch.StartNew();
        Task<(long Id, string Reply)>[] requests = Enumerable.Range(0, Streams).Select(i => Task.Run(async () =>
        {
            await using QuicStream s = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            // Sizes vary so some streams take more than one packet.
            byte[] body = SimulationHelpers.Payload(100 + (i % 7) * 1000, i);
            await s.WriteAsync(body, completeWrites: true);
            var ms = new MemoryStream();
            await s.CopyToAsync(ms);
            byte[] reply = ms.ToArray();
            string prefix = $"{s.Id}:";
            Assert.Equal(prefix, Encoding.ASCII.GetString(reply, 0, prefix.Length));
            Assert.Equal(body, reply.AsSpan(prefix.Length).ToArray());
            return (s.Id, prefix);
        })).ToArray();

        (long Id, string Reply)[] results = await Task.WhenAll(requests).WaitAsync(Timeout);
        await serverLoop.WaitAsync(Timeout);
        await Task.WhenAll(handlers).WaitAsync(Timeout);
        clock.Stop();

        Assert.Equal(Streams, results.Select(r => r.Id).Distinct().Count());
        Assert.All(results, r => Assert.Equal(0, r.Id % 4)); // all client-initiated bidirectional
        _output.WriteLine($"{Streams} parallel request/response streams: {clock.Elapsed.TotalMilliseconds:F0} ms");
    }

    private static void InterlockedMax(ref long target, long value)
    {
        long current;
        while (value > (current = Interlocked.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
