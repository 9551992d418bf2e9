using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Recovery;

/// <summary>
/// Loss detection and probe timeouts (RFC 9002 §6 and Appendix A). Sent packets are kept per packet number space
/// in packet number order in a ring, so acknowledging a range costs O(log n + acknowledged packets); packet
/// records are pooled and the steady state allocates nothing.
/// </summary>
internal sealed class LossDetection
{
    /// <summary>kPacketThreshold (RFC 9002 §6.1.1).</summary>
    public const int PacketThreshold = 3;

    /// <summary>kPersistentCongestionThreshold (RFC 9002 §7.6.1).</summary>
    public const int PersistentCongestionThreshold = 3;

    private readonly RttEstimator _rtt;
    private readonly ICongestionController _congestion;
    private readonly SpaceData[] _spaces = { new(), new(), new() };
    private readonly Stack<SentPacket> _pool = new();
    private long _firstRttSampleTime = long.MaxValue;

    public LossDetection(RttEstimator rtt, ICongestionController congestion)
    {
        _rtt = rtt;
        _congestion = congestion;
    }

    /// <summary>Consecutive probe timeouts without an acknowledgement (pto_count).</summary>
    public int PtoCount { get; private set; }

    /// <summary>When the loss detection timer fires; null when not armed.</summary>
    public long? LossDetectionTimer { get; private set; }

    public long BytesInFlight => _congestion.BytesInFlight;

    public int AckElicitingInFlight => _spaces[0].AckElicitingInFlight + _spaces[1].AckElicitingInFlight + _spaces[2].AckElicitingInFlight;

    public long LargestAcknowledged(PacketNumberSpace space) => _spaces[(int)space].LargestAcked;

    /// <summary>The largest packet number sent in <paramref name="space"/>, -1 if none.</summary>
    public long LargestSent(PacketNumberSpace space) => _spaces[(int)space].LargestSent;

    /// <summary>
    /// Records a packet number deliberately left unused (RFC 9000 §21.4): a peer that acknowledges it acknowledges
    /// what it never received (an optimistic ACK, to make us send faster than the path allows).
    /// </summary>
    public void OnPacketNumberSkipped(PacketNumberSpace space, long packetNumber)
    {
        SpaceData s = _spaces[(int)space];
        s.Skipped[s.SkippedNext] = packetNumber;
        s.SkippedNext = (s.SkippedNext + 1) % s.Skipped.Length;
    }

    public bool HasAckElicitingInFlight(PacketNumberSpace space) => _spaces[(int)space].AckElicitingInFlight > 0;

    public long TimeOfLastAckElicitingPacket(PacketNumberSpace space) => _spaces[(int)space].TimeOfLastAckEliciting;

    /// <summary>Number of packets of <paramref name="space"/> not yet acknowledged or declared lost.</summary>
    public int OutstandingPackets(PacketNumberSpace space) => _spaces[(int)space].Live;

    public SentPacket RentPacket()
    {
        if (_pool.TryPop(out SentPacket? p)) return p;
        return new SentPacket();
    }

    /// <summary>The connection went quiet: drop the pooled packet records (a busy connection may have pooled thousands).</summary>
    public void TrimPool()
    {
        _pool.Clear();
        _pool.TrimExcess();
    }

    /// <summary>Returns a packet that was rented but not sent.</summary>
    public void ReturnPacket(SentPacket packet)
    {
        packet.Reset();
        if (_pool.Count < 4096) _pool.Push(packet);
    }

    /// <summary>The PTO duration without backoff, for the closing period and path validation (RFC 9000 §10.2, §8.2.4).</summary>
    public long GetProbeTimeoutDuration(PacketNumberSpace space, in LossDetectionContext context)
        => _rtt.GetPtoDuration(space == PacketNumberSpace.ApplicationData && context.HandshakeConfirmed, context.MaxAckDelay);

    public void OnPacketSent(SentPacket packet, long now)
    {
        SpaceData s = _spaces[(int)packet.Space];
        s.Append(packet);
        if (packet.InFlight)
        {
            if (packet.AckEliciting)
            {
                s.TimeOfLastAckEliciting = now;
                s.AckElicitingInFlight++;
            }

            _congestion.OnPacketSent(now, packet.SentBytes);
        }
    }

