using KestrelQuic.Frames;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Frames;

internal delegate void FrameWriteAction(ref SpanWriter w);

/// <summary>One valid encoding of a frame type, produced by <see cref="FrameWriter"/>.</summary>
internal sealed record FrameSample(string Name, ulong RawType, byte[] Bytes, int ExpectedLength, bool ImplicitLength)
{
    public override string ToString() => Name;
}

internal static class FrameSamples
{
    public static readonly byte[] Token16 = Convert.FromHexString("00112233445566778899aabbccddeeff");
    public static readonly byte[] PathData = Convert.FromHexString("0102030405060708");
    public static readonly byte[] Cid8 = Convert.FromHexString("8394c8f03e515708");
    public static readonly byte[] Payload = Convert.FromHexString("48656c6c6f2c20515549432100");

    public static byte[] Encode(int capacity, FrameWriteAction action)
    {
        byte[] buffer = new byte[capacity];
        var w = new SpanWriter(buffer);
        action(ref w);
        return w.Written.ToArray();
    }

    public static RangeSet AckRanges()
    {
        var set = new RangeSet();
        set.Add(0, 3);
        set.Add(10, 11);
        set.Add(20, 400);
        set.Add(100000, 100005);
        return set;
    }

    /// <summary>One sample for every frame type (and every STREAM/DATAGRAM variant).</summary>
    public static List<FrameSample> All()
    {
        var list = new List<FrameSample>();

        void Add(string name, ulong rawType, int expectedLength, FrameWriteAction action, bool implicitLength = false) =>
            list.Add(new FrameSample(name, rawType, Encode(256, action), expectedLength, implicitLength));

        Add("PADDING", 0x00, 5, (ref SpanWriter w) => FrameWriter.WritePadding(ref w, 5), implicitLength: true);
        Add("PING", 0x01, FrameWriter.GetPingLength(), (ref SpanWriter w) => FrameWriter.WritePing(ref w), implicitLength: true);
        RangeSet ranges = AckRanges();
        Add("ACK", 0x02, FrameWriter.GetAckLength(ranges, 1234, 100, null),
            (ref SpanWriter w) => FrameWriter.WriteAck(ref w, ranges, 1234, 100, null));
        Add("ACK_ECN", 0x03, FrameWriter.GetAckLength(ranges, 1234, 100, (7, 8, 70000)),
            (ref SpanWriter w) => FrameWriter.WriteAck(ref w, ranges, 1234, 100, (7, 8, 70000)));
        Add("RESET_STREAM", 0x04, FrameWriter.GetResetStreamLength(4, 0x1234, 1_000_000),
            (ref SpanWriter w) => FrameWriter.WriteResetStream(ref w, 4, 0x1234, 1_000_000));
        Add("STOP_SENDING", 0x05, FrameWriter.GetStopSendingLength(8, 77),
            (ref SpanWriter w) => FrameWriter.WriteStopSending(ref w, 8, 77));
        Add("CRYPTO", 0x06, FrameWriter.GetCryptoLength(1000, Payload.Length),
            (ref SpanWriter w) => FrameWriter.WriteCrypto(ref w, 1000, Payload));
        Add("NEW_TOKEN", 0x07, FrameWriter.GetNewTokenLength(Token16.Length),
            (ref SpanWriter w) => FrameWriter.WriteNewToken(ref w, Token16));
        for (int bits = 0; bits < 8; bits++)
        {
            bool off = (bits & 4) != 0, len = (bits & 2) != 0, fin = (bits & 1) != 0;
            ulong offset = off ? 70000UL : 0UL;
            Add($"STREAM_0x{8 + bits:x2}", (ulong)(8 + bits), FrameWriter.GetStreamLength(5, offset, Payload.Length, len),
                (ref SpanWriter w) => FrameWriter.WriteStream(ref w, 5, offset, Payload, fin, len), implicitLength: !len);
        }

        Add("MAX_DATA", 0x10, FrameWriter.GetMaxDataLength(1UL << 40), (ref SpanWriter w) => FrameWriter.WriteMaxData(ref w, 1UL << 40));
        Add("MAX_STREAM_DATA", 0x11, FrameWriter.GetMaxStreamDataLength(3, 65536),
            (ref SpanWriter w) => FrameWriter.WriteMaxStreamData(ref w, 3, 65536));
        Add("MAX_STREAMS_BIDI", 0x12, FrameWriter.GetMaxStreamsLength(100), (ref SpanWriter w) => FrameWriter.WriteMaxStreams(ref w, true, 100));
        Add("MAX_STREAMS_UNI", 0x13, FrameWriter.GetMaxStreamsLength(1UL << 60),
            (ref SpanWriter w) => FrameWriter.WriteMaxStreams(ref w, false, 1UL << 60));
        Add("DATA_BLOCKED", 0x14, FrameWriter.GetDataBlockedLength(16384), (ref SpanWriter w) => FrameWriter.WriteDataBlocked(ref w, 16384));
        Add("STREAM_DATA_BLOCKED", 0x15, FrameWriter.GetStreamDataBlockedLength(7, 99),
            (ref SpanWriter w) => FrameWriter.WriteStreamDataBlocked(ref w, 7, 99));
        Add("STREAMS_BLOCKED_BIDI", 0x16, FrameWriter.GetStreamsBlockedLength(10), (ref SpanWriter w) => FrameWriter.WriteStreamsBlocked(ref w, true, 10));
        Add("STREAMS_BLOCKED_UNI", 0x17, FrameWriter.GetStreamsBlockedLength(300), (ref SpanWriter w) => FrameWriter.WriteStreamsBlocked(ref w, false, 300));
        Add("NEW_CONNECTION_ID", 0x18, FrameWriter.GetNewConnectionIdLength(9, 2, Cid8.Length),
            (ref SpanWriter w) => FrameWriter.WriteNewConnectionId(ref w, 9, 2, Cid8, Token16));
        Add("RETIRE_CONNECTION_ID", 0x19, FrameWriter.GetRetireConnectionIdLength(1_000), (ref SpanWriter w) => FrameWriter.WriteRetireConnectionId(ref w, 1_000));
        Add("PATH_CHALLENGE", 0x1a, FrameWriter.GetPathChallengeLength(), (ref SpanWriter w) => FrameWriter.WritePathChallenge(ref w, PathData));
        Add("PATH_RESPONSE", 0x1b, FrameWriter.GetPathResponseLength(), (ref SpanWriter w) => FrameWriter.WritePathResponse(ref w, PathData));
        Add("CONNECTION_CLOSE", 0x1c, FrameWriter.GetConnectionCloseLength(0x0a, 0x06, Payload.Length),
            (ref SpanWriter w) => FrameWriter.WriteConnectionClose(ref w, Protocol.TransportErrorCode.ProtocolViolation, 0x06, Payload));
        Add("CONNECTION_CLOSE_APP", 0x1d, FrameWriter.GetApplicationCloseLength(0x4242, Payload.Length),
            (ref SpanWriter w) => FrameWriter.WriteApplicationClose(ref w, 0x4242, Payload));
        Add("HANDSHAKE_DONE", 0x1e, FrameWriter.GetHandshakeDoneLength(), (ref SpanWriter w) => FrameWriter.WriteHandshakeDone(ref w), implicitLength: true);
        Add("DATAGRAM", 0x30, FrameWriter.GetDatagramLength(Payload.Length, false),
            (ref SpanWriter w) => FrameWriter.WriteDatagram(ref w, Payload, false), implicitLength: true);
        Add("DATAGRAM_LEN", 0x31, FrameWriter.GetDatagramLength(Payload.Length, true),
            (ref SpanWriter w) => FrameWriter.WriteDatagram(ref w, Payload, true));
        return list;
    }

    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (FrameSample s in All()) data.Add(s.Name);
        return data;
    }

    public static FrameSample Get(string name) => All().Single(s => s.Name == name);
}
