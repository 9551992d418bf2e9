namespace KestrelQuic.Recovery;

/// <summary>Congestion control algorithms available to connections.</summary>
public enum CongestionControlAlgorithm
{
    /// <summary>NewReno as specified for QUIC (RFC 9002 §7).</summary>
    NewReno,

    /// <summary>CUBIC (RFC 9438).</summary>
    Cubic,
}

/// <summary>A congestion controller: owns the congestion window and the bytes in flight.</summary>
internal interface ICongestionController
{
    long CongestionWindow { get; }

    long BytesInFlight { get; }

    long SlowStartThreshold { get; }

    bool InSlowStart { get; }

    long AvailableWindow { get; }

    bool InRecovery(long timeSent);

    void OnPacketSent(long now, int bytes);

    void OnPacketAcked(long timeSent, int bytes, long now, RttEstimator rtt, bool appLimited);

    /// <summary>Once per batch of losses (RFC 9002 §7.3.2): no further reduction within the same recovery period.</summary>
    void OnCongestionEvent(long timeSentOfLargestLost, long now);

    void OnPacketLost(int bytes);

    void OnPersistentCongestion();

    /// <summary>Keys were discarded: remove from flight without a congestion signal.</summary>
    void OnPacketDiscarded(int bytes);

    void OnEcnCeIncreased(long timeSentOfLargestAcked, long now);

    void SetMaxDatagramSize(int size);

    /// <summary>Back to initial state for a new path (bytes in flight are kept).</summary>
    void Reset();
}

internal static class CongestionControllerFactory
{
    public static ICongestionController Create(CongestionControlAlgorithm algorithm, int maxDatagramSize) => algorithm switch
    {
        CongestionControlAlgorithm.NewReno => new NewRenoCongestionController(maxDatagramSize),
        _ => new CubicCongestionController(maxDatagramSize),
    };
}

/// <summary>Shared window bookkeeping: slow start, recovery period, minimum window (RFC 9002 §7 and Appendix B).</summary>
internal abstract class CongestionControllerBase : ICongestionController
{
    private long _recoveryStartTime = long.MinValue;

    protected CongestionControllerBase(int maxDatagramSize)
    {
        MaxDatagramSize = maxDatagramSize;
        Reset();
    }

    protected int MaxDatagramSize { get; private set; }

    /// <summary>kInitialWindow (RFC 9002 §7.2).</summary>
    protected long InitialWindow => Math.Min(10L * MaxDatagramSize, Math.Max(14720L, 2L * MaxDatagramSize));

    /// <summary>kMinimumWindow (RFC 9002 §7.2).</summary>
    protected long MinimumWindow => 2L * MaxDatagramSize;

    public long CongestionWindow { get; protected set; }

    public long BytesInFlight { get; private set; }

    public long SlowStartThreshold { get; protected set; }

    public bool InSlowStart => CongestionWindow < SlowStartThreshold;

    public long AvailableWindow => Math.Max(0, CongestionWindow - BytesInFlight);

    public bool InRecovery(long timeSent) => timeSent <= _recoveryStartTime;

    public void OnPacketSent(long now, int bytes) => BytesInFlight += bytes;

    public void OnPacketAcked(long timeSent, int bytes, long now, RttEstimator rtt, bool appLimited)
    {
        BytesInFlight = Math.Max(0, BytesInFlight - bytes);
        // RFC 9002 §7.8: do not grow when the window was not the limit; nor during recovery.
        if (appLimited || InRecovery(timeSent)) return;
        if (InSlowStart)
        {
            CongestionWindow += bytes;
            return;
        }

        OnCongestionAvoidanceAck(bytes, now, rtt);
    }

    public void OnCongestionEvent(long timeSentOfLargestLost, long now)
    {
        if (InRecovery(timeSentOfLargestLost)) return;
        _recoveryStartTime = now;
        OnWindowReduction(now);
    }

    public void OnEcnCeIncreased(long timeSentOfLargestAcked, long now) => OnCongestionEvent(timeSentOfLargestAcked, now);

