using BenchmarkDotNet.Attributes;
using KestrelQuic.Crypto;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Benchmarks;

/// <summary>Sealing and opening one full-size 1-RTT packet (RFC 9001 §5), header protection included.</summary>
[MemoryDiagnoser]
public class PacketProtectionBenchmarks
{
    private const int PayloadLength = 1200 - 1 - 8 - 2 - PacketAead.TagLength;
    private readonly byte[] _packet = new byte[1500];
    private readonly byte[] _sealed = new byte[1500];
    private readonly byte[] _dcid = new byte[8];
    private PacketProtectionKeys _keys = null!;
    private int _pnOffset;
    private int _sealedLength;
    private long _packetNumber;

    [Params(CipherSuite.Aes128GcmSha256, CipherSuite.ChaCha20Poly1305Sha256)]
    public CipherSuite Suite { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        byte[] secret = new byte[32];
        new Random(1).NextBytes(secret);
        _keys = PacketProtectionKeys.FromSecret(Suite, secret, QuicVersion.Version1);
        _sealedLength = Build(_sealed, 1000);
    }

    private int Build(byte[] destination, long packetNumber)
    {
        int header = PacketHeaderWriter.WriteShortHeader(destination, _dcid, spinBit: false, keyPhase: false, packetNumber, 2, out _pnOffset);
        destination.AsSpan(header, PayloadLength).Fill(0x5a);
        return PacketProtector.Protect(_keys, destination, _pnOffset, 2, PayloadLength, packetNumber);
    }

    /// <summary>Header, AEAD seal and header protection of a 1,200-byte datagram.</summary>
    [Benchmark]
    public int Seal() => Build(_packet, ++_packetNumber);

    /// <summary>Header protection removal, packet number recovery and AEAD open (in place, on a fresh copy).</summary>
    [Benchmark]
    public int Open()
    {
        Span<byte> packet = _packet.AsSpan(0, _sealedLength);
        _sealed.AsSpan(0, _sealedLength).CopyTo(packet);
        if (!PacketProtector.TryRemoveHeaderProtection(_keys.HeaderProtection, packet, _pnOffset, 999, out long pn, out int pnLength)) return -1;
        return PacketProtector.TryDecryptPayload(_keys.Aead, packet, _pnOffset + pnLength, pn, out int payloadLength) ? payloadLength : -1;
    }

    /// <summary>The 5-byte header protection mask alone.</summary>
    [Benchmark]
    public byte HeaderProtectionMask()
    {
        Span<byte> mask = stackalloc byte[HeaderProtection.MaskLength];
        _keys.HeaderProtection.ComputeMask(_sealed.AsSpan(20, HeaderProtection.SampleLength), mask);
        return mask[0];
    }

    [GlobalCleanup]
    public void Cleanup() => _keys.Dispose();
}
