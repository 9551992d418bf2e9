namespace KestrelQuic.FlowControl;

/// <summary>
/// Credit granted by the peer (RFC 9000 §4.1): for a stream the limit is an absolute offset (MAX_STREAM_DATA),
/// for the connection it is the sum over all streams (MAX_DATA). <see cref="Used"/> counts new bytes sent.
/// </summary>
internal sealed class SendFlowController
{
    private long _blockedSentFor = -1;

    public SendFlowController(long initialMax)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialMax);
        MaxData = initialMax;
    }

    /// <summary>The peer's current limit.</summary>
    public long MaxData { get; private set; }

    /// <summary>Credit consumed: the highest offset sent (stream) or the total new bytes sent (connection).</summary>
    public long Used { get; private set; }

    public long Available => Math.Max(0, MaxData - Used);

    public bool IsBlocked => Used >= MaxData;

    /// <summary>Applies a MAX_DATA / MAX_STREAM_DATA value; decreases are ignored (RFC 9000 §4.1). True if the limit grew.</summary>
    public bool UpdateMax(long newMax)
    {
        if (newMax <= MaxData) return false;
        MaxData = newMax;
        return true;
    }

    public void Consume(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes > Available) throw new InvalidOperationException("Sending beyond the peer's flow control limit.");
        Used += bytes;
    }

    /// <summary>
    /// True when a DATA_BLOCKED / STREAM_DATA_BLOCKED frame should be sent: all credit is used and no such frame
    /// was sent yet for this limit (RFC 9000 §4.1). The caller decides whether it actually has data waiting,
    /// then reports the frame with <see cref="OnBlockedSent"/>.
    /// </summary>
    public bool ShouldSendBlocked(out long limit)
    {
        limit = MaxData;
        return Used >= MaxData && _blockedSentFor != MaxData;
    }

    public void OnBlockedSent(long limit) => _blockedSentFor = Math.Max(_blockedSentFor, limit);

    /// <summary>A packet carrying a blocked frame for <paramref name="limit"/> was lost: resend if still blocked at that limit.</summary>
    public void OnBlockedLost(long limit)
    {
        if (_blockedSentFor == limit) _blockedSentFor = -1;
    }
}
