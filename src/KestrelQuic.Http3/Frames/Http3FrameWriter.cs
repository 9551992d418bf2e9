using System.Buffers;

namespace KestrelQuic.Http3.Frames;

/// <summary>Serializes HTTP/3 frames (RFC 9114 §7) and unidirectional stream headers (§6.2).</summary>
public static class Http3FrameWriter
{
    /// <summary>Longest frame header: two 8-byte variable-length integers.</summary>
    public const int MaxFrameHeaderLength = 16;

    /// <summary>Writes a frame header (Type, Length); returns the bytes written, 0 if it does not fit.</summary>
    public static int WriteFrameHeader(Span<byte> destination, long type, long payloadLength)
    {
        int typeLength = Http3VarInt.GetLength(type);
        int length = typeLength + Http3VarInt.GetLength(payloadLength);
        if (destination.Length < length)
        {
            return 0;
        }

        Http3VarInt.Write(destination, type);
        Http3VarInt.Write(destination.Slice(typeLength), payloadLength);
        return length;
    }

    /// <summary>Appends a frame header.</summary>
    public static void WriteFrameHeader(IBufferWriter<byte> destination, long type, long payloadLength)
    {
        ArgumentNullException.ThrowIfNull(destination);
        destination.Advance(WriteFrameHeader(destination.GetSpan(MaxFrameHeaderLength), type, payloadLength));
    }

    /// <summary>Appends a DATA frame header; the caller sends <paramref name="payloadLength"/> bytes of content after it.</summary>
    public static void WriteDataFrameHeader(IBufferWriter<byte> destination, long payloadLength) =>
        WriteFrameHeader(destination, Http3FrameType.Data, payloadLength);

    /// <summary>Appends a whole DATA frame.</summary>
    public static void WriteDataFrame(IBufferWriter<byte> destination, ReadOnlySpan<byte> data)
    {
        WriteFrameHeader(destination, Http3FrameType.Data, data.Length);
        destination.Write(data);
    }

    /// <summary>Appends a HEADERS frame carrying an encoded field section.</summary>
    public static void WriteHeadersFrame(IBufferWriter<byte> destination, ReadOnlySpan<byte> encodedFieldSection)
    {
        WriteFrameHeader(destination, Http3FrameType.Headers, encodedFieldSection.Length);
        destination.Write(encodedFieldSection);
    }

    /// <summary>Appends a SETTINGS frame.</summary>
    public static void WriteSettingsFrame(IBufferWriter<byte> destination, Http3Settings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        WriteFrameHeader(destination, Http3FrameType.Settings, settings.GetPayloadLength());
        settings.WritePayload(destination);
    }

    /// <summary>Appends a CANCEL_PUSH frame.</summary>
    public static void WriteCancelPushFrame(IBufferWriter<byte> destination, long pushId) =>
        WriteSingleIntegerFrame(destination, Http3FrameType.CancelPush, pushId);

    /// <summary>Appends a GOAWAY frame (a stream ID from a server, a push ID from a client).</summary>
    public static void WriteGoAwayFrame(IBufferWriter<byte> destination, long id) =>
        WriteSingleIntegerFrame(destination, Http3FrameType.GoAway, id);

    /// <summary>Appends a MAX_PUSH_ID frame.</summary>
    public static void WriteMaxPushIdFrame(IBufferWriter<byte> destination, long pushId) =>
        WriteSingleIntegerFrame(destination, Http3FrameType.MaxPushId, pushId);

    /// <summary>Appends a PUSH_PROMISE frame.</summary>
    public static void WritePushPromiseFrame(IBufferWriter<byte> destination, long pushId, ReadOnlySpan<byte> encodedFieldSection)
    {
        WriteFrameHeader(destination, Http3FrameType.PushPromise, Http3VarInt.GetLength(pushId) + encodedFieldSection.Length);
        Http3VarInt.Write(destination, pushId);
        destination.Write(encodedFieldSection);
    }

    /// <summary>
    /// Appends a reserved (grease) frame of type 0x1f * <paramref name="n"/> + 0x21, which receivers must ignore
    /// (RFC 9114 §7.2.8); usable as padding.
    /// </summary>
    public static void WriteReservedFrame(IBufferWriter<byte> destination, long n, ReadOnlySpan<byte> payload)
    {
        WriteFrameHeader(destination, Http3Reserved.GetValue(n), payload.Length);
        destination.Write(payload);
    }

    /// <summary>Appends a unidirectional stream header (the stream type).</summary>
    public static void WriteStreamType(IBufferWriter<byte> destination, long streamType)
    {
        ArgumentNullException.ThrowIfNull(destination);
        Http3VarInt.Write(destination, streamType);
    }

    private static void WriteSingleIntegerFrame(IBufferWriter<byte> destination, long type, long value)
    {
        WriteFrameHeader(destination, type, Http3VarInt.GetLength(value));
        Http3VarInt.Write(destination, value);
    }
}
