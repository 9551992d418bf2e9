using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using KestrelQuic.Diagnostics;
using KestrelQuic.Tests.Api;
using KestrelQuic.Tests.Simulation;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>qlog (JSON-SEQ) of a real loopback transfer through a proxy that drops a few datagrams.</summary>
public sealed class QlogTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-qlog-").FullName;

    public void Dispose()
    {
        // Connections closed at the end of a test still append their last records for a moment (closing period).
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                BackgroundFileWriter.Shared.DrainAsync().Wait(Timeout);
                Directory.Delete(_directory, recursive: true);
                return;
            }
            catch (IOException) when (attempt < 20)
            {
                Thread.Sleep(100);
            }
        }
    }

    [Fact]
    public async Task LossyTransfer_EveryRecordParses_AndEachEventKindIsPresentWithSaneContent()
    {
        const int PayloadSize = 300 * 1024;
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.QlogDirectory = _directory));
        await using var proxy = new DroppingProxy(listener.LocalEndPoint, dropServerToClient: n => n is >= 30 and < 34);
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(proxy.EndPoint, c => c.QlogDirectory = _directory)).AsTask().WaitAsync(Timeout))
        await using (QuicConnection server = await acceptTask.WaitAsync(Timeout))
        {
            Task echo = Task.Run(async () =>
            {
                await using QuicStream s = await server.AcceptInboundStreamAsync();
                await s.CopyToAsync(s);
                s.CompleteWrites();
            });
            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            Task write = Task.Run(async () => await stream.WriteAsync(SimulationHelpers.Payload(PayloadSize, 5), completeWrites: true));
            var received = new MemoryStream();
            await stream.CopyToAsync(received).WaitAsync(Timeout);
            await Task.WhenAll(write, echo).WaitAsync(Timeout);
            Assert.Equal(PayloadSize, received.Length);
            Assert.True(client.RequestKeyUpdate());
            await client.PingAsync().AsTask().WaitAsync(Timeout);
            await client.CloseAsync(0x11);
            await server.Closed.WaitAsync(Timeout);
        }

        Assert.True(proxy.Dropped > 0);
        string clientFile = await WaitForClosedTrace("_client.sqlog");
        string serverFile = await WaitForClosedTrace("_server.sqlog");
        Assert.Equal(Path.GetFileName(clientFile).Replace("_client", string.Empty), Path.GetFileName(serverFile).Replace("_server", string.Empty)); // same original DCID

        foreach ((string file, string role) in new[] { (clientFile, "client"), (serverFile, "server") })
        {
            List<JsonElement> records = ReadRecords(file);
            JsonElement header = records[0];
            Assert.Equal("urn:ietf:params:qlog:file:sequential", header.GetProperty("file_schema").GetString());
            Assert.Equal(role, header.GetProperty("trace").GetProperty("vantage_point").GetProperty("type").GetString());
            List<JsonElement> events = records.Skip(1).ToList();
            ILookup<string, JsonElement> byName = events.ToLookup(e => e.GetProperty("name").GetString()!);
            output.WriteLine($"{role}: {events.Count} events: " + string.Join(", ", byName.Select(g => $"{g.Key} {g.Count()}")));

            // Times are non-decreasing milliseconds.
            double[] times = events.Select(e => e.GetProperty("time").GetDouble()).ToArray();
            Assert.True(times.Zip(times.Skip(1)).All(p => p.Second >= p.First));
            Assert.InRange(times[0], 0, 1000);
            Assert.InRange(times[^1], times[0], 60_000);

            Assert.Single(byName["quic:connection_started"]);
            Assert.Contains(byName["quic:parameters_set"], e => Data(e).GetProperty("initiator").GetString() == "local" && Data(e).GetProperty("initial_max_data").GetInt64() > 0);
            Assert.Contains(byName["quic:parameters_set"], e => Data(e).GetProperty("initiator").GetString() == "remote" && Data(e).TryGetProperty("initial_source_connection_id", out _));

            foreach (string name in new[] { "quic:packet_sent", "quic:packet_received" })
            {
                List<JsonElement> packets = byName[name].ToList();
                Assert.All(packets, p => Assert.True(Data(p).GetProperty("header").GetProperty("packet_number").GetInt64() >= 0));
                Assert.Contains(packets, p => Data(p).GetProperty("header").GetProperty("packet_type").GetString() == "initial"
                    && Frames(p).Any(f => f.GetProperty("frame_type").GetString() == "crypto"));
                Assert.Contains(packets, p => Data(p).GetProperty("header").GetProperty("packet_type").GetString() == "handshake");
                Assert.Contains(packets, p => Frames(p).Any(f => f.GetProperty("frame_type").GetString() == "ack" && f.GetProperty("acked_ranges").GetArrayLength() > 0));
            }

            // All stream bytes of stream 0 in both directions appear as STREAM frames (sent and received, with retransmissions).
            long SumStream(string name) => byName[name].SelectMany(Frames).Where(f => f.GetProperty("frame_type").GetString() == "stream" && f.GetProperty("stream_id").GetInt64() == 0)
                .Sum(f => f.GetProperty("length").GetInt64());
            Assert.True(SumStream("quic:packet_sent") >= PayloadSize);
            Assert.True(SumStream("quic:packet_received") >= PayloadSize);
            Assert.Contains(byName[role == "client" ? "quic:packet_received" : "quic:packet_sent"], p => Frames(p).Any(f => f.GetProperty("frame_type").GetString() == "handshake_done"));

            Assert.Contains(byName["quic:recovery_metrics_updated"], e => Data(e).TryGetProperty("smoothed_rtt", out JsonElement rtt) && rtt.GetDouble() > 0 && rtt.GetDouble() < 1000);
            Assert.Contains(byName["quic:recovery_metrics_updated"], e => Data(e).TryGetProperty("congestion_window", out JsonElement cwnd) && cwnd.GetInt64() >= 2400);

            // bytes_in_flight follows sends and acknowledgements: it rises above a full packet and falls back as ACKs arrive.
            long[] inFlight = byName["quic:recovery_metrics_updated"].Where(e => Data(e).TryGetProperty("bytes_in_flight", out _))
                .Select(e => Data(e).GetProperty("bytes_in_flight").GetInt64()).ToArray();
            Assert.All(inFlight, b => Assert.True(b >= 0));
            Assert.Contains(inFlight, b => b >= 1200);
            int peak = Array.IndexOf(inFlight, inFlight.Max());
            Assert.Contains(inFlight.Skip(peak + 1), b => b < inFlight[peak]);
            Assert.Contains(byName["quic:key_updated"], e => Data(e).GetProperty("key_type").GetString() == "client_handshake_secret" && Data(e).GetProperty("trigger").GetString() == "tls");
            Assert.Contains(byName["quic:key_updated"], e => Data(e).GetProperty("key_type").GetString() == "server_initial_secret");
            Assert.Contains(byName["quic:key_updated"], e => Data(e).GetProperty("key_type").GetString() == "server_1rtt_secret"
                && Data(e).GetProperty("trigger").GetString() == (role == "client" ? "local_update" : "remote_update") && Data(e).GetProperty("key_phase").GetInt64() == 1);
            string[] states = byName["quic:connection_state_updated"].Select(e => Data(e).GetProperty("new").GetString()!).ToArray();
            Assert.Equal(["handshake_complete", "handshake_confirmed", role == "client" ? "closing" : "draining", "closed"], states.Take(2).Concat(states.TakeLast(2)));
            JsonElement closed = Data(Assert.Single(byName["quic:connection_closed"]));
            Assert.Equal(role == "client" ? "local" : "remote", closed.GetProperty("initiator").GetString());
            Assert.Equal(0x11, closed.GetProperty("error_code").GetInt32());
            Assert.Equal("application", closed.GetProperty("trigger").GetString());
        }

        // The proxy dropped server datagrams: the server declared packets lost and retransmitted.
        List<JsonElement> lost = ReadRecords(serverFile).Where(e => e.TryGetProperty("name", out JsonElement n) && n.GetString() == "quic:packet_lost").ToList();
        Assert.NotEmpty(lost);
        Assert.All(lost, e => Assert.Equal("1RTT", Data(e).GetProperty("header").GetProperty("packet_type").GetString()));
    }

    [Fact]
    public async Task Transfer_WithAndWithoutQlog_SameContent_FiguresInOutput()
    {
        const int PayloadSize = 8 * 1024 * 1024;
        byte[] payload = SimulationHelpers.Payload(PayloadSize, 9);
        foreach (bool qlog in new[] { false, true, false, true })
        {
            string? directory = qlog ? _directory : null;
            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.QlogDirectory = directory));
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.QlogDirectory = directory)).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            Task write = Task.Run(async () => await stream.WriteAsync(payload, completeWrites: true));
            await using QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            var received = new MemoryStream(PayloadSize);
            await inbound.CopyToAsync(received).WaitAsync(Timeout);
            await write.WaitAsync(Timeout);
            watch.Stop();
            Assert.True(payload.AsSpan().SequenceEqual(received.GetBuffer().AsSpan(0, (int)received.Length)));
            output.WriteLine($"qlog {(qlog ? "on " : "off")}: {PayloadSize / 1048576.0 / watch.Elapsed.TotalSeconds:F0} MB/s");
        }

        await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
        long bytes = Directory.GetFiles(_directory).Sum(f => new FileInfo(f).Length);
        output.WriteLine($"qlog output for 2 x 2 connections: {bytes / 1048576.0:F1} MB");
        Assert.Equal(4, Directory.GetFiles(_directory, "*.sqlog").Length);
    }

    [Fact]
    public async Task QlogTrace_NullWhenOff_ApplicationEventsInOrder_BrokenCallbacksWriteNothing()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection plain = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint)).AsTask().WaitAsync(Timeout))
        {
            Assert.Null(plain.QlogTrace);
            await using QuicConnection plainServer = await acceptTask.WaitAsync(Timeout);
            Assert.Null(plainServer.QlogTrace);
        }

        acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicQlogTrace trace;
        await using (QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.QlogDirectory = _directory)).AsTask().WaitAsync(Timeout))
        {
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
            trace = client.QlogTrace!;
            Assert.NotNull(trace);
            Assert.Same(trace, client.QlogTrace);
            trace.WriteEvent("app:request_started", ("GET", 7), static (w, s) =>
            {
                w.WriteString("method", s.Item1);
                w.WriteNumber("request_id", s.Item2);
                w.WriteStartArray("tags");
                w.WriteStringValue("a\"b");
                w.WriteEndArray();
            });
            Assert.Throws<FormatException>(() => trace.WriteEvent("app:throws", 0, static (w, _) =>
            {
                w.WriteString("half", "written");
                throw new FormatException("callback failed");
            }));
            Assert.Throws<InvalidOperationException>(() => trace.WriteEvent("app:unbalanced", 0, static (w, _) => w.WriteStartObject("open")));
            Assert.Throws<ArgumentException>(() => trace.WriteEvent(string.Empty, 0, static (_, _) => { }));
            await client.PingAsync().AsTask().WaitAsync(Timeout);
            trace.WriteEvent("app:request_done", 7, static (w, id) => w.WriteNumber("request_id", id));
            await client.CloseAsync(0);
        }

        string file = await WaitForClosedTrace("_client.sqlog");
        trace.WriteEvent("app:after_close", 0, static (w, _) => w.WriteNumber("x", 1)); // ignored: the connection is gone
        await BackgroundFileWriter.Shared.DrainAsync().WaitAsync(Timeout);
        List<JsonElement> records = ReadRecords(file);
        Assert.DoesNotContain("urn:ietf:params:qlog:events:http3-12", records[0].GetProperty("trace").GetProperty("event_schemas").EnumerateArray().Select(e => e.GetString()));
        List<string> names = records.Skip(1).Select(e => e.GetProperty("name").GetString()!).ToList();
        Assert.DoesNotContain("app:throws", names);
        Assert.DoesNotContain("app:unbalanced", names);
        Assert.DoesNotContain("app:after_close", names);
        int started = names.IndexOf("app:request_started"), done = names.IndexOf("app:request_done");
        Assert.True(started > names.IndexOf("quic:connection_started"));
        Assert.True(done > started);
        Assert.Contains("quic:packet_sent", names.Skip(started).Take(done - started)); // the PING went out between them
        JsonElement data = Data(records[started + 1]);
        Assert.Equal("GET", data.GetProperty("method").GetString());
        Assert.Equal(7, data.GetProperty("request_id").GetInt32());
        Assert.Equal("a\"b", data.GetProperty("tags")[0].GetString());
    }

    private static JsonElement Data(JsonElement e) => e.GetProperty("data");

    private static IEnumerable<JsonElement> Frames(JsonElement e) => Data(e).GetProperty("frames").EnumerateArray();

    /// <summary>RFC 7464: every record is RS, one JSON text, LF. Parses every one of them.</summary>
    private static List<JsonElement> ReadRecords(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal(0x1e, bytes[0]);
        var records = new List<JsonElement>();
        foreach (string text in System.Text.Encoding.UTF8.GetString(bytes).Split('\u001e').Skip(1))
        {
            Assert.EndsWith("\n", text);
            records.Add(JsonDocument.Parse(text).RootElement.Clone());
        }

        return records;
    }

    private async Task<string> WaitForClosedTrace(string suffix)
    {
        using var cts = new CancellationTokenSource(Timeout);
        while (true)
        {
            await BackgroundFileWriter.Shared.DrainAsync(cts.Token);
            string? file = Directory.GetFiles(_directory, "*" + suffix).SingleOrDefault();
            if (file is not null)
            {
                JsonElement last = ReadRecords(file)[^1];
                if (last.TryGetProperty("name", out JsonElement name) && name.GetString() == "quic:connection_state_updated" && Data(last).GetProperty("new").GetString() == "closed") return file;
            }

            await Task.Delay(50, cts.Token);
        }
    }

    /// <summary>A UDP relay on loopback for one client, dropping the server-to-client datagrams the predicate picks (by index).</summary>
    private sealed class DroppingProxy : IAsyncDisposable
    {
        private readonly UdpClient _front = new(new IPEndPoint(IPAddress.Loopback, 0));
        private readonly UdpClient _back = new(new IPEndPoint(IPAddress.Loopback, 0));
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _up;
        private readonly Task _down;
        private IPEndPoint? _client;
        private int _dropped;

        public DroppingProxy(IPEndPoint server, Func<int, bool> dropServerToClient)
        {
            _back.Connect(server);
            _up = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    UdpReceiveResult r = await _front.ReceiveAsync(_stop.Token);
                    _client = r.RemoteEndPoint;
                    await _back.SendAsync(r.Buffer, _stop.Token);
                }
            });
            _down = Task.Run(async () =>
            {
                for (int n = 0; !_stop.IsCancellationRequested; n++)
                {
                    UdpReceiveResult r = await _back.ReceiveAsync(_stop.Token);
                    if (dropServerToClient(n))
                    {
                        Interlocked.Increment(ref _dropped);
                        continue;
                    }

                    if (_client is not null) await _front.SendAsync(r.Buffer, _client, _stop.Token);
                }
            });
        }

        public IPEndPoint EndPoint => (IPEndPoint)_front.Client.LocalEndPoint!;

        public int Dropped => _dropped;

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            try
            {
                await Task.WhenAll(_up, _down);
            }
            catch (OperationCanceledException)
            {
            }

            _front.Dispose();
            _back.Dispose();
            _stop.Dispose();
        }
    }
}
