using BenchmarkDotNet.Attributes;
using KestrelQuic.Streams;

namespace KestrelQuic.Benchmarks;

/// <summary>Stream reassembly: 32 frames of 1,100 bytes arriving with every pair swapped, then read out.</summary>
[MemoryDiagnoser]
public class StreamBenchmarks
{
    private const int Frames = 32;
    private const int FrameLength = 1100;
    private readonly byte[] _data = new byte[FrameLength];
    private readonly byte[] _read = new byte[Frames * FrameLength];
    private readonly ReceiveBuffer _buffer = new(16 * 1024 * 1024);
    private long _offset;

    [Benchmark(OperationsPerInvoke = Frames)]
    public int ReassembleOutOfOrder()
    {
        for (int i = 0; i < Frames; i += 2)
        {
            _buffer.Write(_offset + (i + 1) * FrameLength, _data, fin: false);
            _buffer.Write(_offset + i * FrameLength, _data, fin: false);
        }

        _offset += Frames * FrameLength;
        int total = 0;
        int n;
        while ((n = _buffer.Read(_read)) > 0) total += n;
        return total;
    }
}
