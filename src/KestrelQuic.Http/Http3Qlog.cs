using System.Text.Json;
using KestrelQuic.Http3.Frames;

namespace KestrelQuic.Http;

/// <summary>
/// The client's HTTP/3 events (draft-ietf-quic-qlog-h3-events) in the connection's qlog file, through
/// <see cref="QuicConnection.QlogTrace"/>: parameters_set, stream_type_set, frame_created and frame_parsed. Exists only
/// when qlog is on; callers hold a nullable reference, so a connection without qlog pays one null check per frame.
/// QPACK has no events in the current draft (they were removed in draft 06); decoded field sections appear in the
/// HEADERS frames.
/// </summary>
internal sealed class Http3Qlog
{
    private const string FrameCreated = "http3:frame_created";
    private const string FrameParsed = "http3:frame_parsed";

    private readonly QuicQlogTrace _trace;

    private Http3Qlog(QuicQlogTrace trace) => _trace = trace;

    public static Http3Qlog? For(QuicConnection connection) => connection.QlogTrace is { } trace ? new Http3Qlog(trace) : null;

    /// <summary>A stream's type became known: <paramref name="streamType"/> is the unidirectional stream type, null for a request stream.</summary>
    public void StreamTypeSet(bool local, long streamId, long? streamType) => _trace.WriteEvent("http3:stream_type_set", (local, streamId, streamType), static (w, s) =>
    {
        w.WriteString("initiator", s.local ? "local" : "remote");
        w.WriteNumber("stream_id", s.streamId);
        string type = s.streamType switch
        {
            null => "request",
            Http3StreamType.Control => "control",
            Http3StreamType.Push => "push",
            Http3StreamType.QpackEncoder => "qpack_encode",
            Http3StreamType.QpackDecoder => "qpack_decode",
            long t when Http3Reserved.IsReserved(t) => "reserved",
            _ => "unknown",
        };
        w.WriteString("stream_type", type);
        if (type == "unknown") w.WriteNumber("stream_type_bytes", s.streamType!.Value);
    });

    /// <summary>parameters_set from a SETTINGS payload (ours or the server's), with the qlog names of the known settings.</summary>
    public void ParametersSet(bool local, byte[] settingsPayload) => _trace.WriteEvent("http3:parameters_set", (local, settingsPayload), static (w, s) =>
    {
        w.WriteString("initiator", s.local ? "local" : "remote");
        foreach ((long id, long value) in Settings(s.settingsPayload))
        {
            switch (id)
            {
                case Http3SettingId.MaxFieldSectionSize:
                    w.WriteNumber("max_field_section_size", value);
                    break;
                case Http3SettingId.QpackMaxTableCapacity:
                    w.WriteNumber("max_table_capacity", value);
                    break;
                case Http3SettingId.QpackBlockedStreams:
                    w.WriteNumber("blocked_streams_count", value);
                    break;
                case 0x08:
                    w.WriteNumber("extended_connect", value);
                    break;
                case 0x33:
                    w.WriteNumber("h3_datagram", value);
                    break;
            }
        }

        // Requests go out without waiting for the server's SETTINGS (RFC 9114 §6.2.1 allows it).
        if (s.local) w.WriteBoolean("waits_for_settings", false);
    });

