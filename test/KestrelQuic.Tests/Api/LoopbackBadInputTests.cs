using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using KestrelQuic.Endpoint;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Endpoint;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// Bad input on a real socket while a real transfer runs. Serial, so that the exceptions it watches for can only
/// come from this test.
/// </summary>
[Collection(SerialLoopbackCollection.Name)]
public sealed class LoopbackBadInputTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly ITestOutputHelper _output;

    public LoopbackBadInputTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public async Task GarbageFloodDuring20MegabyteTransfer_TransferCompletesDropsCountedNoExceptions()
    {
        var unobserved = new List<Exception>();
        var engineExceptions = new List<string>();
        EventHandler<UnobservedTaskExceptionEventArgs> onUnobserved = (_, e) =>
        {
            lock (unobserved) unobserved.Add(e.Exception);
        };
        long forgedTags = 0;
        EventHandler<FirstChanceExceptionEventArgs> onFirstChance = (_, e) =>
        {
            switch (e.Exception)
            {
                case AuthenticationTagMismatchException:
                    // The only way AesGcm/ChaCha20Poly1305 report a forged packet; PacketAead.TryOpen catches it.
                    Interlocked.Increment(ref forgedTags);
                    return;
                case QuicException or OperationCanceledException or ObjectDisposedException or SocketException:
                    return; // how the API reports closed connections and sockets (other tests' leftovers may raise them)
            }

            // Anything else thrown from engine code (parsing, indexing, state) would be a bug that bad input can reach.
            string? ns = e.Exception.TargetSite?.DeclaringType?.Namespace;
            if (ns is not null && ns.StartsWith("KestrelQuic", StringComparison.Ordinal) && !ns.StartsWith("KestrelQuic.Tests", StringComparison.Ordinal))
            {
                lock (engineExceptions) engineExceptions.Add($"{e.Exception.GetType().Name} in {e.Exception.TargetSite}: {e.Exception.Message}");
            }
        };
        TaskScheduler.UnobservedTaskException += onUnobserved;
        AppDomain.CurrentDomain.FirstChanceException += onFirstChance;
        try
        {
            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());

            // The client goes through a relay that records its handshake and first 1-RTT datagrams for replaying.
            await using var relay = new UdpRelay(listener.LocalEndPoint) { RecordClientDatagrams = true };
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.EndPoint)).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 3000);
            relay.RecordClientDatagrams = false;
            byte[][] recorded = relay.Recorded.ToArray();
            byte[] liveCid;
            lock (listener.Endpoint.Lock) liveCid = server.Handle.Core.ConnectionIds.LocalIds.First(e => !e.Retired).ConnectionId;
            IPEndPoint clientSeenAt = server.RemoteEndPoint;

            using var stop = new CancellationTokenSource();
            Task<long[]> flood = Task.Run(() => Flood(listener.LocalEndPoint, liveCid, recorded, stop.Token));
            await LoopbackLifecycleTests.WaitUntilAsync(() => Statistics(listener).DroppedMalformed > 0);
            try
            {
                await LoopbackMigrationTests.EchoWithActionAsync(client, server, 20 * 1024 * 1024, () => Task.CompletedTask);
            }
            finally
            {
                stop.Cancel();
            }

            long[] sent = await flood.WaitAsync(Timeout);
            EndpointStatistics stats = Statistics(listener);
            _output.WriteLine($"flood: {sent.Sum()} datagrams (random {sent[0]}, truncated long headers {sent[1]}, short headers with random CIDs {sent[2]}, spoofed short headers with the live CID {sent[3]}, short Initials {sent[4]}, unknown versions {sent[5]}, huge CID lengths {sent[6]}, replays of {recorded.Length} recorded client datagrams {sent[7]})");
            _output.WriteLine($"server endpoint: received {stats.DatagramsReceived}, malformed {stats.DroppedMalformed}, too short {stats.DroppedTooShort}, no connection {stats.DroppedNoConnection}, unsupported version {stats.DroppedUnsupportedVersion}, version negotiation sent {stats.VersionNegotiationSent}, stateless resets sent {stats.StatelessResetsSent} (rate-limited {stats.StatelessResetsRateLimited}), response queue full {stats.DroppedResponseQueueFull}");
            lock (listener.Endpoint.Lock)
            {
                _output.WriteLine($"live connection: {server.Handle.Core.Statistics.DecryptionFailures} decryption failures, {server.Handle.Core.Statistics.PacketsDropped} packets dropped; AEAD tag-mismatch exceptions caught inside the engine: {Interlocked.Read(ref forgedTags)}");
                Assert.True(server.Handle.Core.Statistics.DecryptionFailures > 0);
                Assert.Equal(clientSeenAt, server.RemoteEndPoint); // spoofed and replayed packets moved nothing
            }

            Assert.True(stats.DroppedMalformed > 0);
            Assert.True(stats.DroppedTooShort > 0);
            Assert.True(stats.DroppedNoConnection > 0);
            Assert.True(stats.VersionNegotiationSent > 0);
            Assert.True(stats.StatelessResetsSent > 0);
            Assert.Equal(1, stats.ConnectionsAccepted);

            // The listener still takes new connections.
            Task<QuicConnection> acceptAgain = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection second = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
            await using QuicConnection secondServer = await acceptAgain.WaitAsync(Timeout);
            await LoopbackLifecycleTests.AssertEchoAsync(second, secondServer, 10_000);
        }
        finally
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            AppDomain.CurrentDomain.FirstChanceException -= onFirstChance;
            TaskScheduler.UnobservedTaskException -= onUnobserved;
        }

        Assert.Empty(unobserved);
        Assert.Empty(engineExceptions);
    }

    private static EndpointStatistics Statistics(QuicListener listener)
    {
        lock (listener.Endpoint.Lock)
        {
            EndpointStatistics s = listener.Endpoint.Core.Statistics;
            return new EndpointStatistics
            {
                DatagramsReceived = s.DatagramsReceived,
                DroppedMalformed = s.DroppedMalformed,
                DroppedTooShort = s.DroppedTooShort,
                DroppedNoConnection = s.DroppedNoConnection,
                DroppedUnsupportedVersion = s.DroppedUnsupportedVersion,
                DroppedResponseQueueFull = s.DroppedResponseQueueFull,
                VersionNegotiationSent = s.VersionNegotiationSent,
                StatelessResetsSent = s.StatelessResetsSent,
                StatelessResetsRateLimited = s.StatelessResetsRateLimited,
                ConnectionsAccepted = s.ConnectionsAccepted,
            };
        }
    }

    /// <summary>Sends bad datagrams of eight kinds, in turn, until stopped; returns how many of each.</summary>
    private static long[] Flood(IPEndPoint target, byte[] liveCid, byte[][] recorded, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var random = new Random(7);
        var counts = new long[8];
        var drain = new byte[2048];
        for (int i = 0; !ct.IsCancellationRequested; i++)
        {
            int kind = i % 8;
            byte[] d;
            switch (kind)
            {
                case 0:
                    d = new byte[random.Next(1, 1501)];
                    random.NextBytes(d);
                    break;
                case 1:
                {
                    // A long header cut off somewhere inside its fixed fields or CIDs.
                    byte[] full = EndpointPackets.FakeInitial(QuicVersion.Version1, RandomBytes(random, 8), RandomBytes(random, 8), 1200);
                    d = full.AsSpan(0, random.Next(1, 24)).ToArray();
                    break;
                }

                case 2:
                    d = EndpointPackets.ShortHeader(RandomBytes(random, 8), random.Next(30, 1400), random.Next());
                    break;
                case 3:
                    d = EndpointPackets.ShortHeader(liveCid, random.Next(30, 1400), random.Next());
                    break;
                case 4:
                    d = EndpointPackets.FakeInitial(random.Next(2) == 0 ? QuicVersion.Version1 : QuicVersion.Version2, RandomBytes(random, random.Next(8, 21)), RandomBytes(random, random.Next(0, 21)), random.Next(60, 1200));
                    break;
                case 5:
                    d = EndpointPackets.FakeInitial(0x0a0a0a0a + (uint)random.Next(1000), RandomBytes(random, 8), RandomBytes(random, 8), 1200 + random.Next(0, 200));
                    break;
                case 6:
                    // A v1 long header whose DCID length byte says 21..255 (RFC 9000 §17.2 allows at most 20).
                    d = EndpointPackets.FakeInitial(QuicVersion.Version1, RandomBytes(random, 8), RandomBytes(random, 8), 1200 + random.Next(0, 200));
                    d[5] = (byte)random.Next(21, 256);
                    break;
                default:
                    // A replay, from another address, of something the real client sent (old packet numbers by now).
                    d = recorded[random.Next(recorded.Length)];
                    break;
            }

            try
            {
                socket.SendTo(d, target);
                counts[kind]++;
            }
            catch (SocketException)
            {
                // A full socket buffer or an ICMP error: keep flooding.
            }

            // Swallow what the server answers (Version Negotiation, stateless resets) so nothing piles up.
            while (socket.Available > 0) socket.Receive(drain);
            if (i % 64 == 63) Thread.Sleep(1); // a flood, not a busy loop starving the transfer on two cores
        }

        return counts;
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var b = new byte[length];
        random.NextBytes(b);
        return b;
    }
}
