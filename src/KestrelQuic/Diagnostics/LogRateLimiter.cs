namespace KestrelQuic.Diagnostics;

/// <summary>
/// Caps log lines a peer can cause (failed handshakes, protocol errors of accepted connections): at most
/// <see cref="Limit"/> per window at their normal level, the rest of the window at Debug. A fixed window keeps it to
/// two fields and no clock of its own (callers pass the endpoint's time). Not thread-safe: used under the endpoint lock.
/// </summary>
internal sealed class LogRateLimiter(int limit, TimeSpan window)
{
    private readonly long _windowTicks = window.Ticks;
    private long _windowStart = long.MinValue;
    private int _count;

    public int Limit => limit;

    public TimeSpan Window => window;

    /// <summary>
    /// Counts one line at <paramref name="now"/>. <see cref="LogRateDecision.Allow"/> while under the limit;
    /// <see cref="LogRateDecision.StartSuppressing"/> for the first line over it (announce the suppression once);
    /// <see cref="LogRateDecision.Suppress"/> after that until the window ends.
    /// </summary>
    public LogRateDecision Next(long now)
    {
        if (_windowStart == long.MinValue || now - _windowStart >= _windowTicks)
        {
            _windowStart = now;
            _count = 0;
        }

        _count++;
        return _count <= limit ? LogRateDecision.Allow : _count == limit + 1 ? LogRateDecision.StartSuppressing : LogRateDecision.Suppress;
    }

    /// <summary>When the current window ends (for the suppression notice).</summary>
    public long WindowEnd => _windowStart + _windowTicks;
}

internal enum LogRateDecision
{
    Allow,
    StartSuppressing,
    Suppress,
}