    /// <summary>
    /// Processes the ranges of an ACK frame (half-open, descending). False with PROTOCOL_VIOLATION when it
    /// acknowledges a packet number never sent (RFC 9000 §13.1).
    /// </summary>
    public bool OnAckReceived(PacketNumberSpace space, ReadOnlySpan<ValueRange> ranges, long ackDelay, long now, ILossDetectionHost host, in LossDetectionContext context, out TransportError error)
    {
        error = default;
        if (ranges.IsEmpty) return true;
        SpaceData s = _spaces[(int)space];
        long largest = ranges[0].End - 1;
        if (largest > s.LargestSent)
        {
            error = new TransportError(TransportErrorCode.ProtocolViolation, 0x02, "ACK for a packet number never sent");
            return false;
        }

        foreach (long skipped in s.Skipped)
        {
            if (skipped < 0) continue;
            foreach (ValueRange r in ranges)
            {
                if (r.Contains(skipped))
                {
                    error = new TransportError(TransportErrorCode.ProtocolViolation, 0x02, "ACK for a skipped packet number (optimistic ACK)");
                    return false;
                }
            }
        }

        if (largest > s.LargestAcked) s.LargestAcked = largest;

        // Find the newly acknowledged packets; the largest one gives the RTT sample.
        SentPacket? largestNewlyAcked = null;
        bool anyAckEliciting = false;
        int newlyAcked = 0;
        foreach (ValueRange r in ranges)
        {
            for (int i = s.IndexOfFirstAtOrAbove(r.Start); i < s.Count; i++)
            {
                SentPacket? p = s.At(i);
                if (p is null) continue;
                if (p.PacketNumber >= r.End) break;
                newlyAcked++;
                anyAckEliciting |= p.AckEliciting;
                if (largestNewlyAcked is null || p.PacketNumber > largestNewlyAcked.PacketNumber) largestNewlyAcked = p;
            }
        }

        if (newlyAcked == 0) return true;

        if (largestNewlyAcked!.PacketNumber == largest && anyAckEliciting)
        {
            long latest = now - largestNewlyAcked.TimeSent;
            _rtt.UpdateRtt(latest, space == PacketNumberSpace.ApplicationData ? ackDelay : 0, context.HandshakeConfirmed, context.MaxAckDelay);
            if (_firstRttSampleTime == long.MaxValue) _firstRttSampleTime = now;
        }

        // Hand each newly acknowledged packet to the congestion controller and the connection, then recycle it.
        foreach (ValueRange r in ranges)
        {
            for (int i = s.IndexOfFirstAtOrAbove(r.Start); i < s.Count; i++)
            {
                SentPacket? p = s.At(i);
                if (p is null) continue;
                if (p.PacketNumber >= r.End) break;
                s.RemoveAt(i);
                if (p.InFlight)
                {
                    if (p.AckEliciting) s.AckElicitingInFlight--;
                    _congestion.OnPacketAcked(p.TimeSent, p.SentBytes, now, _rtt, appLimited: false);
                }

                host.OnPacketAcknowledged(p);
                ReturnPacket(p);
            }
        }

        s.Trim();
        DetectAndRemoveLostPackets(space, now, host, context.MaxAckDelay);

        // RFC 9002 §6.2.1: reset the PTO backoff, except on a client whose address the server has not validated yet.
        if (context.PeerCompletedAddressValidation) PtoCount = 0;
        return true;
    }

    /// <summary>Drops all state of a space whose keys were discarded (RFC 9002 §6.4): no loss, no congestion signal.</summary>
    public void OnPacketNumberSpaceDiscarded(PacketNumberSpace space)
    {
        SpaceData s = _spaces[(int)space];
        for (int i = 0; i < s.Count; i++)
        {
            SentPacket? p = s.At(i);
            if (p is null) continue;
            if (p.InFlight) _congestion.OnPacketDiscarded(p.SentBytes);
            ReturnPacket(p);
        }

        s.Clear();
        PtoCount = 0;
    }

    public void SetLossDetectionTimer(in LossDetectionContext context, long now)
    {
        (long lossTime, _) = EarliestLossTime();
        if (lossTime != long.MaxValue)
        {
            LossDetectionTimer = lossTime;
            return;
        }

        // A server blocked by the amplification limit cannot send probes anyway: its timer waits for more data.
        if (context.IsServer && context.IsAmplificationLimited)
        {
            LossDetectionTimer = null;
            return;
        }

        if (AckElicitingInFlight == 0 && context.PeerCompletedAddressValidation)
        {
            LossDetectionTimer = null;
            return;
        }

        (long ptoTime, _) = GetPtoTimeAndSpace(in context, now);
        LossDetectionTimer = ptoTime == long.MaxValue ? null : ptoTime;
    }

