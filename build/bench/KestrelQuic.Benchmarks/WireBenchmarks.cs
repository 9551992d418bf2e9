using BenchmarkDotNet.Attributes;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Wire;

namespace KestrelQuic.Benchmarks;

/// <summary>Short-header parsing and the two frames that dominate a transfer: STREAM and ACK.</summary>
[MemoryDiagnoser]
public class WireBenchmarks
{
    private readonly byte[] _datagram = new byte[1200];
    private readonly byte[] _buffer = new byte[1500];
    private readonly byte[] _streamData = new byte[1100];
    private readonly RangeSet _ackRanges = new();
    private byte[] _streamFrame = null!;
    private byte[] _ackFrame = null!;

    [GlobalSetup]
    public void Setup()
    {
        byte[] dcid = [1, 2, 3, 4, 5, 6, 7, 8];
        PacketHeaderWriter.WriteShortHeader(_datagram, dcid, spinBit: false, keyPhase: false, 1234, 2, out _);

        // 32 ranges with gaps: a lossy path's ACK.
        for (long pn = 0; pn < 32 * 10; pn += 10) _ackRanges.Add(pn, pn + 7);

        var w = new SpanWriter(_buffer);
        FrameWriter.WriteStream(ref w, 4, 123_456_789, _streamData, fin: false, explicitLength: true);
        _streamFrame = w.Written.ToArray();
        w = new SpanWriter(_buffer);
        FrameWriter.WriteAck(ref w, _ackRanges, 100, 64, null);
        _ackFrame = w.Written.ToArray();
    }

    [Benchmark]
    public bool ParseShortHeader() => PacketHeaderParser.TryParse(_datagram, 8, out PacketHeader header) && header.Type == PacketType.OneRtt;

    [Benchmark]
    public int EncodeStreamFrame()
    {
        var w = new SpanWriter(_buffer);
        FrameWriter.WriteStream(ref w, 4, 123_456_789, _streamData, fin: false, explicitLength: true);
        return w.Position;
    }

    [Benchmark]
    public int DecodeStreamFrame() => Decode(_streamFrame);

    [Benchmark]
    public int EncodeAckFrame32Ranges()
    {
        var w = new SpanWriter(_buffer);
        FrameWriter.WriteAck(ref w, _ackRanges, 100, 64, null);
        return w.Position;
    }

    [Benchmark]
    public int DecodeAckFrame32Ranges() => Decode(_ackFrame);

    private static int Decode(byte[] payload)
    {
        var reader = new FrameReader(payload, PacketType.OneRtt);
        int frames = 0;
        while (reader.TryReadFrame(out Frame _, out _) == FrameReadStatus.Frame) frames++;
        return frames;
    }
}
