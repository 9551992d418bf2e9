using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using KestrelQuic.Diagnostics;
using KestrelQuic.Tests.Api;
using KestrelQuic.Tests.Simulation;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>
/// The "KestrelQuic" meter over real loopback connections. The meter is process-wide, so these run in the serial
/// collection: connections of tests running in parallel would move the counters checked here.
/// </summary>
[Collection(KestrelQuic.Tests.Api.SerialLoopbackCollection.Name)]
public sealed class MetricsTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task LoopbackTransfer_RecordsConnectionHandshakeTrafficAndCloseInstruments()
    {
        using var recorder = new MetricRecorder();
        long packetsBefore = recorder.Observe("kestrelquic.packets", "network.io.direction", "transmit");
        long packetsReceivedBefore = recorder.Observe("kestrelquic.packets", "network.io.direction", "receive");
        long bytesSentBefore = recorder.Observe("kestrelquic.bytes", "network.io.direction", "transmit");
        long bytesReceivedBefore = recorder.Observe("kestrelquic.bytes", "network.io.direction", "receive");
        long streamsBefore = recorder.Observe("kestrelquic.streams.opened");

        const int PayloadSize = 256 * 1024;
        await using (QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions()))
        {
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            Assert.True(recorder.Sum("kestrelquic.active_connections", "kestrelquic.role", "server") >= 1);
            Assert.True(recorder.Sum("kestrelquic.active_connections", "kestrelquic.role", "client") >= 1);

            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            await stream.WriteAsync(SimulationHelpers.Payload(PayloadSize, 3), completeWrites: true);
            await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var sink = new MemoryStream();
            await inbound.CopyToAsync(sink).WaitAsync(Timeout);
            Assert.Equal(PayloadSize, sink.Length);

            // While open: the observable counters include live connections.
            Assert.True(recorder.Observe("kestrelquic.bytes", "network.io.direction", "receive") - bytesReceivedBefore >= PayloadSize);
            Assert.True(recorder.Observe("kestrelquic.streams.opened") - streamsBefore >= 2); // one on each side
            await client.CloseAsync(0);
            await server.Closed.WaitAsync(Timeout);
        }

        // Removal happens after the closing/draining period: wait for both close records.
        await recorder.WaitUntil(r => r.Records("kestrelquic.connection.duration").Count(m => m.Tag("kestrelquic.role") is "client") >= 1
            && r.Records("kestrelquic.connection.duration").Count(m => m.Tag("kestrelquic.role") is "server") >= 1, Timeout);

        Assert.Contains(recorder.Records("kestrelquic.connections"), m => m.Tag("kestrelquic.role") is "server");
        Assert.Contains(recorder.Records("kestrelquic.connections"), m => m.Tag("kestrelquic.role") is "client");
        List<Rec> handshakes = recorder.Records("kestrelquic.handshake.duration");
        Assert.Contains(handshakes, m => m.Tag("kestrelquic.role") is "client" && m.Value > 0 && m.Value < 20);
        Assert.Contains(handshakes, m => m.Tag("kestrelquic.role") is "server" && m.Value > 0 && m.Value < 20);
        Assert.Contains(recorder.Records("kestrelquic.connection.rtt"), m => m.Value > 0 && m.Value < 1);
        Assert.Contains(recorder.Records("kestrelquic.connection.congestion_window"), m => m.Value >= 2 * 1200);
        Assert.Contains(recorder.Records("kestrelquic.active_connections"), m => m.Value == -1 && m.Tag("kestrelquic.role") is "client");

        // After removal the totals still include the closed connections (monotonic counters).
        long packetsAfter = recorder.Observe("kestrelquic.packets", "network.io.direction", "transmit");
        long packetsReceived = recorder.Observe("kestrelquic.packets", "network.io.direction", "receive") - packetsReceivedBefore;
        // Path MTU discovery may grow datagrams well beyond 1200 bytes: count bytes exactly, packets loosely.
        Assert.True(packetsAfter - packetsBefore >= PayloadSize / 16384, $"packets sent grew by {packetsAfter - packetsBefore}");
        Assert.True(packetsReceived >= PayloadSize / 16384, $"packets received grew by {packetsReceived}");
        // Both ends are in this process and the collection runs alone: what one sent the other received (loopback loses
        // next to nothing; a packet counted as sent may still be in flight when the last one closed).
        Assert.InRange(packetsReceived, (packetsAfter - packetsBefore) * 9 / 10, packetsAfter - packetsBefore);
        Assert.True(recorder.Observe("kestrelquic.bytes", "network.io.direction", "transmit") - bytesSentBefore >= PayloadSize);
        Assert.True(recorder.Observe("kestrelquic.bytes", "network.io.direction", "receive") - bytesReceivedBefore >= PayloadSize);
        output.WriteLine($"packets sent +{packetsAfter - packetsBefore}, received +{packetsReceived}; handshakes {string.Join(", ", handshakes.Select(h => $"{h.Tag("kestrelquic.role")} {h.Value * 1000:F2} ms"))}");
    }

    [Fact]
    public async Task RetryAndFailedHandshake_CountRetriesAndFailuresByErrorType()
    {
        using var recorder = new MetricRecorder();
        long retriesBefore = recorder.Observe("kestrelquic.retries_sent");
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.Retry = KestrelQuic.Configuration.RetryMode.Always));

        // The client does not trust the name: it aborts the handshake with a TLS alert (CRYPTO_ERROR 0x1xx).
        await Assert.ThrowsAsync<QuicException>(async () =>
            await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.ServerName = "not-localhost.example")).AsTask().WaitAsync(Timeout));

        Assert.True(recorder.Observe("kestrelquic.retries_sent") - retriesBefore >= 1);
        await recorder.WaitUntil(r => r.Records("kestrelquic.handshake.failures").Any(m => m.Tag("kestrelquic.role") is "client"), Timeout);
        Rec failure = recorder.Records("kestrelquic.handshake.failures").First(m => m.Tag("kestrelquic.role") is "client");
        output.WriteLine($"error.type = {failure.Tag("error.type")}");
        Assert.StartsWith("crypto_error.", (string)failure.Tag("error.type")!);
        Assert.Equal(1, failure.Value);
    }

    [Fact]
    public async Task UnknownShortHeaderPacket_CountsDropAndStatelessReset()
    {
        using var recorder = new MetricRecorder();
        long resetsBefore = recorder.Observe("kestrelquic.stateless_resets_sent");
        long droppedBefore = recorder.Observe("kestrelquic.datagrams.dropped", "kestrelquic.drop_reason", "unknown_connection");
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        using var udp = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        byte[] packet = System.Security.Cryptography.RandomNumberGenerator.GetBytes(60);
        packet[0] = 0x40; // short header, fixed bit: a 1-RTT packet for a connection the server does not know
        await udp.SendAsync(packet, listener.LocalEndPoint);

        System.Net.Sockets.UdpReceiveResult reset = await udp.ReceiveAsync().WaitAsync(Timeout);
        Assert.InRange(reset.Buffer.Length, 21, packet.Length - 1); // RFC 9000 §10.3: smaller than the trigger
        Assert.True(recorder.Observe("kestrelquic.stateless_resets_sent") - resetsBefore >= 1);
        Assert.True(recorder.Observe("kestrelquic.datagrams.dropped", "kestrelquic.drop_reason", "unknown_connection") - droppedBefore >= 1);
    }

    [Fact]
    public void ErrorType_NamesTransportErrorsAndAlerts()
    {
        Assert.Equal("flow_control_error", QuicMetrics.ErrorType(new QuicCloseReason { ErrorCode = 0x03 }));
        Assert.Equal("crypto_error.bad_certificate", QuicMetrics.ErrorType(new QuicCloseReason { ErrorCode = 0x12a }));
        Assert.Equal("timeout", QuicMetrics.ErrorType(new QuicCloseReason { IdleTimeout = true }));
        Assert.Equal("timeout", QuicMetrics.ErrorType(new QuicCloseReason { IsApplicationError = true, Reason = "handshake timeout", HandshakeTimeout = true }));
        Assert.Equal("application_error", QuicMetrics.ErrorType(new QuicCloseReason { ErrorCode = 7, IsApplicationError = true }));
        Assert.Equal("aborted", QuicMetrics.ErrorType(null));
    }

    [Fact]
    public async Task LossyTransfer_CountsLostPacketsAndRetransmissions()
    {
        using var recorder = new MetricRecorder();
        long lostBefore = recorder.Observe("kestrelquic.packets.lost");
        long retransmissionsBefore = recorder.Observe("kestrelquic.retransmissions");

        const int PayloadSize = 512 * 1024;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new KestrelQuic.Testing.UdpRelay(listener.LocalEndPoint, seed: 77);
        relay.ToServer.LossRate = 0.1; // the client's data packets: the client detects the losses and resends
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(relay.LocalEndPoint)).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
        byte[] payload = SimulationHelpers.Payload(PayloadSize, 11);
        Task write = Task.Run(async () => await stream.WriteAsync(payload, completeWrites: true));
        await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
        var sink = new MemoryStream();
        await inbound.CopyToAsync(sink).WaitAsync(Timeout);
        await write.WaitAsync(Timeout);
        Assert.Equal(payload, sink.ToArray());

        // Observable counters include the live connections: read them while both are open (process-wide counters,
        // so only lower bounds: other tests may lose packets at the same time).
        long lost = recorder.Observe("kestrelquic.packets.lost") - lostBefore;
        long retransmissions = recorder.Observe("kestrelquic.retransmissions") - retransmissionsBefore;
        output.WriteLine($"relay client → server: {relay.ToServerCounters}; packets lost +{lost}, frames retransmitted +{retransmissions}");
        Assert.True(lost > 0, $"packets lost grew by {lost}");
        Assert.True(retransmissions > 0, $"retransmissions grew by {retransmissions}");
        await client.CloseAsync(0);
    }

    [Fact]
    public async Task HandshakeTimeout_CountsAFailureWithErrorTypeTimeout()
    {
        using var recorder = new MetricRecorder();
        using var silent = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)); // never answers
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions((System.Net.IPEndPoint)silent.Client.LocalEndPoint!);
        options.HandshakeTimeout = TimeSpan.FromMilliseconds(300);
        await Assert.ThrowsAsync<QuicException>(async () => await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout));

        // Connections of earlier tests may still be removed now (their failures count too): look for ours by its type.
        await recorder.WaitUntil(r => r.Records("kestrelquic.handshake.failures").Any(m => m.Tag("kestrelquic.role") is "client" && m.Tag("error.type") is "timeout"), Timeout);
        Assert.Contains(recorder.Records("kestrelquic.handshake.failures"), m => m.Tag("kestrelquic.role") is "client" && m.Tag("error.type") is "timeout" && m.Value == 1);
    }

    [Fact]
    public async Task ReplayedZeroRttFlight_CountedAsEarlyDataRejectedReplay()
    {
        using var recorder = new MetricRecorder();
        long replaysBefore = recorder.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "replay");
        long fullBefore = recorder.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "register_full");
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.EnableEarlyData = true));
        var store = new TicketWitnessStore();
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.EnableEarlyData = true);
        clientOptions.SessionStore = store;

        // A first connection leaves a session ticket that allows 0-RTT.
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection first = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout))
        {
            await using QuicConnection firstServer = await acceptTask.WaitAsync(Timeout);
            await first.PingAsync().AsTask().WaitAsync(Timeout);
            await store.TicketStored.Task.WaitAsync(Timeout);
        }

        // The resumed connection sends its request in 0-RTT through a relay that records its datagrams.
        await using var relay = new KestrelQuic.Tests.Api.UdpRelay(listener.LocalEndPoint) { RecordClientDatagrams = true };
        // Tickets are stored per server name and port: the relay is another port.
        byte[] ticket = store.TakeSessionTicket($"{SimulationHelpers.ClientConfig().ServerName}:{listener.LocalEndPoint.Port}")!;
        Assert.NotNull(ticket);
        store.StoreSessionTicket($"{SimulationHelpers.ClientConfig().ServerName}:{relay.EndPoint.Port}", ticket);
        QuicClientConnectionOptions resumed = LoopbackTests.ClientOptions(relay.EndPoint, c => c.EnableEarlyData = true);
        resumed.SessionStore = store;
        resumed.ConnectWithEarlyData = true;
        acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection second = await QuicConnection.ConnectAsync(resumed).AsTask().WaitAsync(Timeout))
        {
            await using QuicStream stream = await second.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            await stream.WriteAsync("POST /order"u8.ToArray(), completeWrites: true);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            await second.HandshakeCompleted.WaitAsync(Timeout);
            Assert.True(second.IsEarlyDataAccepted);
            relay.RecordClientDatagrams = false;
            await second.CloseAsync(0);
            await server.Closed.WaitAsync(Timeout);
        }

        // Once the server forgot the connection, an attacker replays the first flight from another address.
        using (var cts = new CancellationTokenSource(Timeout))
        {
            while (true)
            {
                lock (listener.Endpoint.Lock)
                {
                    if (listener.Endpoint.Core.ConnectionCount == 0) break;
                }

                await Task.Delay(20, cts.Token);
            }
        }

        Assert.Equal(0, recorder.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "replay") - replaysBefore);
        using var attacker = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        byte[][] flight = relay.Recorded.ToArray();
        Assert.NotEmpty(flight);
        foreach (byte[] datagram in flight) await attacker.SendAsync(datagram, listener.LocalEndPoint);

        await recorder.WaitUntil(r => r.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "replay") - replaysBefore >= 1, Timeout);
        Assert.Equal(1, recorder.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "replay") - replaysBefore);
        Assert.Equal(0, recorder.Observe("kestrelquic.early_data.rejected", "kestrelquic.drop_reason", "register_full") - fullBefore);
        output.WriteLine($"replayed {flight.Length} datagrams of the 0-RTT flight");
    }

    /// <summary>Says when a session ticket arrived (the ticket event may fire before a handler is attached).</summary>
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

    internal readonly record struct Rec(string Instrument, double Value, KeyValuePair<string, object?>[] Tags)
    {
        public object? Tag(string key) => Tags.FirstOrDefault(t => t.Key == key).Value;
    }

    /// <summary>Listens to every KestrelQuic instrument; observable ones are read on demand.</summary>
    internal sealed class MetricRecorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly ConcurrentQueue<Rec> _records = new();
        private readonly ConcurrentDictionary<string, Instrument> _instruments = new();
        private readonly List<Rec> _observed = new();

        public MetricRecorder()
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name != QuicMetrics.MeterName) return;
                _instruments[instrument.Name] = instrument;
                l.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => OnMeasurement(i, v, tags));
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => OnMeasurement(i, v, tags));
            _listener.Start();
        }

        public bool HasInstrument(string name) => _instruments.ContainsKey(name);

        public List<Rec> Records(string name) => _records.Where(r => r.Instrument == name).ToList();

        public long Sum(string name, string tag, string value) => (long)Records(name).Where(r => Equals(r.Tag(tag), value)).Sum(r => r.Value);

        /// <summary>Reads the current value of an observable counter (optionally one tagged measurement).</summary>
        public long Observe(string name, string? tag = null, string? value = null)
        {
            lock (_observed)
            {
                _observed.Clear();
                _listener.RecordObservableInstruments();
                return (long)_observed.Where(r => r.Instrument == name && (tag is null || Equals(r.Tag(tag), value))).Sum(r => r.Value);
            }
        }

        public async Task WaitUntil(Func<MetricRecorder, bool> condition, TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            while (!condition(this))
            {
                await Task.Delay(20, cts.Token);
            }
        }

        public void Dispose() => _listener.Dispose();

        private void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var rec = new Rec(instrument.Name, value, tags.ToArray());
            if (instrument.IsObservable)
            {
                lock (_observed) _observed.Add(rec);
            }
            else
            {
                _records.Enqueue(rec);
            }
        }
    }
}
