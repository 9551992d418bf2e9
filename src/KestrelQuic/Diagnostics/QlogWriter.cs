using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using KestrelQuic.Connection;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Tls;
using KestrelQuic.Wire;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// Writes one connection's qlog as JSON-SEQ (RFC 7464: each record is RS, a JSON text, LF) following
/// draft-ietf-quic-qlog-main-schema (file schema "sequential") and draft-ietf-quic-qlog-quic-events. Records are
/// serialized with <see cref="Utf8JsonWriter"/> into pooled buffers, which <see cref="BackgroundFileWriter"/> appends
/// to the file off the endpoint's thread. Called under the endpoint lock (never concurrently).
/// </summary>
internal sealed class QlogWriter : IQlogSink
{
    public const string EventSchema = "urn:ietf:params:qlog:events:quic-12";

    /// <summary>The main schema's loglevel namespace (draft 13): loglevel:warning reports dropped output.</summary>
    public const string LogLevelEventSchema = "urn:ietf:params:qlog:events:loglevel-13";

    /// <summary>draft-ietf-quic-qlog-h3-events (draft 12): listed when the connection offers HTTP/3 (events from <see cref="QuicQlogTrace"/>).</summary>
    public const string Http3EventSchema = "urn:ietf:params:qlog:events:http3-12";
    private const int FlushThreshold = 32 * 1024;
    private const byte RecordSeparator = 0x1e;

    private readonly string _path;
    private readonly ILogger? _logger;
    private readonly BackgroundFileWriter _writer;
    private readonly bool _isServer;
    private readonly PooledBuffer _buffer = new();
    private readonly Utf8JsonWriter _json;
    private readonly long _start;
    private long _last;
    private int _localAckDelayExponent = 3;
    private int _peerAckDelayExponent = 3;
    private long _lastMinRtt = -1, _lastSmoothedRtt = -1, _lastLatestRtt = -1, _lastRttVariance = -1, _lastCwnd = -1, _lastInFlight = -1, _lastSsthresh = -1;
    private int _lastPtoCount = -1;
    private bool _completed;
    private bool _headerWritten;
    private long _droppedBytes;
    private readonly string _odcid;
    private readonly bool _http3;

    public QlogWriter(string path, bool isServer, ReadOnlySpan<byte> originalDestinationConnectionId, long now, ILogger? logger, BackgroundFileWriter? writer = null, bool http3 = false)
    {
        _http3 = http3;
        _path = path;
        _writer = writer ?? BackgroundFileWriter.Shared;
        _odcid = Convert.ToHexStringLower(originalDestinationConnectionId);
        _start = now;
        _last = now;
        _isServer = isServer;
        _logger = logger;
        _json = new Utf8JsonWriter(_buffer, new JsonWriterOptions { SkipValidation = true });
        WriteHeader();
    }

    /// <summary>The file name for a connection: original destination connection ID in hex, then the role.</summary>
    public static string FileName(ReadOnlySpan<byte> originalDestinationConnectionId, bool isServer)
        => Convert.ToHexStringLower(originalDestinationConnectionId) + (isServer ? "_server" : "_client") + ".sqlog";

    public string FilePath => _path;

    /// <summary>Bytes of this trace dropped because the background writer's queue was full (a slow disk).</summary>
    public long DroppedBytes => _droppedBytes;

    public void ConnectionStarted(long now, EndPoint? remote, uint version)
    {
        if (_completed) return;
        Begin(now, "quic:connection_started");
        _json.WriteStartObject("local");
        _json.WriteEndObject();
        _json.WriteStartObject("remote");
        if (remote is IPEndPoint ip)
        {
            bool v4 = ip.Address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork || ip.Address.IsIPv4MappedToIPv6;
            _json.WriteString(v4 ? "ip_v4" : "ip_v6", (ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address).ToString());
            _json.WriteNumber(v4 ? "port_v4" : "port_v6", ip.Port);
        }

        _json.WriteEndObject();
        End();
        Begin(now, "quic:version_information");
        _json.WriteString("chosen_version", Hex32(version));
        End();
    }

