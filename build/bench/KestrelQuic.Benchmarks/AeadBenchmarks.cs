using BenchmarkDotNet.Attributes;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;

namespace KestrelQuic.Benchmarks;

/// <summary>AES-128-GCM of a 1,200-byte 1-RTT payload: the AES-NI/PCLMULQDQ implementation against the platform's.</summary>
[MemoryDiagnoser]
public class AeadBenchmarks
{
    private readonly byte[] _header = new byte[20];
    private readonly byte[] _payload = new byte[1200];
    private readonly byte[] _tag = new byte[16];
    private PacketAead _aead = null!;
    private long _packetNumber;

    [Params(true, false)]
    public bool Intrinsics { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _aead = PacketAead.Create(CipherSuite.Aes128GcmSha256, new byte[16], new byte[12], Intrinsics);
        new Random(1).NextBytes(_payload);
    }

    [Benchmark]
    public void Seal() => _aead.Seal(++_packetNumber, _header, _payload, _tag);

    [Benchmark]
    public bool SealOpen()
    {
        long pn = ++_packetNumber;
        _aead.Seal(pn, _header, _payload, _tag);
        return _aead.TryOpen(pn, _header, _payload, _tag);
    }

    [GlobalCleanup]
    public void Cleanup() => _aead.Dispose();
}
