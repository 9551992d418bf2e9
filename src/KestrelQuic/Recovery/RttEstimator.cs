namespace KestrelQuic.Recovery;

/// <summary>Round-trip time estimation (RFC 9002 §5). Times are ticks of 100 ns.</summary>
internal sealed class RttEstimator
{
    /// <summary>kGranularity: 1 ms (RFC 9002 §6.1.2).</summary>
    public const long Granularity = TimeSpan.TicksPerMillisecond;

    private readonly long _initialRtt;

    public RttEstimator(long initialRtt)
    {
        _initialRtt = initialRtt;
        Reset();
    }

    public long LatestRtt { get; private set; }

    public long SmoothedRtt { get; private set; }

    public long RttVariance { get; private set; }

    public long MinRtt { get; private set; }

    public bool HasSample { get; private set; }

    /// <summary>Forgets all samples (a new path, RFC 9000 §9.4).</summary>
    public void Reset()
    {
        LatestRtt = 0;
        SmoothedRtt = _initialRtt;
        RttVariance = _initialRtt / 2;
        MinRtt = 0;
        HasSample = false;
    }

    /// <summary>RFC 9002 §5.3. <paramref name="ackDelay"/> is the peer-reported delay; it is capped by max_ack_delay once the handshake is confirmed.</summary>
    public void UpdateRtt(long latestRtt, long ackDelay, bool handshakeConfirmed, long maxAckDelay)
    {
        LatestRtt = Math.Max(latestRtt, 1);
        if (!HasSample)
        {
            HasSample = true;
            MinRtt = LatestRtt;
            SmoothedRtt = LatestRtt;
            RttVariance = LatestRtt / 2;
            return;
        }

        MinRtt = Math.Min(MinRtt, LatestRtt);
        if (handshakeConfirmed) ackDelay = Math.Min(ackDelay, maxAckDelay);

        // Only subtract the ack delay if that does not take the sample below min_rtt.
        long adjusted = LatestRtt;
        if (LatestRtt >= MinRtt + ackDelay) adjusted = LatestRtt - ackDelay;

        RttVariance = (3 * RttVariance + Math.Abs(SmoothedRtt - adjusted)) / 4;
        SmoothedRtt = (7 * SmoothedRtt + adjusted) / 8;
    }

    /// <summary>smoothed_rtt + max(4 * rttvar, kGranularity) [+ max_ack_delay] (RFC 9002 §6.2.1).</summary>
    public long GetPtoDuration(bool includeMaxAckDelay, long maxAckDelay)
        => SmoothedRtt + Math.Max(4 * RttVariance, Granularity) + (includeMaxAckDelay ? maxAckDelay : 0);
}
