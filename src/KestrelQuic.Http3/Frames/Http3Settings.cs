using System.Buffers;

namespace KestrelQuic.Http3.Frames;

/// <summary>Setting identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5).</summary>
public static class Http3SettingId
{
    /// <summary>SETTINGS_QPACK_MAX_TABLE_CAPACITY (0x01), default 0.</summary>
    public const long QpackMaxTableCapacity = 0x01;

    /// <summary>SETTINGS_MAX_FIELD_SECTION_SIZE (0x06), default unlimited.</summary>
    public const long MaxFieldSectionSize = 0x06;

    /// <summary>SETTINGS_QPACK_BLOCKED_STREAMS (0x07), default 0.</summary>
    public const long QpackBlockedStreams = 0x07;

    /// <summary>
    /// True for identifiers reserved because HTTP/2 used them with no HTTP/3 equivalent (0x00, 0x02, 0x03, 0x04, 0x05):
    /// receiving one is <see cref="Http3ErrorCode.SettingsError"/> (RFC 9114 §7.2.4.1, §11.2.2).
    /// </summary>
    public static bool IsHttp2Reserved(long id) => id is 0x00 or 0x02 or 0x03 or 0x04 or 0x05;
}

/// <summary>The parameters of a SETTINGS frame (RFC 9114 §7.2.4). Unset values keep their defaults.</summary>
public sealed class Http3Settings
{
    /// <summary>SETTINGS_QPACK_MAX_TABLE_CAPACITY; default 0 (no dynamic table).</summary>
    public long QpackMaxTableCapacity { get; set; }

    /// <summary>SETTINGS_MAX_FIELD_SECTION_SIZE; default <see cref="long.MaxValue"/> (unlimited, not sent).</summary>
    public long MaxFieldSectionSize { get; set; } = long.MaxValue;

    /// <summary>SETTINGS_QPACK_BLOCKED_STREAMS; default 0.</summary>
    public long QpackBlockedStreams { get; set; }

    /// <summary>
    /// Other settings, in frame order: extensions (e.g. SETTINGS_ENABLE_CONNECT_PROTOCOL 0x08, SETTINGS_H3_DATAGRAM
    /// 0x33) and reserved grease identifiers. Received unknown identifiers are kept here, and MUST be ignored by
    /// meaning (RFC 9114 §7.2.4).
    /// </summary>
    public List<KeyValuePair<long, long>> Others { get; } = [];

    /// <summary>The value of <paramref name="id"/> if it was set (defaults count for the three known settings).</summary>
    public bool TryGetValue(long id, out long value)
    {
        switch (id)
        {
            case Http3SettingId.QpackMaxTableCapacity:
                value = QpackMaxTableCapacity;
                return true;
            case Http3SettingId.MaxFieldSectionSize:
                value = MaxFieldSectionSize;
                return true;
            case Http3SettingId.QpackBlockedStreams:
                value = QpackBlockedStreams;
                return true;
        }

        foreach (KeyValuePair<long, long> pair in Others)
        {
            if (pair.Key == id)
            {
                value = pair.Value;
                return true;
            }
        }

        value = 0;
        return false;
    }

    /// <summary>
    /// Parses a SETTINGS payload. Errors: a truncated parameter is <see cref="Http3ErrorCode.FrameError"/>; a duplicate
    /// identifier or an HTTP/2-reserved one is <see cref="Http3ErrorCode.SettingsError"/>.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> payload, out Http3Settings settings, out Http3ErrorCode error)
    {
        settings = new Http3Settings();
        HashSet<long>? seen = null;
        int knownSeen = 0;
        while (!payload.IsEmpty)
        {
            if (!Http3VarInt.TryRead(payload, out long id, out int idLength)
                || !Http3VarInt.TryRead(payload.Slice(idLength), out long value, out int valueLength))
            {
                error = Http3ErrorCode.FrameError;
                return false;
            }

            payload = payload.Slice(idLength + valueLength);
            if (Http3SettingId.IsHttp2Reserved(id))
            {
                error = Http3ErrorCode.SettingsError;
                return false;
            }

            int knownBit = id switch
            {
                Http3SettingId.QpackMaxTableCapacity => 1,
                Http3SettingId.MaxFieldSectionSize => 2,
                Http3SettingId.QpackBlockedStreams => 4,
                _ => 0,
            };

            if (knownBit != 0)
            {
                if ((knownSeen & knownBit) != 0)
                {
                    error = Http3ErrorCode.SettingsError;
                    return false;
                }

                knownSeen |= knownBit;
                switch (id)
                {
                    case Http3SettingId.QpackMaxTableCapacity:
                        settings.QpackMaxTableCapacity = value;
                        break;
                    case Http3SettingId.MaxFieldSectionSize:
                        settings.MaxFieldSectionSize = value;
                        break;
                    default:
                        settings.QpackBlockedStreams = value;
                        break;
                }

                continue;
            }

            seen ??= [];
            if (!seen.Add(id))
            {
                error = Http3ErrorCode.SettingsError;
                return false;
            }

            settings.Others.Add(new KeyValuePair<long, long>(id, value));
        }

        error = Http3ErrorCode.NoError;
        return true;
    }