    public void ParametersSet(long now, bool local, TransportParameters p, string? tlsCipher)
    {
        if (_completed) return;
        if (local) _localAckDelayExponent = (int)p.AckDelayExponent;
        else _peerAckDelayExponent = (int)p.AckDelayExponent;
        Begin(now, "quic:parameters_set");
        _json.WriteString("initiator", local ? "local" : "remote");
        if (tlsCipher is not null) _json.WriteString("tls_cipher", tlsCipher);
        WriteHexIfSet("original_destination_connection_id", p.OriginalDestinationConnectionId);
        WriteHexIfSet("initial_source_connection_id", p.InitialSourceConnectionId);
        WriteHexIfSet("retry_source_connection_id", p.RetrySourceConnectionId);
        WriteHexIfSet("stateless_reset_token", p.StatelessResetToken);
        _json.WriteBoolean("disable_active_migration", p.DisableActiveMigration);
        _json.WriteNumber("max_idle_timeout", p.MaxIdleTimeout);
        _json.WriteNumber("max_udp_payload_size", p.MaxUdpPayloadSize);
        _json.WriteNumber("ack_delay_exponent", p.AckDelayExponent);
        _json.WriteNumber("max_ack_delay", p.MaxAckDelay);
        _json.WriteNumber("active_connection_id_limit", p.ActiveConnectionIdLimit);
        _json.WriteNumber("initial_max_data", p.InitialMaxData);
        _json.WriteNumber("initial_max_stream_data_bidi_local", p.InitialMaxStreamDataBidiLocal);
        _json.WriteNumber("initial_max_stream_data_bidi_remote", p.InitialMaxStreamDataBidiRemote);
        _json.WriteNumber("initial_max_stream_data_uni", p.InitialMaxStreamDataUni);
        _json.WriteNumber("initial_max_streams_bidi", p.InitialMaxStreamsBidi);
        _json.WriteNumber("initial_max_streams_uni", p.InitialMaxStreamsUni);
        if (p.MaxDatagramFrameSize is ulong mdfs) _json.WriteNumber("max_datagram_frame_size", mdfs);
        _json.WriteBoolean("grease_quic_bit", p.GreaseQuicBit);
        End();
    }

    public void PacketSent(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload)
        => WritePacket(V.quic_packet_sent, now, type, packetNumber, packetLength, dcid, scid, payload, _localAckDelayExponent);

    public void PacketReceived(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload)
        => WritePacket(V.quic_packet_received, now, type, packetNumber, packetLength, dcid, scid, payload, _peerAckDelayExponent);

    public void MetricsUpdated(long now, RttEstimator rtt, ICongestionController congestion, int ptoCount)
    {
        if (_completed) return;
        long minRtt = rtt.HasSample ? rtt.MinRtt : -1, smoothed = rtt.SmoothedRtt, latest = rtt.HasSample ? rtt.LatestRtt : -1, variance = rtt.RttVariance;
        long cwnd = congestion.CongestionWindow, inFlight = congestion.BytesInFlight, ssthresh = congestion.SlowStartThreshold;
        bool rttChanged = minRtt != _lastMinRtt || smoothed != _lastSmoothedRtt || latest != _lastLatestRtt || variance != _lastRttVariance;
        bool ccChanged = cwnd != _lastCwnd || inFlight != _lastInFlight || ssthresh != _lastSsthresh || ptoCount != _lastPtoCount;
        if (!rttChanged && !ccChanged) return;

        Begin(now, V.quic_recovery_metrics_updated);
        if (rttChanged)
        {
            if (minRtt >= 0) _json.WriteNumber(P.min_rtt, Ms(minRtt));
            _json.WriteNumber(P.smoothed_rtt, Ms(smoothed));
            if (latest >= 0) _json.WriteNumber(P.latest_rtt, Ms(latest));
            _json.WriteNumber(P.rtt_variance, Ms(variance));
        }

        if (ptoCount != _lastPtoCount) _json.WriteNumber(P.pto_count, ptoCount);
        if (cwnd != _lastCwnd) _json.WriteNumber(P.congestion_window, cwnd);
        if (inFlight != _lastInFlight) _json.WriteNumber(P.bytes_in_flight, inFlight);
        if (ssthresh != _lastSsthresh && ssthresh is > 0 and < long.MaxValue) _json.WriteNumber(P.ssthresh, ssthresh);
        End();
        (_lastMinRtt, _lastSmoothedRtt, _lastLatestRtt, _lastRttVariance) = (minRtt, smoothed, latest, variance);
        (_lastCwnd, _lastInFlight, _lastSsthresh, _lastPtoCount) = (cwnd, inFlight, ssthresh, ptoCount);
    }

