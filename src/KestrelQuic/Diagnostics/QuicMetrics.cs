using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// The "KestrelQuic" <see cref="Meter"/>. Per-connection figures are recorded once per connection (created,
/// handshake done, removed); traffic counters are observable instruments that sum the statistics the cores already
/// keep when a listener collects them, so nothing is recorded per packet. Names follow the style of OpenTelemetry's
/// kestrel.* conventions (README "Observability" lists them).
/// </summary>
internal static class QuicMetrics
{
    public const string MeterName = "KestrelQuic";
    public const string RoleTag = "kestrelquic.role";
    public const string ErrorTypeTag = "error.type";
    public const string DirectionTag = "network.io.direction";
    public const string ReasonTag = "kestrelquic.drop_reason";
    public const string OutputTag = "kestrelquic.output";

    private static readonly Meter s_meter = new(MeterName, typeof(QuicMetrics).Assembly.GetName().Version?.ToString());
    private static readonly Lock s_lock = new();
    private static readonly List<IQuicMetricsSource> s_sources = new();
    private static MetricsTotals s_retired; // sources that were disposed

    public static readonly UpDownCounter<long> ActiveConnections = s_meter.CreateUpDownCounter<long>(
        "kestrelquic.active_connections", "{connection}", "Connections currently open (handshaking or established).");

    public static readonly Counter<long> Connections = s_meter.CreateCounter<long>(
        "kestrelquic.connections", "{connection}", "Connections created (client connects and accepted client Initials).");