    /// <inheritdoc cref="TryParse(ReadOnlySpan{byte}, out Http3Settings, out Http3ErrorCode)"/>
    public static bool TryParse(in ReadOnlySequence<byte> payload, out Http3Settings settings, out Http3ErrorCode error)
    {
        if (payload.IsSingleSegment)
        {
            return TryParse(payload.FirstSpan, out settings, out error);
        }

        return TryParse(payload.ToArray(), out settings, out error);
    }

    /// <summary>Length of the SETTINGS payload <see cref="WritePayload"/> produces.</summary>
    public int GetPayloadLength()
    {
        int length = 0;
        if (QpackMaxTableCapacity != 0)
        {
            length += Http3VarInt.GetLength(Http3SettingId.QpackMaxTableCapacity) + Http3VarInt.GetLength(QpackMaxTableCapacity);
        }

        if (MaxFieldSectionSize != long.MaxValue)
        {
            length += Http3VarInt.GetLength(Http3SettingId.MaxFieldSectionSize) + Http3VarInt.GetLength(MaxFieldSectionSize);
        }

        if (QpackBlockedStreams != 0)
        {
            length += Http3VarInt.GetLength(Http3SettingId.QpackBlockedStreams) + Http3VarInt.GetLength(QpackBlockedStreams);
        }

        foreach (KeyValuePair<long, long> pair in Others)
        {
            length += Http3VarInt.GetLength(pair.Key) + Http3VarInt.GetLength(pair.Value);
        }

        return length;
    }

    /// <summary>
    /// Writes the payload: the three known settings when they differ from their defaults, then <see cref="Others"/>.
    /// Throws <see cref="InvalidOperationException"/> for an HTTP/2-reserved or duplicated identifier in
    /// <see cref="Others"/>, which must never be sent.
    /// </summary>
    public void WritePayload(IBufferWriter<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var ids = new HashSet<long>();
        foreach (KeyValuePair<long, long> pair in Others)
        {
            if (Http3SettingId.IsHttp2Reserved(pair.Key)
                || pair.Key is Http3SettingId.QpackMaxTableCapacity or Http3SettingId.MaxFieldSectionSize or Http3SettingId.QpackBlockedStreams
                || !ids.Add(pair.Key))
            {
                throw new InvalidOperationException($"Setting 0x{pair.Key:x} cannot be sent in Others.");
            }
        }

        if (QpackMaxTableCapacity != 0)
        {
            Http3VarInt.Write(destination, Http3SettingId.QpackMaxTableCapacity);
            Http3VarInt.Write(destination, QpackMaxTableCapacity);
        }

        if (MaxFieldSectionSize != long.MaxValue)
        {
            Http3VarInt.Write(destination, Http3SettingId.MaxFieldSectionSize);
            Http3VarInt.Write(destination, MaxFieldSectionSize);
        }

        if (QpackBlockedStreams != 0)
        {
            Http3VarInt.Write(destination, Http3SettingId.QpackBlockedStreams);
            Http3VarInt.Write(destination, QpackBlockedStreams);
        }

        foreach (KeyValuePair<long, long> pair in Others)
        {
            Http3VarInt.Write(destination, pair.Key);
            Http3VarInt.Write(destination, pair.Value);
        }
    }
}
