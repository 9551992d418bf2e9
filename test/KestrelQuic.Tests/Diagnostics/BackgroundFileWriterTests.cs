using System.Text.Json;
using KestrelQuic.Diagnostics;
using KestrelQuic.Packets;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>The background writer's memory bound: a stalled disk drops (and counts) qlog output, never blocks the connection.</summary>
public sealed class BackgroundFileWriterTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-slowdisk-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task StalledDisk_QueueStaysUnderItsCap_DropsAreCountedLoggedAndReportedInTheFile()
    {
        const long Cap = 256 * 1024;
        using var gate = new ManualResetEventSlim(false);
        int opened = 0;
        var writer = new BackgroundFileWriter(Cap, path =>
        {
            Interlocked.Increment(ref opened);
            return new GatedStream(new FileStream(path, FileMode.Append, FileAccess.Write), gate);
        });
        var log = new CapturingLoggerProvider();
        ILogger logger = log.CreateLogger(QuicLog.CategoryName);
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(QuicMetrics).TypeHandle); // the meter exists once any endpoint did
        using var recorder = new MetricsTests.MetricRecorder();
        long droppedMetricBefore = recorder.Observe("kestrelquic.trace.dropped", "kestrelquic.output", "qlog");
        string path = Path.Combine(_directory, "stalled_client.sqlog");
        var qlog = new QlogWriter(path, isServer: false, [1, 2, 3, 4, 5, 6, 7, 8], now: 0, logger, writer);
        byte[] payload = [0x01, .. new byte[40]]; // PING and padding
        byte[] dcid = [9, 9, 9, 9];
        long maxPending = 0;
        try
        {
            // The disk does not move: if an event waited for it, this would never finish.
            await Task.Run(() =>
            {
                for (int pn = 0; pn < 20_000; pn++)
                {
                    qlog.PacketSent(pn * 1000L, PacketType.OneRtt, pn, 1200, dcid, default, payload);
                    maxPending = Math.Max(maxPending, writer.PendingBytes);
                }
            }).WaitAsync(Timeout);

            output.WriteLine($"queued at most {maxPending:N0} bytes (cap {Cap:N0}), dropped {qlog.DroppedBytes:N0} bytes");
            Assert.InRange(maxPending, 1, Cap);
            Assert.True(qlog.DroppedBytes > 2 * Cap, $"dropped {qlog.DroppedBytes}");
            Assert.Equal(qlog.DroppedBytes, writer.DroppedBytes);
            Assert.True(recorder.Observe("kestrelquic.trace.dropped", "kestrelquic.output", "qlog") - droppedMetricBefore >= qlog.DroppedBytes);

            // One warning for the whole backlog, not one per dropped buffer.
            CapturingLoggerProvider.Entry warning = Assert.Single(log.Entries, e => e.EventId.Id == 12);
            Assert.Equal("TraceOutputDropped", warning.EventId.Name);
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Equal("qlog", warning["Output"]);
            Assert.Equal(path, warning["Path"]);
            Assert.Equal(Cap, warning["MaxPendingBytes"]);
        }
        finally
        {
            gate.Set();
        }

        qlog.Complete();
        await writer.DrainAsync().WaitAsync(Timeout);
        Assert.Equal(0, writer.PendingBytes);
        Assert.True(opened > 0);

        // What reached the file is whole records: the header first, then events, among them the drop reports.
        List<JsonElement> records = ReadRecords(path);
        Assert.Equal("urn:ietf:params:qlog:file:sequential", records[0].GetProperty("file_schema").GetString());
        List<JsonElement> warnings = records.Where(r => r.TryGetProperty("name", out JsonElement n) && n.GetString() == "loglevel:warning").ToList();
        Assert.NotEmpty(warnings);
        long[] reported = warnings.Select(w => w.GetProperty("data").GetProperty("dropped_bytes").GetInt64()).ToArray();
        Assert.True(reported.Zip(reported.Skip(1)).All(p => p.Second > p.First)); // running totals
        Assert.InRange(reported[^1], 1, qlog.DroppedBytes);
        int packets = records.Count(r => r.TryGetProperty("name", out JsonElement n) && n.GetString() == "quic:packet_sent");
        Assert.InRange(packets, 1, 19_999);
        output.WriteLine($"{packets} of 20000 packet_sent records written, {warnings.Count} drop reports");
    }

    [Fact]
    public async Task FlowingDisk_NothingDropped_NoWarning()
    {
        var writer = new BackgroundFileWriter(BackgroundFileWriter.DefaultMaxPendingBytes);
        var log = new CapturingLoggerProvider();
        string path = Path.Combine(_directory, "flowing_client.sqlog");
        var qlog = new QlogWriter(path, isServer: false, [1, 2, 3, 4], now: 0, log.CreateLogger(QuicLog.CategoryName), writer);
        for (int pn = 0; pn < 2000; pn++) qlog.PacketSent(pn * 1000L, PacketType.OneRtt, pn, 1200, [9, 9], default, [0x01]);
        qlog.Complete();
        await writer.DrainAsync().WaitAsync(Timeout);
        Assert.Equal(0, qlog.DroppedBytes);
        Assert.Equal(2001, ReadRecords(path).Count);
        Assert.DoesNotContain(log.Entries, e => e.EventId.Id == 12);
    }

    internal static List<JsonElement> ReadRecords(string path)
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

    /// <summary>A file whose writes wait for a gate: a disk that has stopped.</summary>
    private sealed class GatedStream(Stream inner, ManualResetEventSlim gate) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override void Write(byte[] buffer, int offset, int count)
        {
            gate.Wait();
            inner.Write(buffer, offset, count);
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