    public void OnPacketLost(int bytes) => BytesInFlight = Math.Max(0, BytesInFlight - bytes);

    public void OnPacketDiscarded(int bytes) => BytesInFlight = Math.Max(0, BytesInFlight - bytes);

    public virtual void OnPersistentCongestion()
    {
        CongestionWindow = MinimumWindow;
        _recoveryStartTime = long.MinValue;
    }

    public void SetMaxDatagramSize(int size)
    {
        MaxDatagramSize = size;
        CongestionWindow = Math.Max(CongestionWindow, MinimumWindow);
    }

    public virtual void Reset()
    {
        CongestionWindow = InitialWindow;
        SlowStartThreshold = long.MaxValue;
        _recoveryStartTime = long.MinValue;
    }

    protected abstract void OnCongestionAvoidanceAck(int bytes, long now, RttEstimator rtt);

    protected abstract void OnWindowReduction(long now);
}

/// <summary>NewReno (RFC 9002 §7.3, Appendix B): halve on loss, one datagram per window per RTT in congestion avoidance.</summary>
internal sealed class NewRenoCongestionController : CongestionControllerBase
{
    /// <summary>kLossReductionFactor.</summary>
    public const double LossReductionFactor = 0.5;

    private long _bytesAckedInAvoidance;

    public NewRenoCongestionController(int maxDatagramSize)
        : base(maxDatagramSize)
    {
    }

    protected override void OnCongestionAvoidanceAck(int bytes, long now, RttEstimator rtt)
    {
        _bytesAckedInAvoidance += bytes;
        if (_bytesAckedInAvoidance >= CongestionWindow)
        {
            _bytesAckedInAvoidance -= CongestionWindow;
            CongestionWindow += MaxDatagramSize;
        }
    }

    protected override void OnWindowReduction(long now)
    {
        SlowStartThreshold = Math.Max((long)(CongestionWindow * LossReductionFactor), MinimumWindow);
        CongestionWindow = SlowStartThreshold;
        _bytesAckedInAvoidance = 0;
    }
}

/// <summary>
/// CUBIC (RFC 9438): after a reduction the window follows W_cubic(t) = C·(t − K)³ + W_max, not below the
/// Reno-friendly estimate W_est; fast convergence lowers W_max when losses come before the previous maximum.
/// </summary>
internal sealed class CubicCongestionController : CongestionControllerBase
{
    /// <summary>C (RFC 9438 §5.1), in segments per second cubed.</summary>
    public const double C = 0.4;

    /// <summary>β_cubic (RFC 9438 §4.6).</summary>
    public const double Beta = 0.7;

    private const double AlphaCubic = 3 * (1 - Beta) / (1 + Beta);

    private double _wMax;          // bytes
    private double _k;             // seconds
    private long _epochStart = -1; // ticks
    private double _wEst;          // bytes
    private double _cwnd;          // bytes, fractional growth kept here

    public CubicCongestionController(int maxDatagramSize)
        : base(maxDatagramSize)
    {
    }

    /// <summary>W_max in bytes (for tests and diagnostics).</summary>
    public double WMax => _wMax;

    /// <summary>K in seconds.</summary>
    public double K => _k;

    /// <summary>W_cubic(t) in bytes, t in seconds since the start of the congestion avoidance epoch.</summary>
    public double WCubic(double t) => C * Math.Pow(t - _k, 3) * MaxDatagramSize + _wMax;

    public override void Reset()
    {
        base.Reset();
        _wMax = 0;
        _k = 0;
        _epochStart = -1;
        _wEst = 0;
        _cwnd = CongestionWindow;
    }

    public override void OnPersistentCongestion()
    {
        base.OnPersistentCongestion();
        _epochStart = -1;
        _wMax = 0;
        _cwnd = CongestionWindow;
    }

