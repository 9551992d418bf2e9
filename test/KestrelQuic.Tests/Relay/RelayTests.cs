using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Tests.Api;
using KestrelQuic.Tests.Simulation;
using RelayCounters = KestrelQuic.Testing.RelayCounters;
using RelayImpairments = KestrelQuic.Testing.RelayImpairments;
using UdpRelay = KestrelQuic.Testing.UdpRelay;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Relay;

/// <summary>
/// The public API over real loopback sockets through the fault-injecting <see cref="UdpRelay"/>. Serial: these tests
/// load the machine, which would disturb timing-sensitive loopback tests running beside them.
/// </summary>
[Collection(SerialLoopbackCollection.Name)]
public sealed class RelayTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private void Report(UdpRelay relay)
    {
        output.WriteLine($"client → server: {relay.ToServerCounters}");
        output.WriteLine($"server → client: {relay.ToClientCounters}");
    }

    /// <summary>
    /// A delay line keeps the order of what it carries: gtlsserver drops 0-RTT packets that overtake the client's
    /// Initial, and one timer per datagram let them do so (the zerortt interop case failed every other run).
    /// </summary>
    [Fact]
    public async Task Delay_KeepsTheOrderOfDatagrams()
    {
        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        await using var relay = new UdpRelay((IPEndPoint)server.LocalEndPoint!, seed: 7);
        relay.ToServer.Delay = TimeSpan.FromMilliseconds(20);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        const int count = 300;
        var order = new List<int>();
        Task receiving = Task.Run(async () =>
        {
            var buffer = new byte[64];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (order.Count < count)
            {
                int n = await server.ReceiveAsync(buffer, cts.Token);
                Assert.Equal(4, n);
                order.Add(BitConverter.ToInt32(buffer, 0));
            }
        });

        // Bursts of ten, like a client's first flight.
        for (int i = 0; i < count; i++)
        {
            await client.SendToAsync(BitConverter.GetBytes(i), relay.LocalEndPoint);
            if (i % 10 == 9) await Task.Delay(2);
        }

        try
        {
            await receiving;
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"{order.Count} of {count} datagrams arrived; relay {relay.ToServerCounters}");
        }

        Assert.Equal(Enumerable.Range(0, count), order);
    }

    [Fact]
    public async Task FiveMegabyteEcho_WithLossReorderingDuplicationAndCorruption_ContentMatches()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new UdpRelay(listener.LocalEndPoint, seed: 2026);
        foreach (RelayImpairments link in new[] { relay.ToServer, relay.ToClient })
        {
            link.LossRate = 0.05;
            link.ReorderRate = 0.05;
            link.ReorderDelay = TimeSpan.FromMilliseconds(5);
            link.DuplicateRate = 0.02;
            link.CorruptRate = 0.01;
        }

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        byte[] payload = SimulationHelpers.Payload(5 * 1024 * 1024, 7);
        Task<byte[]> echo = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            var received = new MemoryStream();
            var buffer = new byte[64 * 1024];
            int n;
            while ((n = await s.ReadAsync(buffer)) > 0)
            {
                received.Write(buffer, 0, n);
                await s.WriteAsync(buffer.AsMemory(0, n));
            }

            s.CompleteWrites();
            await s.WritesClosed;
            return received.ToArray();
        });

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        Task write = Task.Run(async () =>
        {
            for (int i = 0; i < payload.Length; i += 32 * 1024)
            {
                await stream.WriteAsync(payload.AsMemory(i, Math.Min(32 * 1024, payload.Length - i)));
            }

            stream.CompleteWrites();
        });
        var back = new MemoryStream();
        await stream.CopyToAsync(back).WaitAsync(Timeout);
        await write.WaitAsync(Timeout);
        byte[] atServer = await echo.WaitAsync(Timeout);
        Report(relay);

        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(atServer));
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(back.ToArray()));

        // The impairments really happened, in both directions.
        foreach (RelayCounters c in new[] { relay.ToServerCounters, relay.ToClientCounters })
        {
            Assert.True(c.Dropped > 0 && c.Duplicated > 0 && c.Reordered > 0 && c.Corrupted > 0, c.ToString());
        }
    }

    [Fact]
    public async Task Download_ThroughPeriodicBlackholesAndDelay_ContentMatches()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new UdpRelay(listener.LocalEndPoint, seed: 77);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        // The link is off for 300 ms of every second, both ways, with 5 ms of delay each way.
        foreach (RelayImpairments link in new[] { relay.ToServer, relay.ToClient })
        {
            link.Delay = TimeSpan.FromMilliseconds(5);
            link.BlackholeDuration = TimeSpan.FromMilliseconds(300);
            link.BlackholePeriod = TimeSpan.FromSeconds(1); // starts now, with the link off
        }

        byte[] payload = SimulationHelpers.Payload(3 * 1024 * 1024, 9);
        Task send = Task.Run(async () =>
        {
            await using QuicStream s = await server.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            await s.WriteAsync(payload, completeWrites: true);
            await s.WritesClosed;
        });

        await using QuicStream stream = await client.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        var received = new MemoryStream();
        await stream.CopyToAsync(received).WaitAsync(Timeout);
        await send.WaitAsync(Timeout);
        Report(relay);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(received.ToArray()));
        Assert.True(relay.ToClientCounters.Dropped > 0, "no blackhole was hit");
    }

    /// <summary>
    /// Found two bugs: a corrupted first Initial poisoned the server's view of the client's connection ID, and a lost
    /// client Finished could wait forever behind 1-RTT data filling the congestion window (see the simulation
    /// regression tests FirstClientInitial_WithCorruptedSourceConnectionId_HandshakeStillCompletes and
    /// ClientHandshakePacketsLost_WhileOneRttDataFillsTheWindow_HandshakeAndTransferComplete).
    /// </summary>
    [Fact]
    public async Task TwentyHandshakes_With30PercentLossAndCorruption_AllCompleteAndEcho()
    {
        const int Connections = 20;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task serverLoop = Task.Run(async () =>
        {
            for (int i = 0; i < Connections; i++)
            {
                QuicConnection server = await listener.AcceptConnectionAsync();
                _ = Task.Run(async () =>
                {
                    await using (server)
                    {
                        await using QuicStream s = await server.AcceptInboundStreamAsync();
                        await s.CopyToAsync(s);
                        s.CompleteWrites();
                        await s.WritesClosed;
                        await server.Closed.ContinueWith(_ => { }, TaskScheduler.Default); // the client closes
                    }
                });
            }
        });

        // One relay per client (a relay forwards for one client address), each with its own seed.
        var relays = new List<UdpRelay>();
        try
        {
            for (int i = 0; i < Connections; i++)
            {
                var relay = new UdpRelay(listener.LocalEndPoint, seed: 100 + i);
                foreach (RelayImpairments link in new[] { relay.ToServer, relay.ToClient })
                {
                    link.LossRate = 0.3;
                    link.CorruptRate = 0.02;
                }

                relays.Add(relay);
            }

            await Task.WhenAll(relays.Select(async (relay, i) =>
            {
                await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask().WaitAsync(Timeout);
                await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
                byte[] payload = SimulationHelpers.Payload(20_000, i);
                await stream.WriteAsync(payload, completeWrites: true);
                var back = new MemoryStream();
                try
                {
                    await stream.CopyToAsync(back).WaitAsync(Timeout);
                }
                catch (Exception e)
                {
                    output.WriteLine($"client {i}: {e.Message}; received {back.Length}; {relay.ToServerCounters} / {relay.ToClientCounters}");
                    throw;
                }

                Assert.Equal(payload, back.ToArray());
                await client.CloseAsync(0);
            })).WaitAsync(Timeout);
            await serverLoop.WaitAsync(Timeout);

            long dropped = relays.Sum(r => r.ToServerCounters.Dropped + r.ToClientCounters.Dropped);
            long total = relays.Sum(r => r.ToServerCounters.DatagramsIn + r.ToClientCounters.DatagramsIn);
            output.WriteLine($"{Connections} connections: {dropped} of {total} datagrams dropped, {relays.Sum(r => r.ToServerCounters.Corrupted + r.ToClientCounters.Corrupted)} corrupted");
        }
        finally
        {
            foreach (UdpRelay relay in relays)
            {
                await relay.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task NatRebindingMidTransfer_ServerValidatesNewPathAndTransferCompletes(bool changeAddress)
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new UdpRelay(listener.LocalEndPoint, seed: 9000);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        IPEndPoint before = server.RemoteEndPoint;
        Assert.Equal(relay.ServerFacingEndPoint, before);

        byte[] payload = SimulationHelpers.Payload(5 * 1024 * 1024, 8);
        Task send = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            var request = new byte[16];
            while (await s.ReadAsync(request) > 0)
            {
            }

            for (int i = 0; i < payload.Length; i += 16 * 1024)
            {
                await s.WriteAsync(payload.AsMemory(i, Math.Min(16 * 1024, payload.Length - i)));
            }

            s.CompleteWrites();
            await s.WritesClosed;
        });

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        await stream.WriteAsync("GET"u8.ToArray(), completeWrites: true);
        var received = new MemoryStream();
        var buffer = new byte[64 * 1024];
        IPEndPoint? after = null;
        int n;
        while ((n = await stream.ReadAsync(buffer).AsTask().WaitAsync(Timeout)) > 0)
        {
            received.Write(buffer, 0, n);
            if (after is null && received.Length >= 1024 * 1024)
            {
                // Behind a NAT whose mapping changed: the server now sees the client elsewhere.
                after = relay.Rebind(changeAddress ? IPAddress.Parse("127.0.0.2") : null);
                output.WriteLine($"rebound from {before} to {after} after {received.Length:N0} bytes");
            }
        }

        await send.WaitAsync(Timeout);
        Report(relay);
        Assert.NotNull(after);
        Assert.Equal(SHA256.HashData(payload), SHA256.HashData(received.ToArray()));

        // The server moved to the new path and validated it (a failed validation reverts to the old address).
        Assert.Equal(after, server.RemoteEndPoint);
        lock (server.Endpoint.Lock)
        {
            Assert.False(server.Handle.Core.IsPathValidationInProgress);
        }
    }

    [Fact]
    public async Task BeforeAddressValidation_WithClientRetransmissionsDropped_ServerSendsAtMostThreeTimesWhatItReceived()
    {
        // A long certificate chain makes the server's first flight much larger than 3 × 1200 bytes.
        X509Certificate2Collection chain = LargeChain(count: 6, namesPerCertificate: 120);
        int chainBytes = chain.Sum(c => c.RawData.Length);
        output.WriteLine($"certificate chain: {chain.Count} extra certificates, {chainBytes:N0} bytes");
        Assert.True(chainBytes > 4 * 3 * 1200);

        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.CertificateChain = chain));
        await using var relay = new UdpRelay(listener.LocalEndPoint, seed: 3);
        bool blocking = true;
        relay.ToServer.Filter = (index, _) => index == 0 || !Volatile.Read(ref blocking);

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        Task<QuicConnection> connectTask = QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask();

        // The server gets one 1200-byte Initial and nothing else: its Handshake flight (and every PTO probe) must
        // stay within the anti-amplification budget (RFC 9000 §8.1).
        await Task.Delay(TimeSpan.FromSeconds(3));
        long received = relay.ToServerCounters.BytesOut;
        long sent = relay.ToClientCounters.BytesIn;
        Report(relay);
        output.WriteLine($"before validation: server received {received:N0} B, sent {sent:N0} B: ratio {(double)sent / received:F2}");
        Assert.Equal(1, relay.ToServerCounters.DatagramsOut);
        Assert.True(sent > 0, "the server sent nothing");
        Assert.True(sent <= 3 * received, $"amplification: {sent} > 3 × {received}");

        // Let the client through: the handshake completes with the whole chain, so only the limit held it back.
        Volatile.Write(ref blocking, false);
        await using QuicConnection client = await connectTask.WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        Assert.NotNull(client.RemoteCertificate);
        Assert.True(relay.ToClientCounters.BytesIn > chainBytes);
    }

    /// <summary>Self-signed ECDSA certificates with long SAN lists (cheap to make, large on the wire).</summary>
    private static X509Certificate2Collection LargeChain(int count, int namesPerCertificate)
    {
        var chain = new X509Certificate2Collection();
        for (int i = 0; i < count; i++)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN=intermediate-{i}", key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            for (int n = 0; n < namesPerCertificate; n++)
            {
                san.AddDnsName($"host-{n:D4}.intermediate-{i}.example.test");
            }

            request.CertificateExtensions.Add(san.Build());
            chain.Add(request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30)));
        }

        return chain;
    }
}
