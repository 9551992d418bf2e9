using System.Net;
using System.Security.Cryptography;
using KestrelQuic.Frames;
using KestrelQuic.Recovery;
using KestrelQuic.Wire;

namespace KestrelQuic.Connection;

internal sealed partial class QuicConnectionCore
{
    private const int MaxPendingPathResponses = 4;

    private readonly Queue<ulong> _pathResponses = new();
    private ulong? _pathChallengeData;
    private bool _pathChallengePending;
    private int _pathChallengeAttempts;
    private long _pathValidationDeadline = long.MaxValue;
    private EndPoint? _pathChallengeDestination;
    private EndPoint? _previousRemoteAddress;
    private readonly byte[] _pathFrameScratch = new byte[8];

    /// <summary>True while a new peer address awaits validation (RFC 9000 §8.2).</summary>
    public bool IsPathValidationInProgress => _pathChallengeData is not null;

    /// <summary>
    /// Client-side migration: the application moved to a new local address/port. Sends PATH_CHALLENGE on the new
    /// path and switches to a fresh peer connection ID when one is available (RFC 9000 §9.5).
    /// </summary>
    public void OnLocalAddressChanged(long now)
    {
        if (!_handshakeConfirmed) return;
        _connectionIds.RotatePeerId();
        ResetPathMtu(now); // a new path: its MTU is unknown
        StartPathValidation(now);
    }

    private void QueuePathResponse(ReadOnlySpan<byte> data)
    {
        // Bounded: a PATH_CHALLENGE flood must not grow memory (RFC 9000 §9.3.3 allows dropping).
        if (_pathResponses.Count >= MaxPendingPathResponses) return;
        _pathResponses.Enqueue(System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(data));
    }

    private void OnPathResponse(ReadOnlySpan<byte> data, long now)
    {
        if (_pathChallengeData is not ulong expected || System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(data) != expected) return;
        _pathChallengeData = null;
        _pathChallengePending = false;
        _pathValidationDeadline = long.MaxValue;
        _peerAddressValidated = true;
        _previousRemoteAddress = null;
        Emit(ConnectionEventKind.PathValidated);
    }

    private void OnPeerAddressChange(EndPoint newAddress, bool probingOnly, bool isLargestPacket, int datagramLength, long now)
    {
        if (probingOnly || !isLargestPacket || IsClient) return;
        if (_localParameters.DisableActiveMigration || !_handshakeConfirmed)
        {
            return; // RFC 9000 §9: migration before confirmation, or when disabled, is not honoured
        }

        bool portOnly = newAddress is IPEndPoint n && RemoteAddress is IPEndPoint o && n.Address.Equals(o.Address);
        _previousRemoteAddress = RemoteAddress;
        RemoteAddress = newAddress;
        ResetPathMtu(now); // a new path: its MTU is unknown
        // New path: anti-amplification applies again until validated (RFC 9000 §9.3).
        _peerAddressValidated = false;
        _bytesReceivedOnPath = datagramLength;
        _bytesSentOnPath = 0;
        if (!portOnly)
        {
            // RFC 9000 §9.4: a new IP address means a new path: reset congestion state and RTT.
            _rtt.Reset();
            _congestion.Reset();
        }

        _connectionIds.RotatePeerId();
        StartPathValidation(now);
    }

    private void StartPathValidation(long now)
    {
        _pathChallengeData = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
        _pathChallengePending = true;
        _pathChallengeAttempts = 0;
        _pathValidationDeadline = now + PathValidationProbeTimeout();
    }

    /// <summary>
    /// The PATH_CHALLENGE retransmission interval; validation is abandoned after three of them (RFC 9000 §8.2.4:
    /// three times the larger of the current PTO and the PTO of a new path, computed from kInitialRtt). The new path
    /// has no RTT sample and may be far slower than the current one: a loopback PTO of a few milliseconds would
    /// abandon a perfectly good path under a little load and send everything back to an address that is gone.
    /// </summary>
    private long PathValidationProbeTimeout()
    {
        long current = _loss.GetProbeTimeoutDuration(Protocol.PacketNumberSpace.ApplicationData, LossContext);
        long initialRtt = _config.InitialRtt.Ticks;
        // smoothed_rtt = kInitialRtt, rttvar = kInitialRtt / 2 (RFC 9002 §5.3): PTO = 3 × kInitialRtt + max_ack_delay.
        long fresh = (3 * initialRtt) + LossContext.MaxAckDelay;
        return Math.Max(current, fresh);
    }

    private void HandlePathValidationTimeout(long now)
    {
        if (_pathChallengeData is null || now < _pathValidationDeadline) return;
        if (++_pathChallengeAttempts >= 3)
        {
            // Validation failed: fall back to the previous path if there was one (RFC 9000 §9.3.2).
            _pathChallengeData = null;
            _pathValidationDeadline = long.MaxValue;
            if (_previousRemoteAddress is not null)
            {
                RemoteAddress = _previousRemoteAddress;
                _previousRemoteAddress = null;
                _peerAddressValidated = true;
            }

            Emit(ConnectionEventKind.PathValidationFailed);
            return;
        }

        _pathChallengePending = true;
        _pathValidationDeadline = now + PathValidationProbeTimeout();
    }

    private bool WritePathFrames(ref SpanWriter w, SentPacket sent)
    {
        bool any = false;
        byte[] data = _pathFrameScratch;
        while (w.Remaining >= 9 && _pathResponses.TryDequeue(out ulong response))
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(data, response);
            FrameWriter.WritePathResponse(ref w, data);
            sent.AddFrame(new SentFrame { Kind = FrameKind.PathResponse });
            any = true;
        }

        if (_pathChallengePending && _pathChallengeData is ulong challenge && w.Remaining >= 9)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(data, challenge);
            FrameWriter.WritePathChallenge(ref w, data);
            sent.AddFrame(new SentFrame { Kind = FrameKind.PathChallenge });
            _pathChallengePending = false;
            any = true;
        }

        return any;
    }
}