    public static readonly Histogram<double> ConnectionDuration = s_meter.CreateHistogram(
        "kestrelquic.connection.duration", "s", "Time from creation to removal of a connection.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600] });

    public static readonly Histogram<double> HandshakeDuration = s_meter.CreateHistogram(
        "kestrelquic.handshake.duration", "s", "Time from creation to handshake completion.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });

    public static readonly Counter<long> HandshakeFailures = s_meter.CreateCounter<long>(
        "kestrelquic.handshake.failures", "{connection}", "Connections that ended before their handshake completed, by error.type.");

    public static readonly Histogram<double> SmoothedRtt = s_meter.CreateHistogram(
        "kestrelquic.connection.rtt", "s", "Smoothed RTT of a connection when it is removed (connections with an RTT sample).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });

    public static readonly Histogram<long> CongestionWindow = s_meter.CreateHistogram<long>(
        "kestrelquic.connection.congestion_window", "By", "Congestion window of a connection when it is removed.");

    static QuicMetrics()
    {
        s_meter.CreateObservableCounter("kestrelquic.packets", () => Directional(static t => t.PacketsSent, static t => t.PacketsReceived), "{packet}", "QUIC packets sent and received, by network.io.direction.");
        s_meter.CreateObservableCounter("kestrelquic.bytes", () => Directional(static t => t.BytesSent, static t => t.BytesReceived), "By", "UDP payload bytes sent and received by connections, by network.io.direction.");
        s_meter.CreateObservableCounter("kestrelquic.packets.lost", () => Collect().PacketsLost, "{packet}", "Packets declared lost (RFC 9002 §6.1).");
        s_meter.CreateObservableCounter("kestrelquic.retransmissions", () => Collect().FramesRetransmitted, "{frame}", "CRYPTO and STREAM frames queued again after loss.");
        s_meter.CreateObservableCounter("kestrelquic.streams.opened", () => Collect().StreamsOpened, "{stream}", "Streams opened by either side.");
        s_meter.CreateObservableCounter("kestrelquic.retries_sent", () => Collect().RetrySent, "{packet}", "Retry packets sent by servers.");
        s_meter.CreateObservableCounter("kestrelquic.stateless_resets_sent", () => Collect().StatelessResetsSent, "{packet}", "Stateless resets sent.");
        s_meter.CreateObservableCounter("kestrelquic.datagrams.dropped", DroppedDatagrams, "{datagram}", "Datagrams dropped before reaching a connection, by kestrelquic.drop_reason.");
        s_meter.CreateObservableCounter("kestrelquic.tokens.rejected", () => Collect().InvalidTokens, "{token}", "Retry and NEW_TOKEN tokens that failed validation (forged, altered, expired, another address or kind).");
        s_meter.CreateObservableCounter("kestrelquic.trace.dropped", TraceDropped, "By", "qlog and secrets log bytes dropped because the disk was slower than the connections, by kestrelquic.output (qlog, secrets_log).");
        s_meter.CreateObservableCounter("kestrelquic.early_data.rejected", EarlyDataRejected, "{connection}", "0-RTT refused by the anti-replay register, by kestrelquic.drop_reason (replay, register_full).");
    }

    /// <summary>Whether anything listens to the per-connection instruments (spares the work when nobody does).</summary>
    public static bool ConnectionInstrumentsEnabled => ActiveConnections.Enabled || Connections.Enabled || ConnectionDuration.Enabled || HandshakeDuration.Enabled
        || HandshakeFailures.Enabled || SmoothedRtt.Enabled || CongestionWindow.Enabled;

    public static void Register(IQuicMetricsSource source)
    {
        lock (s_lock) s_sources.Add(source);
    }

    /// <summary>Folds a disposed endpoint's totals into the process totals (its connections are all gone).</summary>
    public static void Unregister(IQuicMetricsSource source)
    {
        lock (s_lock)
        {
            if (!s_sources.Remove(source)) return;
            s_retired.Add(source.Snapshot());
        }
    }

    public static KeyValuePair<string, object?> RoleTagFor(bool isServer) => new(RoleTag, isServer ? "server" : "client");

    public static void OnConnectionCreated(bool isServer)
    {
        KeyValuePair<string, object?> role = RoleTagFor(isServer);
        ActiveConnections.Add(1, role);
        Connections.Add(1, role);
    }

    public static void OnHandshakeCompleted(bool isServer, long elapsedTicks)
    {
        if (HandshakeDuration.Enabled) HandshakeDuration.Record(TimeSpan.FromTicks(elapsedTicks).TotalSeconds, RoleTagFor(isServer));
    }

    public static void OnConnectionRemoved(QuicConnectionCore core, bool handshakeCompleted, long elapsedTicks)
    {
        KeyValuePair<string, object?> role = RoleTagFor(core.IsServer);
        ActiveConnections.Add(-1, role);
        if (!ConnectionInstrumentsEnabled) return;
        ConnectionDuration.Record(TimeSpan.FromTicks(elapsedTicks).TotalSeconds, role);
        if (!handshakeCompleted) HandshakeFailures.Add(1, role, new KeyValuePair<string, object?>(ErrorTypeTag, ErrorType(core.CloseReason)));
        if (core.Rtt.HasSample) SmoothedRtt.Record(TimeSpan.FromTicks(core.Rtt.SmoothedRtt).TotalSeconds, role);
        CongestionWindow.Record(core.Congestion.CongestionWindow, role);
    }

    /// <summary>A low-cardinality error.type for a close: snake_case transport error names, crypto_error.&lt;alert&gt; for TLS alerts.</summary>
    public static string ErrorType(QuicCloseReason? reason)
    {
        if (reason is null) return "aborted";
        if (reason.IdleTimeout || reason.HandshakeTimeout) return "timeout";
        if (reason.StatelessReset) return "stateless_reset";
        if (reason.IsApplicationError) return "application_error";
        if (reason.ErrorCode is >= 0x100 and <= 0x1ff) return "crypto_error." + SnakeCase(((TlsAlert)(byte)(reason.ErrorCode - 0x100)).ToString());
        return Enum.IsDefined((TransportErrorCode)reason.ErrorCode) ? SnakeCase(((TransportErrorCode)reason.ErrorCode).ToString()) : "transport_error";
    }

    internal static string SnakeCase(string name)
    {
        var sb = new StringBuilder(name.Length + 8);
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (char.IsUpper(c))
            {
                if (i > 0) sb.Append('_');
                sb.Append(char.ToLowerInvariant(c));
            }
            else
            {
                sb.Append(c);
            }
        }

        return sb.ToString();
    }

    internal static MetricsTotals Collect()
    {
        lock (s_lock)
        {
            MetricsTotals totals = s_retired;
            foreach (IQuicMetricsSource source in s_sources) totals.Add(source.Snapshot());
            return totals;
        }
    }

    private static IEnumerable<Measurement<long>> Directional(Func<MetricsTotals, long> sent, Func<MetricsTotals, long> received)
    {
        MetricsTotals t = Collect();
        return
        [
            new Measurement<long>(sent(t), new KeyValuePair<string, object?>(DirectionTag, "transmit")),
            new Measurement<long>(received(t), new KeyValuePair<string, object?>(DirectionTag, "receive")),
        ];
    }

    private static IEnumerable<Measurement<long>> TraceDropped() =>
    [
        new Measurement<long>(BackgroundFileWriter.TotalDroppedQlogBytes, new KeyValuePair<string, object?>(OutputTag, "qlog")),
        new Measurement<long>(BackgroundFileWriter.TotalDroppedSecretsBytes, new KeyValuePair<string, object?>(OutputTag, "secrets_log")),
    ];

    private static IEnumerable<Measurement<long>> EarlyDataRejected()
    {
        MetricsTotals t = Collect();
        return
        [
            new Measurement<long>(t.EarlyDataReplays, new KeyValuePair<string, object?>(ReasonTag, "replay")),
            new Measurement<long>(t.EarlyDataRegisterFull, new KeyValuePair<string, object?>(ReasonTag, "register_full")),
        ];
    }

    private static IEnumerable<Measurement<long>> DroppedDatagrams()
    {
        MetricsTotals t = Collect();
        return
        [
            new Measurement<long>(t.DroppedMalformed, new KeyValuePair<string, object?>(ReasonTag, "malformed")),
            new Measurement<long>(t.DroppedTooShort, new KeyValuePair<string, object?>(ReasonTag, "too_short")),
            new Measurement<long>(t.DroppedNoConnection, new KeyValuePair<string, object?>(ReasonTag, "unknown_connection")),
            new Measurement<long>(t.DroppedUnsupportedVersion, new KeyValuePair<string, object?>(ReasonTag, "unsupported_version")),
            new Measurement<long>(t.DroppedResponseQueueFull, new KeyValuePair<string, object?>(ReasonTag, "response_queue_full")),
            new Measurement<long>(t.ConnectionsRefused, new KeyValuePair<string, object?>(ReasonTag, "connection_refused")),
        ];
    }
}

/// <summary>Summed counters of connections and endpoints.</summary>
internal struct MetricsTotals
{
    public long PacketsSent;
    public long PacketsReceived;
    public long BytesSent;
    public long BytesReceived;
    public long PacketsLost;
    public long FramesRetransmitted;
    public long StreamsOpened;
    public long RetrySent;
    public long StatelessResetsSent;
    public long DroppedMalformed;
    public long DroppedTooShort;
    public long DroppedNoConnection;
    public long DroppedUnsupportedVersion;
    public long DroppedResponseQueueFull;
    public long ConnectionsRefused;
    public long InvalidTokens;
    public long EarlyDataReplays;
    public long EarlyDataRegisterFull;

    public void Add(in MetricsTotals o)
    {
        InvalidTokens += o.InvalidTokens;
        EarlyDataReplays += o.EarlyDataReplays;
        EarlyDataRegisterFull += o.EarlyDataRegisterFull;
        PacketsSent += o.PacketsSent;
        PacketsReceived += o.PacketsReceived;
        BytesSent += o.BytesSent;
        BytesReceived += o.BytesReceived;
        PacketsLost += o.PacketsLost;
        FramesRetransmitted += o.FramesRetransmitted;
        StreamsOpened += o.StreamsOpened;
        RetrySent += o.RetrySent;
        StatelessResetsSent += o.StatelessResetsSent;
        DroppedMalformed += o.DroppedMalformed;
        DroppedTooShort += o.DroppedTooShort;
        DroppedNoConnection += o.DroppedNoConnection;
        DroppedUnsupportedVersion += o.DroppedUnsupportedVersion;
        DroppedResponseQueueFull += o.DroppedResponseQueueFull;
        ConnectionsRefused += o.ConnectionsRefused;
    }

    public void Add(ConnectionStatistics s)
    {
        PacketsSent += s.PacketsSent;
        PacketsReceived += s.PacketsReceived;
        BytesSent += s.BytesSent;
        BytesReceived += s.BytesReceived;
        PacketsLost += s.PacketsLost;
        FramesRetransmitted += s.FramesRetransmitted;
        StreamsOpened += s.StreamsOpened;
    }

    public void Add(EndpointStatistics s)
    {
        InvalidTokens += s.InvalidTokens;
        RetrySent += s.RetrySent;
        StatelessResetsSent += s.StatelessResetsSent;
        DroppedMalformed += s.DroppedMalformed;
        DroppedTooShort += s.DroppedTooShort;
        DroppedNoConnection += s.DroppedNoConnection;
        DroppedUnsupportedVersion += s.DroppedUnsupportedVersion;
        DroppedResponseQueueFull += s.DroppedResponseQueueFull;
        ConnectionsRefused += s.ConnectionsRefused;
    }
}

/// <summary>An endpoint whose counters the observable instruments sum (it locks itself while summing).</summary>
internal interface IQuicMetricsSource
{
    /// <summary>Totals of the endpoint: its live connections, the connections it removed, and its own counters.</summary>
    MetricsTotals Snapshot();
}
