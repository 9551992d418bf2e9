using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.PacketProtection;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;

namespace KestrelQuic.Connection;

/// <summary>
/// Datagram packetization layer PMTU discovery (RFC 9000 §14.3, RFC 8899): once the handshake is confirmed, a
/// PING padded to the candidate size is sent on its own; an acknowledgement raises the path's datagram size, three
/// losses lower the search bound. Probes are not counted in flight, so their loss is no congestion signal
/// (RFC 9000 §14.4). The search restarts on a new path and is repeated every 10 minutes.
/// </summary>
internal sealed partial class QuicConnectionCore
{
    private const int MtuProbeMaxAttempts = 3;
    private const int MtuSearchPrecision = 20;
    private static readonly long MtuRaiseInterval = TimeSpan.FromMinutes(10).Ticks;

    private int _pathMaxDatagramSize;
    private int _mtuSearchHigh;
    private int _mtuProbeSize;
    private int _mtuProbeAttempts;
    private long _mtuProbePacketNumber = -1;
    private long _mtuNextProbeTime;
    private bool _mtuTriedUpperBound;

    /// <summary>The datagram size validated on the current path (for diagnostics and tests).</summary>
    public int PathMaxDatagramSize => _pathMaxDatagramSize == 0 ? _config.MaxDatagramSize : _pathMaxDatagramSize;

    /// <summary>Starts (or restarts, on a new path) the search from the base size.</summary>
    private void ResetPathMtu(long now)
    {
        _pathMaxDatagramSize = _config.MaxDatagramSize;
        _mtuSearchHigh = _config.PathMtuDiscoveryUpperBound;
        _mtuProbeSize = 0;
        _mtuProbeAttempts = 0;
        _mtuProbePacketNumber = -1;
        _mtuNextProbeTime = now;
        _mtuTriedUpperBound = false;
        _congestion.SetMaxDatagramSize(_pathMaxDatagramSize);
        _pacer.SetMaxDatagramSize(_pathMaxDatagramSize);
    }

    private int MtuSearchUpperBound()
    {
        int high = _mtuSearchHigh;
        if (_peerParameters is not null && _peerParameters.MaxUdpPayloadSize < (ulong)high) high = (int)_peerParameters.MaxUdpPayloadSize;
        return high;
    }

    /// <summary>Builds a probe datagram when one is due; 0 otherwise.</summary>
    private int TryBuildMtuProbe(Span<byte> buffer, long now)
    {
        if (_config.PathMtuDiscoveryUpperBound == 0 || !_handshakeConfirmed || State != ConnectionState.Established || IsPathValidationInProgress) return 0;
        if (_pathMaxDatagramSize == 0) ResetPathMtu(now);
        if (_mtuProbePacketNumber >= 0 || now < _mtuNextProbeTime) return 0;

        int high = MtuSearchUpperBound();
        if (high - _pathMaxDatagramSize < MtuSearchPrecision)
        {
            // Search done; look again later in case the path now carries more (RFC 8899 §5.1.1, PMTU_RAISE_TIMER).
            _mtuNextProbeTime = now + MtuRaiseInterval;
            _mtuSearchHigh = _config.PathMtuDiscoveryUpperBound;
            _mtuTriedUpperBound = false;
            return 0;
        }

        // Try the upper bound first (the common case: the path carries it), then bisect.
        int size = _mtuProbeAttempts > 0 ? _mtuProbeSize : _mtuTriedUpperBound ? (_pathMaxDatagramSize + high + 1) / 2 : high;
        if (size > buffer.Length || _congestion.CongestionWindow - _congestion.BytesInFlight < size) return 0;
        PacketProtectionKeys? keys = _oneRttKeys?.CurrentWrite;
        if (keys is null || _connectionIds.ActivePeer is not { } peer) return 0;

        PacketNumberSpaceState space = _spaces[2];
        long pn = space.NextPacketNumber;
        int pnLength = PacketNumberEncoding.GetLength(pn, _loss.LargestAcknowledged(PacketNumberSpace.ApplicationData));
        bool fixedBit = !(_peerParameters?.GreaseQuicBit ?? false) || (pn & 1) == 0;
        int headerLength = PacketHeaderWriter.WriteShortHeader(buffer, peer.ConnectionId, spinBit: false, _oneRttKeys!.KeyPhase, pn, pnLength, out int pnOffset, fixedBit);
        int payloadLength = size - headerLength - TagLength;
        Span<byte> payload = buffer.Slice(headerLength, payloadLength);
        payload.Clear(); // PADDING
        payload[0] = (byte)FrameType.Ping;

        SentPacket sent = _loss.RentPacket();
        sent.PacketNumber = pn;
        sent.Space = PacketNumberSpace.ApplicationData;
        sent.LargestAcknowledgedInPacket = -1;
        sent.AckEliciting = true;
        sent.InFlight = false;
        sent.AddFrame(new SentFrame { Kind = FrameKind.Ping, Value = 2, Value2 = size });
        var p = new PendingPacket
        {
            Start = 0,
            PacketNumberOffset = pnOffset,
            PacketNumberLength = pnLength,
            PayloadLength = payloadLength,
            LengthFieldOffset = -1,
            Keys = keys,
            Sent = sent,
            Type = PacketType.OneRtt,
        };
        int length = PacketProtector.Protect(keys, buffer.Slice(0, size), pnOffset, pnLength, payloadLength, pn);
        sent.SentBytes = length;
        sent.TimeSent = now;
        OnPacketSent(ref p, now);
        _mtuProbeSize = size;
        _mtuProbePacketNumber = pn;
        _mtuTriedUpperBound = true;
        Statistics.DatagramsSent++;
        Statistics.BytesSent += length;
        _bytesSentOnPath += length;
        _loss.SetLossDetectionTimer(LossContext, now);
        return length;
    }

    private void OnMtuProbeAcknowledged(long size)
    {
        if (size <= _pathMaxDatagramSize) return;
        _pathMaxDatagramSize = (int)size;
        _mtuProbePacketNumber = -1;
        _mtuProbeAttempts = 0;
        _congestion.SetMaxDatagramSize(_pathMaxDatagramSize);
        _pacer.SetMaxDatagramSize(_pathMaxDatagramSize);
        Statistics.PathMtuUpdates++;
    }

    private void OnMtuProbeLost(long size)
    {
        _mtuProbePacketNumber = -1;
        if (size != _mtuProbeSize) return;
        if (++_mtuProbeAttempts < MtuProbeMaxAttempts)
        {
            _mtuNextProbeTime = 0; // retry the same size
            return;
        }

        // That size does not get through: search below it.
        _mtuProbeAttempts = 0;
        _mtuSearchHigh = (int)size - 1;
        _mtuNextProbeTime = 0;
    }
}