    public LossTimeoutResult OnLossDetectionTimeout(in LossDetectionContext context, long now, ILossDetectionHost host)
    {
        (long lossTime, PacketNumberSpace lossSpace) = EarliestLossTime();
        if (lossTime != long.MaxValue)
        {
            DetectAndRemoveLostPackets(lossSpace, now, host, context.MaxAckDelay);
            return default;
        }

        PacketNumberSpace probeSpace;
        if (AckElicitingInFlight == 0)
        {
            // Client anti-deadlock (RFC 9002 §6.2.2.1): nothing in flight but the server may be blocked by amplification.
            probeSpace = context.HasHandshakeKeys ? PacketNumberSpace.Handshake : PacketNumberSpace.Initial;
        }
        else
        {
            (_, probeSpace) = GetPtoTimeAndSpace(in context, now);
        }

        PtoCount++;
        return new LossTimeoutResult { ProbeRequired = true, ProbeSpace = probeSpace, ProbeCount = 2 };
    }

    private (long Time, PacketNumberSpace Space) EarliestLossTime()
    {
        long time = long.MaxValue;
        PacketNumberSpace space = PacketNumberSpace.Initial;
        for (int i = 0; i < _spaces.Length; i++)
        {
            if (_spaces[i].LossTime < time)
            {
                time = _spaces[i].LossTime;
                space = (PacketNumberSpace)i;
            }
        }

        return (time, space);
    }

    private (long Time, PacketNumberSpace Space) GetPtoTimeAndSpace(in LossDetectionContext context, long now)
    {
        long duration = _rtt.GetPtoDuration(false, 0) << Math.Min(PtoCount, 20);
        if (AckElicitingInFlight == 0)
        {
            return (now + duration, context.HasHandshakeKeys ? PacketNumberSpace.Handshake : PacketNumberSpace.Initial);
        }

        long ptoTime = long.MaxValue;
        PacketNumberSpace ptoSpace = PacketNumberSpace.Initial;
        for (int i = 0; i < _spaces.Length; i++)
        {
            SpaceData s = _spaces[i];
            if (s.AckElicitingInFlight == 0) continue;
            if (i == (int)PacketNumberSpace.ApplicationData)
            {
                // Application data is not probed before the handshake is confirmed (RFC 9002 §6.2.1). If lost Handshake
                // data waits behind 1-RTT packets that fill the congestion window, no ACK and no timer would ever free
                // it: probe the Handshake space instead.
                if (!context.HandshakeConfirmed)
                {
                    return ptoTime == long.MaxValue && context.HandshakeDataPending
                        ? (now + duration, PacketNumberSpace.Handshake)
                        : (ptoTime, ptoSpace);
                }

                duration += context.MaxAckDelay << Math.Min(PtoCount, 20);
            }

            long t = s.TimeOfLastAckEliciting + duration;
            if (t < ptoTime)
            {
                ptoTime = t;
                ptoSpace = (PacketNumberSpace)i;
            }
        }

        return (ptoTime, ptoSpace);
    }

    private void DetectAndRemoveLostPackets(PacketNumberSpace space, long now, ILossDetectionHost host, long maxAckDelay)
    {
        SpaceData s = _spaces[(int)space];
        s.LossTime = long.MaxValue;
        if (s.LargestAcked < 0) return;

        long lossDelay = Math.Max(9 * Math.Max(_rtt.LatestRtt, _rtt.SmoothedRtt) / 8, RttEstimator.Granularity);
        long lostSendTime = now - lossDelay;

        long largestLostTimeSent = long.MinValue;
        long earliestLostAckEliciting = long.MaxValue;
        long latestLostAckEliciting = long.MinValue;
        long firstLostPn = -1;
        long lastLostPn = -1;
        int lostCount = 0;
        bool anyInFlightLost = false;

        for (int i = 0; i < s.Count; i++)
        {
            SentPacket? p = s.At(i);
            if (p is null) continue;
            if (p.PacketNumber > s.LargestAcked) break;

            if (p.TimeSent <= lostSendTime || s.LargestAcked >= p.PacketNumber + PacketThreshold)
            {
                s.RemoveAt(i);
                lostCount++;
                if (firstLostPn < 0) firstLostPn = p.PacketNumber;
                lastLostPn = p.PacketNumber;
                if (p.InFlight)
                {
                    anyInFlightLost = true;
                    if (p.AckEliciting)
                    {
                        s.AckElicitingInFlight--;
                        if (p.TimeSent >= _firstRttSampleTime)
                        {
                            earliestLostAckEliciting = Math.Min(earliestLostAckEliciting, p.TimeSent);
                            latestLostAckEliciting = Math.Max(latestLostAckEliciting, p.TimeSent);
                        }
                    }

                    largestLostTimeSent = Math.Max(largestLostTimeSent, p.TimeSent);
                    _congestion.OnPacketLost(p.SentBytes);
                }

                host.OnPacketLost(p);
                ReturnPacket(p);
            }
            else
            {
                s.LossTime = Math.Min(s.LossTime, p.TimeSent + lossDelay);
            }
        }

        s.Trim();
        if (!anyInFlightLost) return;
        _congestion.OnCongestionEvent(largestLostTimeSent, now);

        // RFC 9002 §7.6: persistent congestion when ack-eliciting losses span more than the threshold period with
        // nothing acknowledged in between (the lost packet numbers are contiguous). The duration includes
        // max_ack_delay whatever the packet number space (§7.6.1).
        if (latestLostAckEliciting > earliestLostAckEliciting && lastLostPn - firstLostPn + 1 == lostCount)
        {
            long period = (_rtt.SmoothedRtt + Math.Max(4 * _rtt.RttVariance, RttEstimator.Granularity) + maxAckDelay) * PersistentCongestionThreshold;
            if (latestLostAckEliciting - earliestLostAckEliciting > period)
            {
                _congestion.OnPersistentCongestion();
            }
        }
    }