    protected override void OnCongestionAvoidanceAck(int bytes, long now, RttEstimator rtt)
    {
        if (_cwnd < CongestionWindow || _cwnd >= CongestionWindow + MaxDatagramSize) _cwnd = CongestionWindow;
        if (_epochStart < 0)
        {
            // Entering congestion avoidance without a prior reduction (RFC 9438 §4.2): start at the current window.
            _epochStart = now;
            _wMax = Math.Max(_wMax, CongestionWindow);
            _k = _wMax > CongestionWindow ? Math.Cbrt((_wMax - CongestionWindow) / MaxDatagramSize / C) : 0;
            _wEst = CongestionWindow;
        }

        double t = (now - _epochStart) / (double)TimeSpan.TicksPerSecond;
        double rttSeconds = rtt.SmoothedRtt / (double)TimeSpan.TicksPerSecond;
        double target = WCubic(t + rttSeconds);
        target = Math.Clamp(target, _cwnd, 1.5 * _cwnd);

        // Reno-friendly region (RFC 9438 §4.3).
        _wEst += AlphaCubic * MaxDatagramSize * bytes / _cwnd;
        if (WCubic(t) < _wEst)
        {
            _cwnd = Math.Max(_cwnd, _wEst);
        }
        else
        {
            _cwnd += (target - _cwnd) * bytes / _cwnd;
        }

        CongestionWindow = (long)_cwnd;
    }

    protected override void OnWindowReduction(long now)
    {
        double cwnd = CongestionWindow;
        // Fast convergence (RFC 9438 §4.7).
        _wMax = cwnd < _wMax ? cwnd * (1 + Beta) / 2 : cwnd;
        SlowStartThreshold = Math.Max((long)(cwnd * Beta), MinimumWindow);
        CongestionWindow = SlowStartThreshold;
        _cwnd = CongestionWindow;
        _k = Math.Cbrt(Math.Max(0, _wMax - CongestionWindow) / MaxDatagramSize / C);
        _epochStart = now;
        _wEst = CongestionWindow;
    }
}

/// <summary>
/// Pacer (RFC 9002 §7.7): a token bucket refilled at N·cwnd/smoothed_rtt (N = 1.25) with a burst allowance, so
/// datagrams are spread over the RTT without a wake-up per datagram.
/// </summary>
internal sealed class Pacer
{
    private const double N = 1.25;
    private const int BurstPackets = 10;

    private int _maxDatagramSize;
    private double _tokens;
    private long _lastUpdate = long.MinValue;

    public Pacer(int maxDatagramSize)
    {
        _maxDatagramSize = maxDatagramSize;
        _tokens = BurstPackets * maxDatagramSize;
    }

    public void SetMaxDatagramSize(int size) => _maxDatagramSize = size;

    /// <summary>Null when a packet of <paramref name="packetSize"/> may be sent now, otherwise the earliest time it may.</summary>
    public long? GetNextSendTime(long now, long congestionWindow, long smoothedRtt, int packetSize)
    {
        Refill(now, congestionWindow, smoothedRtt);
        if (_tokens >= packetSize) return null;
        double rate = Rate(congestionWindow, smoothedRtt);
        return now + Math.Max(1, (long)Math.Ceiling((packetSize - _tokens) / rate));
    }

    public void OnPacketSent(long now, int bytes, long congestionWindow, long smoothedRtt)
    {
        Refill(now, congestionWindow, smoothedRtt);
        _tokens = Math.Max(0, _tokens - bytes);
    }

    private double Capacity(long congestionWindow) => Math.Max(BurstPackets * (double)_maxDatagramSize, Math.Min(congestionWindow, 64.0 * _maxDatagramSize) / 4);

    private static double Rate(long congestionWindow, long smoothedRtt) => N * congestionWindow / Math.Max(1, smoothedRtt); // bytes per tick

    private void Refill(long now, long congestionWindow, long smoothedRtt)
    {
        if (_lastUpdate == long.MinValue || now < _lastUpdate)
        {
            _lastUpdate = now;
            return;
        }

        _tokens = Math.Min(Capacity(congestionWindow), _tokens + (now - _lastUpdate) * Rate(congestionWindow, smoothedRtt));
        _lastUpdate = now;
    }
}
