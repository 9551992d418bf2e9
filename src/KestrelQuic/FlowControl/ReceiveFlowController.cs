namespace KestrelQuic.FlowControl;

/// <summary>
/// Credit this endpoint grants (RFC 9000 §4.1, §4.2): enforces the advertised limit against received data and
/// decides when to advertise more. The window auto-tunes: when the previous update went out less than two RTTs
/// before the next one is needed, the sender is limited by the window rather than by the application, so the
/// window doubles (up to <see cref="MaxWindow"/>).
/// </summary>
internal sealed class ReceiveFlowController
{
    // Updates closer together than this many smoothed RTTs mean the window is too small for the BDP.
    private const int AutoTuneRttFactor = 2;

    private long _lastUpdateTime;
    private bool _hasSentUpdate;
    private bool _grownForCurrentUpdate;
    private bool _resendPending;

    public ReceiveFlowController(long initialWindow, long maxWindow)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(initialWindow);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWindow, initialWindow);
        Window = initialWindow;
        MaxWindow = maxWindow;
        MaxData = initialWindow;
    }

    /// <summary>The limit currently advertised to the peer (initially the transport parameter).</summary>
    public long MaxData { get; private set; }

    /// <summary>Highest offset received (stream) or the sum of the highest offsets of all streams (connection).</summary>
    public long HighestReceived { get; private set; }

    /// <summary>Bytes consumed by the application (or released without being read, e.g. after a reset).</summary>
    public long Consumed { get; private set; }

    /// <summary>The credit advertised beyond <see cref="Consumed"/> in each update.</summary>
    public long Window { get; private set; }

    public long MaxWindow { get; }

    /// <summary>Stream level: the peer sent data up to <paramref name="highestOffset"/>. False (nothing changes) on FLOW_CONTROL_ERROR.</summary>
    public bool TryReceive(long highestOffset)
    {
        if (highestOffset > MaxData) return false;
        if (highestOffset > HighestReceived) HighestReceived = highestOffset;
        return true;
    }

    /// <summary>Connection level: a stream's highest received offset grew by <paramref name="bytes"/>. False (nothing changes) on FLOW_CONTROL_ERROR.</summary>
    public bool TryReceiveDelta(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        return TryReceive(HighestReceived + bytes);
    }

    /// <summary>True if receiving up to <paramref name="highestOffset"/> would stay within the limit.</summary>
    public bool CanReceive(long highestOffset) => highestOffset <= MaxData;

    public void OnConsumed(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Consumed += bytes;
    }

    /// <summary>
    /// True when a MAX_DATA / MAX_STREAM_DATA frame should be sent with <paramref name="newMaxData"/>: the unused
    /// credit fell below half the window, or a previous update was lost. Auto-tuning may grow the window here
    /// (at most once per sent update), so the caller should send the frame when it gets true.
    /// </summary>
    public bool ShouldSendUpdate(long now, long smoothedRtt, out long newMaxData)
    {
        bool needed = MaxData - Consumed < Window / 2;
        if (needed && _hasSentUpdate && !_grownForCurrentUpdate && Window < MaxWindow
            && now - _lastUpdateTime < AutoTuneRttFactor * smoothedRtt)
        {
            Window = Math.Min(MaxWindow, Window * 2);
            _grownForCurrentUpdate = true;
        }

        newMaxData = Math.Max(MaxData, Consumed + Window);
        return (needed && newMaxData > MaxData) || _resendPending;
    }

    /// <summary>
    /// Raises the window to at least <paramref name="window"/> (bounded by <see cref="MaxWindow"/>); the connection
    /// uses it to keep its window above the (auto-tuned) stream windows. Takes effect with the next update.
    /// </summary>
    public void EnsureWindowAtLeast(long window)
    {
        if (window > Window) Window = Math.Min(window, MaxWindow);
    }

    /// <summary>The update carrying <paramref name="newMax"/> was sent at <paramref name="now"/>; the limit is enforced from now on.</summary>
    public void OnUpdateSent(long newMax, long now)
    {
        if (newMax > MaxData) MaxData = newMax;
        _lastUpdateTime = now;
        _hasSentUpdate = true;
        _grownForCurrentUpdate = false;
        _resendPending = false;
    }

    /// <summary>A packet carrying an update was lost: the current limit is sent again (RFC 9000 §13.3).</summary>
    public void OnUpdateLost() => _resendPending = true;
}
