using KestrelQuic.Wire;

namespace KestrelQuic.Connection;

/// <summary>
/// Received packet numbers of one packet number space and the decision of when to acknowledge them
/// (RFC 9000 §13.2). Bounded: only <see cref="MaxRanges"/> ranges are kept, and ranges the peer has seen
/// acknowledged (an ACK of our ACK) are dropped.
/// </summary>
internal sealed class AckTracker
{
    /// <summary>Ranges kept and reported; older gaps are forgotten (a duplicate below them is then treated as new, which is harmless).</summary>
    public const int MaxRanges = 64;

    private readonly RangeSet _received = new(8);
    private int _ackElicitingSinceAck;
    private long _ackDeadline = long.MaxValue;
    private bool _immediate;

    /// <summary>Largest packet number received, -1 before any.</summary>
    public long LargestReceived { get; private set; } = -1;

    /// <summary>Time the largest packet number was received (for the ACK Delay field).</summary>
    public long LargestReceivedTime { get; private set; }

    /// <summary>Packet numbers below this were already acknowledged and acked back; anything below is a duplicate or too old.</summary>
    public long Floor { get; private set; }

    public RangeSet Received => _received;

    /// <summary>True when an ACK frame should be sent at or before <see cref="AckDeadline"/>.</summary>
    public bool AckPending => _ackDeadline != long.MaxValue;

    /// <summary>When the pending ACK must go out; <see cref="long.MaxValue"/> when none is pending.</summary>
    public long AckDeadline => _ackDeadline;

    /// <summary>True if there is anything to acknowledge at all (an ACK may be bundled with other frames).</summary>
    public bool HasUnacknowledged { get; private set; }

    public bool IsDuplicate(long packetNumber) => packetNumber < Floor || _received.Contains(packetNumber);

    /// <summary>
    /// Records a successfully processed packet. <paramref name="immediate"/> forces an immediate ACK (Initial/Handshake
    /// spaces). <paramref name="receivedTime"/> is when the packet arrived if that was before <paramref name="now"/>
    /// (it waited for its keys): RFC 9000 §13.2.5 counts that wait in the ACK Delay.
    /// </summary>
    public void OnPacketReceived(long packetNumber, bool ackEliciting, long now, long maxAckDelay, bool immediate, long? receivedTime = null)
    {
        bool outOfOrder = LargestReceived >= 0 && (packetNumber < LargestReceived || packetNumber > LargestReceived + 1);
        _received.Add(packetNumber);
        _received.TrimToCount(MaxRanges);
        if (packetNumber > LargestReceived)
        {
            LargestReceived = packetNumber;
            LargestReceivedTime = receivedTime ?? now;
        }

        HasUnacknowledged = true;
        if (!ackEliciting)
        {
            return;
        }

        _ackElicitingSinceAck++;

        // RFC 9000 §13.2.1/§13.2.2: ack immediately in the handshake spaces, on reordering (gap), and for every
        // second ack-eliciting packet; otherwise within max_ack_delay.
        if (immediate || outOfOrder || _ackElicitingSinceAck >= 2)
        {
            _immediate = true;
            _ackDeadline = now;
        }
        else if (_ackDeadline == long.MaxValue)
        {
            _ackDeadline = now + maxAckDelay;
        }
    }

    /// <summary>Whether an ACK-only packet is warranted now.</summary>
    public bool ShouldSendAck(long now) => _immediate || _ackDeadline <= now;

    /// <summary>Called after an ACK frame for this space was put in a packet.</summary>
    public void OnAckSent()
    {
        _ackElicitingSinceAck = 0;
        _ackDeadline = long.MaxValue;
        _immediate = false;
        HasUnacknowledged = false;
    }

    /// <summary>The peer acknowledged a packet of ours carrying an ACK whose largest was <paramref name="largestAcknowledged"/>: no need to report below it again (RFC 9000 §13.2.4).</summary>
    public void OnAckAcknowledged(long largestAcknowledged)
    {
        if (largestAcknowledged + 1 > Floor)
        {
            Floor = largestAcknowledged + 1;
            _received.RemoveBelow(Floor);
        }
    }

    /// <summary>The space was discarded: forget everything and keep no memory.</summary>
    public void Release()
    {
        Reset();
        _received.Release();
    }

    public void Reset()
    {
        _received.Clear();
        LargestReceived = -1;
        Floor = 0;
        OnAckSent();
    }
}
