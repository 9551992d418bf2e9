using BenchmarkDotNet.Attributes;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Wire;

namespace KestrelQuic.Benchmarks;

/// <summary>
/// ACK processing (RFC 9002 §6): 128 packets sent, then one ACK with 64 ranges (every other packet), which
/// acknowledges half and declares the gaps lost, then an ACK for the rest.
/// </summary>
[MemoryDiagnoser]
public class RecoveryBenchmarks : ILossDetectionHost
{
    private const int Packets = 128;
    private readonly ValueRange[] _sparse = new ValueRange[Packets / 2];
    private readonly ValueRange[] _all = new ValueRange[1];
    private LossDetection _loss = null!;
    private long _nextPacketNumber;
    private long _now;
    private int _acknowledged;
    private int _lost;

    [GlobalSetup]
    public void Setup()
    {
        var rtt = new RttEstimator(TimeSpan.FromMilliseconds(20).Ticks);
        _loss = new LossDetection(rtt, new CubicCongestionController(1200));
        _now = TimeSpan.FromSeconds(1).Ticks;
    }

    [Benchmark(OperationsPerInvoke = Packets)]
    public int SendAndAcknowledgeWithGaps()
    {
        var context = new LossDetectionContext { HandshakeConfirmed = true, PeerCompletedAddressValidation = true, HasOneRttKeys = true, MaxAckDelay = TimeSpan.FromMilliseconds(25).Ticks };
        long first = _nextPacketNumber;
        for (int i = 0; i < Packets; i++)
        {
            SentPacket p = _loss.RentPacket();
            p.PacketNumber = _nextPacketNumber++;
            p.Space = PacketNumberSpace.ApplicationData;
            p.AckEliciting = true;
            p.InFlight = true;
            p.SentBytes = 1200;
            p.TimeSent = _now;
            p.LargestAcknowledgedInPacket = -1;
            _loss.OnPacketSent(p, _now);
        }

        _now += TimeSpan.FromMilliseconds(20).Ticks;
        for (int i = 0; i < _sparse.Length; i++)
        {
            // Descending order, as in an ACK frame; odd packet numbers acknowledged.
            long pn = first + Packets - 1 - 2 * i;
            _sparse[i] = new ValueRange(pn, pn + 1);
        }

        _loss.OnAckReceived(PacketNumberSpace.ApplicationData, _sparse, 0, _now, this, context, out _);
        _all[0] = new ValueRange(first, first + Packets);
        _loss.OnAckReceived(PacketNumberSpace.ApplicationData, _all, 0, _now, this, context, out _);
        return _acknowledged + _lost;
    }

    void ILossDetectionHost.OnPacketAcknowledged(SentPacket packet) => _acknowledged++;

    void ILossDetectionHost.OnPacketLost(SentPacket packet) => _lost++;
}