    public void PacketLost(PacketNumberSpace space, long packetNumber)
    {
        if (_completed) return;
        Begin(_last, "quic:packet_lost");
        _json.WriteStartObject(P.header);
        _json.WriteString(P.packet_type, space switch
        {
            PacketNumberSpace.Initial => V.initial,
            PacketNumberSpace.Handshake => V.handshake,
            _ => V.OneRtt,
        });
        _json.WriteNumber(P.packet_number, packetNumber);
        _json.WriteEndObject();
        End();
    }

    public void KeyUpdated(EncryptionLevel level, bool clientSecret, bool localUpdate, long keyPhase)
    {
        if (_completed) return;
        Begin(_last, "quic:key_updated");
        string side = clientSecret ? "client" : "server";
        _json.WriteString("key_type", level switch
        {
            EncryptionLevel.Initial => side + "_initial_secret",
            EncryptionLevel.ZeroRtt => side + "_0rtt_secret",
            EncryptionLevel.Handshake => side + "_handshake_secret",
            _ => side + "_1rtt_secret",
        });
        if (keyPhase >= 0) _json.WriteNumber("key_phase", keyPhase);
        _json.WriteString("trigger", keyPhase < 0 ? "tls" : localUpdate ? "local_update" : "remote_update");
        End();
    }

    public void StateUpdated(ConnectionState oldState, ConnectionState newState)
    {
        if (_completed) return;
        Begin(_last, "quic:connection_state_updated");
        _json.WriteString("old", StateName(oldState));
        _json.WriteString("new", StateName(newState));
        End();
        Flush();
    }

    public void HandshakeConfirmed()
    {
        if (_completed) return;
        Begin(_last, "quic:connection_state_updated");
        _json.WriteString("old", "handshake_complete");
        _json.WriteString("new", "handshake_confirmed");
        End();
    }

    public void ConnectionClosed(QuicCloseReason reason)
    {
        if (_completed) return;
        Begin(_last, "quic:connection_closed");
        _json.WriteString("initiator", reason.ClosedByPeer ? "remote" : "local");
        if (reason.IsApplicationError)
        {
            _json.WriteString("application_error", "unknown");
            _json.WriteNumber("error_code", reason.ErrorCode);
        }
        else if (!reason.IdleTimeout && !reason.StatelessReset)
        {
            WriteTransportError("connection_error", reason.ErrorCode);
        }

        if (reason.Reason.Length > 0) _json.WriteString("reason", reason.Reason);
        _json.WriteString("trigger", reason.IdleTimeout ? "idle_timeout" : reason.StatelessReset ? "stateless_reset" : reason.IsApplicationError ? "application" : "error");
        End();
        Flush();
    }

    public void ApplicationEvent<TState>(long now, string name, TState state, Action<Utf8JsonWriter, TState> writeData)
    {
        if (_completed) return;
        int start = _buffer.Length;
        Begin(now, name);
        bool written = false;
        try
        {
            writeData(_json, state);

            // Inside the record's object and its data object: anything else would break every later record.
            if (_json.CurrentDepth != 2) throw new InvalidOperationException($"The data of qlog event {name} left {_json.CurrentDepth - 2} JSON containers open or closed too many.");
            written = true;
        }
        finally
        {
            if (!written)
            {
                // Leave the file as it was: drop the partial record.
                _json.Reset(_buffer);
                _buffer.Truncate(start);
            }
        }

        End();
    }