    /// <summary>Sent packets of one space, in packet number order, in a growable ring (holes are null until trimmed).</summary>
    private sealed class SpaceData
    {
        private const int InitialCapacity = 8;
        private const int ShrinkAbove = 1024;
        private SentPacket?[] _ring = new SentPacket?[InitialCapacity];
        private int _head;

        public int Count { get; private set; }

        public int Live { get; private set; }

        public long LargestSent { get; private set; } = -1;

        public long LargestAcked = -1;

        // The most recent packet numbers skipped on purpose (-1: none).
        public readonly long[] Skipped = [-1, -1, -1, -1];
        public int SkippedNext;
        public long LossTime = long.MaxValue;
        public long TimeOfLastAckEliciting;
        public int AckElicitingInFlight;

        public SentPacket? At(int index) => _ring[(_head + index) & (_ring.Length - 1)];

        public void Append(SentPacket p)
        {
            if (Count == _ring.Length) Grow();
            _ring[(_head + Count) & (_ring.Length - 1)] = p;
            Count++;
            Live++;
            if (p.PacketNumber > LargestSent) LargestSent = p.PacketNumber;
        }

        public void RemoveAt(int index)
        {
            _ring[(_head + index) & (_ring.Length - 1)] = null;
            Live--;
        }

        /// <summary>Drops leading holes.</summary>
        public void Trim()
        {
            while (Count > 0 && _ring[_head] is null)
            {
                _head = (_head + 1) & (_ring.Length - 1);
                Count--;
            }

            if (Count == 0 && _ring.Length > ShrinkAbove)
            {
                // A burst grew the ring; an idle connection should not keep it.
                _ring = new SentPacket?[InitialCapacity];
                _head = 0;
            }
        }

        /// <summary>Index of the first slot whose packet number is at least <paramref name="pn"/> (holes are skipped by the caller).</summary>
        public int IndexOfFirstAtOrAbove(long pn)
        {
            int lo = 0, hi = Count;
            while (lo < hi)
            {
                int mid = (lo + hi) >>> 1;
                long midPn = PacketNumberNear(mid);
                if (midPn < pn) lo = mid + 1;
                else hi = mid;
            }

            return lo;
        }

        public void Clear()
        {
            _ring = _ring.Length > InitialCapacity ? new SentPacket?[InitialCapacity] : _ring;
            Array.Clear(_ring);
            _head = 0;
            Count = 0;
            Live = 0;
            LossTime = long.MaxValue;
            AckElicitingInFlight = 0;
            TimeOfLastAckEliciting = 0;
        }

        // Holes have no packet: use the nearest live packet's number at or after the slot (packet numbers are sorted).
        private long PacketNumberNear(int index)
        {
            for (int i = index; i < Count; i++)
            {
                if (At(i) is SentPacket p) return p.PacketNumber;
            }

            return long.MaxValue;
        }

        private void Grow()
        {
            var bigger = new SentPacket?[_ring.Length * 2];
            for (int i = 0; i < Count; i++) bigger[i] = At(i);
            _ring = bigger;
            _head = 0;
        }
    }
}