    /// <summary>A SETTINGS frame sent or received on a control stream, every setting listed.</summary>
    public void Settings(bool created, long streamId, byte[] payload) => _trace.WriteEvent(created ? FrameCreated : FrameParsed, (streamId, payload), static (w, s) =>
    {
        w.WriteNumber("stream_id", s.streamId);
        w.WriteStartObject("frame");
        w.WriteString("frame_type", "settings");
        w.WriteStartArray("settings");
        foreach ((long id, long value) in Settings(s.payload))
        {
            w.WriteStartObject();
            string? name = id switch
            {
                Http3SettingId.QpackMaxTableCapacity => "settings_qpack_max_table_capacity",
                Http3SettingId.MaxFieldSectionSize => "settings_max_field_section_size",
                Http3SettingId.QpackBlockedStreams => "settings_qpack_blocked_streams",
                0x08 => "settings_enable_connect_protocol",
                0x33 => "settings_h3_datagram",
                _ when Http3Reserved.IsReserved(id) => "reserved",
                _ => null,
            };
            w.WriteString("name", name ?? "unknown");
            if (name is null) w.WriteNumber("name_bytes", id);
            w.WriteNumber("value", value);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        WriteRaw(w, Http3FrameType.Settings, s.payload.Length);
        w.WriteEndObject();
    });

    /// <summary>A HEADERS frame: the field section as sent, or as decoded (with :status first in a response's headers).</summary>
    public void Headers(bool created, long streamId, IReadOnlyList<KeyValuePair<string, string>> fields, int status, long payloadLength) =>
        _trace.WriteEvent(created ? FrameCreated : FrameParsed, (streamId, fields, status, payloadLength), static (w, s) =>
        {
            w.WriteNumber("stream_id", s.streamId);
            w.WriteStartObject("frame");
            w.WriteString("frame_type", "headers");
            w.WriteStartArray("headers");
            if (s.status >= 0)
            {
                WriteField(w, ":status", s.status.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            foreach (KeyValuePair<string, string> field in s.fields)
            {
                WriteField(w, field.Key, field.Value);
            }

            w.WriteEndArray();
            WriteRaw(w, Http3FrameType.Headers, s.payloadLength);
            w.WriteEndObject();
        });

    /// <summary>A frame known by its header only: DATA, GOAWAY, CANCEL_PUSH (with <paramref name="id"/>), reserved and unknown frames.</summary>
    public void Frame(bool created, long streamId, long type, long payloadLength, long id = -1) =>
        _trace.WriteEvent(created ? FrameCreated : FrameParsed, (streamId, type, payloadLength, id), static (w, s) =>
        {
            w.WriteNumber("stream_id", s.streamId);
            w.WriteStartObject("frame");
            switch (s.type)
            {
                case Http3FrameType.Data:
                    w.WriteString("frame_type", "data");
                    break;
                case Http3FrameType.GoAway:
                    w.WriteString("frame_type", "goaway");
                    w.WriteNumber("id", s.id);
                    break;
                case Http3FrameType.CancelPush:
                    w.WriteString("frame_type", "cancel_push");
                    w.WriteNumber("push_id", s.id);
                    break;
                default:
                    w.WriteString("frame_type", Http3Reserved.IsReserved(s.type) ? "reserved" : "unknown");
                    w.WriteNumber("frame_type_bytes", s.type);
                    break;
            }

            WriteRaw(w, s.type, s.payloadLength);
            w.WriteEndObject();
        });

    /// <summary>A field line; credentials are named without their value (the draft allows a field with neither value nor value_bytes).</summary>
    private static void WriteField(Utf8JsonWriter w, string name, string value)
    {
        w.WriteStartObject();
        w.WriteString("name", name);
        if (!IsCredential(name))
        {
            w.WriteString("value", value);
        }

        w.WriteEndObject();
    }

    private static bool IsCredential(string name) =>
        name.Equals("authorization", StringComparison.OrdinalIgnoreCase) || name.Equals("proxy-authorization", StringComparison.OrdinalIgnoreCase)
        || name.Equals("cookie", StringComparison.OrdinalIgnoreCase) || name.Equals("set-cookie", StringComparison.OrdinalIgnoreCase);

    /// <summary>The frame's RawInfo: the whole frame's length and its payload's.</summary>
    private static void WriteRaw(Utf8JsonWriter w, long type, long payloadLength)
    {
        w.WriteStartObject("raw");
        w.WriteNumber("length", VarIntLength(type) + VarIntLength(payloadLength) + payloadLength);
        w.WriteNumber("payload_length", payloadLength);
        w.WriteEndObject();
    }

    /// <summary>The (identifier, value) pairs of a SETTINGS payload, in order; stops at a truncated pair.</summary>
    private static List<(long Id, long Value)> Settings(byte[] payload)
    {
        var pairs = new List<(long, long)>();
        ReadOnlySpan<byte> rest = payload;
        while (TryReadVarInt(rest, out long id, out int n) && TryReadVarInt(rest[n..], out long value, out int m))
        {
            pairs.Add((id, value));
            rest = rest[(n + m)..];
        }

        return pairs;
    }

    private static int VarIntLength(long value) => value < 0x40 ? 1 : value < 0x4000 ? 2 : value < 0x4000_0000 ? 4 : 8;

    /// <summary>RFC 9000 §16 variable-length integer.</summary>
    private static bool TryReadVarInt(ReadOnlySpan<byte> source, out long value, out int length)
    {
        value = 0;
        length = source.IsEmpty ? 0 : 1 << (source[0] >> 6);
        if (length == 0 || source.Length < length)
        {
            return false;
        }

        value = source[0] & 0x3f;
        for (int i = 1; i < length; i++)
        {
            value = (value << 8) | source[i];
        }

        return true;
    }
}