    public void Complete()
    {
        if (_completed) return;
        _completed = true;
        Flush();
        _buffer.Release();
    }

    private void WriteHeader()
    {
        string odcid = _odcid;
        _buffer.WriteByte(RecordSeparator);
        _json.Reset(_buffer);
        _json.WriteStartObject();
        _json.WriteString("file_schema", "urn:ietf:params:qlog:file:sequential");
        _json.WriteString("serialization_format", "application/qlog+json-seq");
        _json.WriteString("title", "KestrelQuic " + (_isServer ? "server" : "client") + " " + odcid);
        _json.WriteStartObject("trace");
        _json.WriteStartObject("common_fields");
        _json.WriteString("group_id", odcid);
        _json.WriteString("time_format", "relative_to_epoch");
        _json.WriteStartObject("reference_time");
        _json.WriteString("clock_type", "monotonic");
        _json.WriteString("epoch", "unknown");
        _json.WriteString("wall_clock_time", DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
        _json.WriteEndObject();
        _json.WriteEndObject();
        _json.WriteStartObject("vantage_point");
        _json.WriteString(P.name, "KestrelQuic");
        _json.WriteString("type", _isServer ? "server" : "client");
        _json.WriteEndObject();
        _json.WriteStartArray("event_schemas");
        _json.WriteStringValue(EventSchema);
        _json.WriteStringValue(LogLevelEventSchema);
        if (_http3) _json.WriteStringValue(Http3EventSchema);
        _json.WriteEndArray();
        _json.WriteEndObject();
        _json.WriteEndObject();
        _json.Flush();
        _buffer.WriteByte((byte)'\n');
    }

    private void Begin(long now, string name)
    {
        if (now > _last) _last = now;
        _buffer.WriteByte(RecordSeparator);
        _json.Reset(_buffer);
        _json.WriteStartObject();
        _json.WriteNumber(P.time, Ms(Math.Max(now, _last) - _start));
        _json.WriteString(P.name, name);
        _json.WriteStartObject(P.data);
    }

    private void Begin(long now, JsonEncodedText name)
    {
        if (now > _last) _last = now;
        _buffer.WriteByte(RecordSeparator);
        _json.Reset(_buffer);
        _json.WriteStartObject();
        _json.WriteNumber(P.time, Ms(Math.Max(now, _last) - _start));
        _json.WriteString(P.name, name);
        _json.WriteStartObject(P.data);
    }

    private void End()
    {
        _json.WriteEndObject();
        _json.WriteEndObject();
        _json.Flush();
        _buffer.WriteByte((byte)'\n');
        if (_buffer.Length >= FlushThreshold) Flush();
    }

    private void Flush()
    {
        if (_buffer.Length == 0 || _completed && _buffer.Array is null) return;
        (byte[] array, int length) = _buffer.Detach();
        if (_writer.Append(_path, array, length, TraceOutput.Qlog, _logger))
        {
            _headerWritten = true;
            return;
        }

        // The disk is behind: these records are gone. The file must still start with its header, and says what it lost.
        _droppedBytes += length;
        if (_completed) return;
        if (!_headerWritten) WriteHeader();
        Begin(_last, "loglevel:warning");
        _json.WriteString("message", "qlog records dropped: the background writer's queue was full (the disk is slower than the connections)");
        _json.WriteNumber("dropped_bytes", _droppedBytes);
        End();
    }

    private void WritePacket(JsonEncodedText name, long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload, int ackDelayExponent)
    {
        if (_completed) return;
        Begin(now, name);
        _json.WriteStartObject(P.header);
        _json.WriteString(P.packet_type, type switch
        {
            PacketType.Initial => V.initial,
            PacketType.Handshake => V.handshake,
            PacketType.ZeroRtt => V.ZeroRtt,
            PacketType.OneRtt => V.OneRtt,
            PacketType.Retry => V.retry,
            PacketType.VersionNegotiation => V.version_negotiation,
            _ => V.unknown,
        });
        _json.WriteNumber(P.packet_number, packetNumber);
        WriteHex(P.dcid, dcid);
        if (type != PacketType.OneRtt) WriteHex(P.scid, scid);
        _json.WriteEndObject();
        _json.WriteStartObject(P.raw);
        _json.WriteNumber(P.length, packetLength);
        _json.WriteNumber(P.payload_length, payload.Length);
        _json.WriteEndObject();
        _json.WriteStartArray(P.frames);
        WriteFrames(payload, type, ackDelayExponent);
        _json.WriteEndArray();
        End();
    }

    private void WriteFrames(ReadOnlySpan<byte> payload, PacketType type, int ackDelayExponent)
    {
        var reader = new FrameReader(payload, type);
        while (true)
        {
            FrameReadStatus status = reader.TryReadFrame(out Frame f, out TransportError error);
            if (status == FrameReadStatus.End) return;
            _json.WriteStartObject();
            if (status == FrameReadStatus.Error)
            {
                _json.WriteString(P.frame_type, "unknown");
                _json.WriteNumber("frame_type_bytes", error.FrameType);
                _json.WriteEndObject();
                return;
            }

            WriteFrame(ref f, ackDelayExponent);
            _json.WriteStartObject(P.raw);
            _json.WriteNumber(P.length, f.EncodedLength);
            if (f.Type is FrameType.Padding) _json.WriteNumber(P.payload_length, f.EncodedLength);
            else if (f.Type is FrameType.Stream or FrameType.Crypto or FrameType.Datagram or FrameType.DatagramWithLength) _json.WriteNumber(P.payload_length, f.Data.Length);
            _json.WriteEndObject();
            _json.WriteEndObject();
        }
    }

    private void WriteFrame(ref Frame f, int ackDelayExponent)
    {
        switch (f.Type)
        {
            case FrameType.Padding:
                _json.WriteString(P.frame_type, V.padding);
                break;
            case FrameType.Ping:
                _json.WriteString(P.frame_type, V.ping);
                break;
            case FrameType.Ack:
            case FrameType.AckEcn:
                _json.WriteString(P.frame_type, V.ack);
                _json.WriteNumber(P.ack_delay, (double)(f.Ack.AckDelay << ackDelayExponent) / 1000.0);
                _json.WriteStartArray(P.acked_ranges);
                foreach (ValueRange r in f.Ack)
                {
                    _json.WriteStartArray();
                    _json.WriteNumberValue(r.Start);
                    if (r.End - 1 != r.Start) _json.WriteNumberValue(r.End - 1);
                    _json.WriteEndArray();
                }

                _json.WriteEndArray();
                if (f.Ack.HasEcn)
                {
                    _json.WriteNumber("ect0", f.Ack.Ect0);
                    _json.WriteNumber("ect1", f.Ack.Ect1);
                    _json.WriteNumber("ce", f.Ack.Ce);
                }

                break;
            case FrameType.ResetStream:
                _json.WriteString(P.frame_type, "reset_stream");
                _json.WriteNumber(P.stream_id, f.StreamId);
                _json.WriteNumber("error_code", f.ErrorCode);
                _json.WriteNumber("final_size", f.FinalSize);
                break;
            case FrameType.StopSending:
                _json.WriteString(P.frame_type, "stop_sending");
                _json.WriteNumber(P.stream_id, f.StreamId);
                _json.WriteNumber("error_code", f.ErrorCode);
                break;
            case FrameType.Crypto:
                _json.WriteString(P.frame_type, V.crypto);
                _json.WriteNumber(P.offset, f.Offset);
                _json.WriteNumber(P.length, f.Data.Length);
                break;
            case FrameType.NewToken:
                _json.WriteString(P.frame_type, "new_token");
                _json.WriteStartObject("token");
                _json.WriteStartObject(P.raw);
                _json.WriteNumber(P.length, f.Data.Length);
                _json.WriteEndObject();
                _json.WriteEndObject();
                break;
            case FrameType.Stream:
                _json.WriteString(P.frame_type, V.stream);
                _json.WriteNumber(P.stream_id, f.StreamId);
                _json.WriteNumber(P.offset, f.Offset);
                _json.WriteNumber(P.length, f.Data.Length);
                if (f.Fin) _json.WriteBoolean(P.fin, true);
                break;
            case FrameType.MaxData:
                _json.WriteString(P.frame_type, V.max_data);
                _json.WriteNumber(P.maximum, f.Maximum);
                break;
            case FrameType.MaxStreamData:
                _json.WriteString(P.frame_type, V.max_stream_data);
                _json.WriteNumber(P.stream_id, f.StreamId);
                _json.WriteNumber(P.maximum, f.Maximum);
                break;
            case FrameType.MaxStreamsBidi:
            case FrameType.MaxStreamsUni:
                _json.WriteString(P.frame_type, "max_streams");
                _json.WriteString("stream_type", f.IsBidirectional ? "bidirectional" : "unidirectional");
                _json.WriteNumber(P.maximum, f.Maximum);
                break;
            case FrameType.DataBlocked:
                _json.WriteString(P.frame_type, "data_blocked");
                _json.WriteNumber("limit", f.Maximum);
                break;
            case FrameType.StreamDataBlocked:
                _json.WriteString(P.frame_type, "stream_data_blocked");
                _json.WriteNumber(P.stream_id, f.StreamId);
                _json.WriteNumber("limit", f.Maximum);
                break;
            case FrameType.StreamsBlockedBidi:
            case FrameType.StreamsBlockedUni:
                _json.WriteString(P.frame_type, "streams_blocked");
                _json.WriteString("stream_type", f.IsBidirectional ? "bidirectional" : "unidirectional");
                _json.WriteNumber("limit", f.Maximum);
                break;
            case FrameType.NewConnectionId:
                _json.WriteString(P.frame_type, "new_connection_id");
                _json.WriteNumber("sequence_number", f.SequenceNumber);
                _json.WriteNumber("retire_prior_to", f.RetirePriorTo);
                _json.WriteNumber("connection_id_length", f.Data.Length);
                WriteHex("connection_id", f.Data);
                WriteHex("stateless_reset_token", f.StatelessResetToken);
                break;
            case FrameType.RetireConnectionId:
                _json.WriteString(P.frame_type, "retire_connection_id");
                _json.WriteNumber("sequence_number", f.SequenceNumber);
                break;
            case FrameType.PathChallenge:
            case FrameType.PathResponse:
                _json.WriteString(P.frame_type, f.Type == FrameType.PathChallenge ? "path_challenge" : "path_response");
                WriteHex(P.data, f.Data);
                break;
            case FrameType.ConnectionClose:
            case FrameType.ConnectionCloseApplication:
                _json.WriteString(P.frame_type, "connection_close");
                bool transport = f.Type == FrameType.ConnectionClose;
                _json.WriteString("error_space", transport ? "transport" : "application");
                if (transport) WriteTransportError("error", f.ErrorCode);
                else _json.WriteNumber("error_code", f.ErrorCode);
                if (!f.Data.IsEmpty) _json.WriteString("reason", Encoding.UTF8.GetString(f.Data));
                if (transport) _json.WriteNumber("trigger_frame_type", f.FrameTypeInClose);
                break;
            case FrameType.HandshakeDone:
                _json.WriteString(P.frame_type, "handshake_done");
                break;
            case FrameType.Datagram:
            case FrameType.DatagramWithLength:
                _json.WriteString(P.frame_type, "datagram");
                _json.WriteNumber(P.length, f.Data.Length);
                break;
            default:
                _json.WriteString(P.frame_type, "unknown");
                _json.WriteNumber("frame_type_bytes", f.RawType);
                break;
        }
    }

    private void WriteTransportError(string property, ulong code)
    {
        if (code is >= 0x100 and <= 0x1ff)
        {
            // CryptoError: "crypto_error_0x1XX".
            _json.WriteString(property, "crypto_error_0x" + code.ToString("x3", System.Globalization.CultureInfo.InvariantCulture));
        }
        else if (Enum.IsDefined((TransportErrorCode)code))
        {
            _json.WriteString(property, QuicMetrics.SnakeCase(((TransportErrorCode)code).ToString()));
        }
        else
        {
            _json.WriteString(property, "unknown");
            _json.WriteNumber("error_code", code);
        }
    }

    private void WriteHexIfSet(string name, byte[]? value)
    {
        if (value is not null) WriteHex(name, value);
    }

    /// <summary>Hex without a string allocation (connection IDs, tokens: at most a few dozen bytes).</summary>
    private void WriteHex(string name, ReadOnlySpan<byte> value) => WriteHex(JsonEncodedText.Encode(name), value);

    private void WriteHex(JsonEncodedText name, ReadOnlySpan<byte> value)
    {
        Span<char> hex = value.Length <= 64 ? stackalloc char[value.Length * 2] : new char[value.Length * 2];
        Convert.TryToHexStringLower(value, hex, out int written);
        _json.WriteString(name, hex[..written]);
    }

    private static string StateName(ConnectionState state) => state switch
    {
        ConnectionState.Handshake => "handshake_started",
        ConnectionState.Established => "handshake_complete",
        ConnectionState.Closing => "closing",
        ConnectionState.Draining => "draining",
        _ => "closed",
    };

    private static string Hex32(uint value) => value.ToString("x8", System.Globalization.CultureInfo.InvariantCulture);

    private static double Ms(long ticks) => ticks / (double)TimeSpan.TicksPerMillisecond;

    /// <summary>Pre-encoded property names of the per-packet records (no transcoding per record).</summary>
    private static class P
    {
        public static readonly JsonEncodedText time = JsonEncodedText.Encode("time");
        public static readonly JsonEncodedText name = JsonEncodedText.Encode("name");
        public static readonly JsonEncodedText data = JsonEncodedText.Encode("data");
        public static readonly JsonEncodedText header = JsonEncodedText.Encode("header");
        public static readonly JsonEncodedText packet_type = JsonEncodedText.Encode("packet_type");
        public static readonly JsonEncodedText packet_number = JsonEncodedText.Encode("packet_number");
        public static readonly JsonEncodedText dcid = JsonEncodedText.Encode("dcid");
        public static readonly JsonEncodedText scid = JsonEncodedText.Encode("scid");
        public static readonly JsonEncodedText raw = JsonEncodedText.Encode("raw");
        public static readonly JsonEncodedText length = JsonEncodedText.Encode("length");
        public static readonly JsonEncodedText payload_length = JsonEncodedText.Encode("payload_length");
        public static readonly JsonEncodedText frames = JsonEncodedText.Encode("frames");
        public static readonly JsonEncodedText frame_type = JsonEncodedText.Encode("frame_type");
        public static readonly JsonEncodedText stream_id = JsonEncodedText.Encode("stream_id");
        public static readonly JsonEncodedText offset = JsonEncodedText.Encode("offset");
        public static readonly JsonEncodedText fin = JsonEncodedText.Encode("fin");
        public static readonly JsonEncodedText ack_delay = JsonEncodedText.Encode("ack_delay");
        public static readonly JsonEncodedText acked_ranges = JsonEncodedText.Encode("acked_ranges");
        public static readonly JsonEncodedText min_rtt = JsonEncodedText.Encode("min_rtt");
        public static readonly JsonEncodedText smoothed_rtt = JsonEncodedText.Encode("smoothed_rtt");
        public static readonly JsonEncodedText latest_rtt = JsonEncodedText.Encode("latest_rtt");
        public static readonly JsonEncodedText rtt_variance = JsonEncodedText.Encode("rtt_variance");
        public static readonly JsonEncodedText pto_count = JsonEncodedText.Encode("pto_count");
        public static readonly JsonEncodedText congestion_window = JsonEncodedText.Encode("congestion_window");
        public static readonly JsonEncodedText bytes_in_flight = JsonEncodedText.Encode("bytes_in_flight");
        public static readonly JsonEncodedText ssthresh = JsonEncodedText.Encode("ssthresh");
        public static readonly JsonEncodedText maximum = JsonEncodedText.Encode("maximum");
    }

    /// <summary>Pre-encoded values of the per-packet records.</summary>
    private static class V
    {
        public static readonly JsonEncodedText quic_packet_sent = JsonEncodedText.Encode("quic:packet_sent");
        public static readonly JsonEncodedText quic_packet_received = JsonEncodedText.Encode("quic:packet_received");
        public static readonly JsonEncodedText quic_recovery_metrics_updated = JsonEncodedText.Encode("quic:recovery_metrics_updated");
        public static readonly JsonEncodedText initial = JsonEncodedText.Encode("initial");
        public static readonly JsonEncodedText handshake = JsonEncodedText.Encode("handshake");
        public static readonly JsonEncodedText ZeroRtt = JsonEncodedText.Encode("0RTT");
        public static readonly JsonEncodedText OneRtt = JsonEncodedText.Encode("1RTT");
        public static readonly JsonEncodedText padding = JsonEncodedText.Encode("padding");
        public static readonly JsonEncodedText ping = JsonEncodedText.Encode("ping");
        public static readonly JsonEncodedText ack = JsonEncodedText.Encode("ack");
        public static readonly JsonEncodedText stream = JsonEncodedText.Encode("stream");
        public static readonly JsonEncodedText crypto = JsonEncodedText.Encode("crypto");
        public static readonly JsonEncodedText max_data = JsonEncodedText.Encode("max_data");
        public static readonly JsonEncodedText max_stream_data = JsonEncodedText.Encode("max_stream_data");
        public static readonly JsonEncodedText retry = JsonEncodedText.Encode("retry");
        public static readonly JsonEncodedText version_negotiation = JsonEncodedText.Encode("version_negotiation");
        public static readonly JsonEncodedText unknown = JsonEncodedText.Encode("unknown");
    }

    /// <summary>An <see cref="IBufferWriter{T}"/> over one array rented from the shared pool, handed over whole on flush.</summary>
    private sealed class PooledBuffer : IBufferWriter<byte>
    {
        private byte[]? _array;
        private int _length;

        public int Length => _length;

        public byte[]? Array => _array;

        public void Advance(int count) => _length += count;

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _array.AsMemory(_length);
        }

        public Span<byte> GetSpan(int sizeHint = 0)
        {
            Ensure(sizeHint);
            return _array.AsSpan(_length);
        }

        public void WriteByte(byte value)
        {
            Ensure(1);
            _array![_length++] = value;
        }

        /// <summary>Forgets what was written after <paramref name="length"/> bytes (a record abandoned half-way).</summary>
        public void Truncate(int length) => _length = Math.Min(_length, length);

        public (byte[] Array, int Length) Detach()
        {
            (byte[] array, int length) = (_array!, _length);
            _array = null;
            _length = 0;
            return (array, length);
        }

        public void Release()
        {
            if (_array is not null) ArrayPool<byte>.Shared.Return(_array);
            _array = null;
            _length = 0;
        }

        private void Ensure(int sizeHint)
        {
            int needed = _length + Math.Max(sizeHint, 256);
            if (_array is not null && needed <= _array.Length) return;
            byte[] next = ArrayPool<byte>.Shared.Rent(Math.Max(needed, FlushThreshold + 4096));
            if (_array is not null)
            {
                _array.AsSpan(0, _length).CopyTo(next);
                ArrayPool<byte>.Shared.Return(_array);
            }

            _array = next;
        }
    }
}
