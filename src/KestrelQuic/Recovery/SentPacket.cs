using KestrelQuic.Protocol;

namespace KestrelQuic.Recovery;

/// <summary>Kinds of frames recorded in a sent packet, so the connection can act when it is acknowledged or lost.</summary>
internal enum FrameKind : byte
{
    Padding,
    Ping,
    Ack,
    ResetStream,
    StopSending,
    Crypto,
    NewToken,
    Stream,
    MaxData,
    MaxStreamData,
    MaxStreamsBidi,
    MaxStreamsUni,
    DataBlocked,
    StreamDataBlocked,
    StreamsBlockedBidi,
    StreamsBlockedUni,
    NewConnectionId,
    RetireConnectionId,
    PathChallenge,
    PathResponse,
    ConnectionClose,
    HandshakeDone,
    Datagram,
}

/// <summary>One frame's worth of retransmission information.</summary>
internal struct SentFrame
{
    public FrameKind Kind;
    public bool Fin;
    public int Length;
    public ulong StreamId;
    public long Offset;
    public ulong Value;
    public long Value2;
}

/// <summary>A packet in flight (RFC 9002 Appendix A.1.1). Pooled by <see cref="LossDetection"/>: never kept after a host callback returns.</summary>
internal sealed class SentPacket
{
    private SentFrame[] _frames = new SentFrame[4];
    private int _frameCount;

    public long PacketNumber;
    public long TimeSent;
    public int SentBytes;
    public bool AckEliciting;
    public bool InFlight;
    public bool IsProbe;
    public PacketNumberSpace Space;

    /// <summary>Largest packet number acknowledged by an ACK frame in this packet, -1 if none.</summary>
    public long LargestAcknowledgedInPacket = -1;

    public Span<SentFrame> Frames => _frames.AsSpan(0, _frameCount);

    public void AddFrame(in SentFrame frame)
    {
        if (_frameCount == _frames.Length) Array.Resize(ref _frames, _frames.Length * 2);
        _frames[_frameCount++] = frame;
    }

    internal void Reset()
    {
        _frameCount = 0;
        PacketNumber = 0;
        TimeSent = 0;
        SentBytes = 0;
        AckEliciting = false;
        InFlight = false;
        IsProbe = false;
        LargestAcknowledgedInPacket = -1;
    }
}

/// <summary>Implemented by the connection: told once per packet when it is acknowledged or declared lost.</summary>
internal interface ILossDetectionHost
{
    void OnPacketAcknowledged(SentPacket packet);

    void OnPacketLost(SentPacket packet);
}

/// <summary>Connection state the loss detection timer depends on (RFC 9002 Appendix A.8).</summary>
internal readonly struct LossDetectionContext
{
    public bool HandshakeConfirmed { get; init; }

    /// <summary>Client: the server has validated our address (Handshake ACK received or handshake confirmed). Always true on servers.</summary>
    public bool PeerCompletedAddressValidation { get; init; }

    /// <summary>Server: blocked by the anti-amplification limit.</summary>
    public bool IsAmplificationLimited { get; init; }

    public bool HasHandshakeKeys { get; init; }

    /// <summary>
    /// Before confirmation: Handshake CRYPTO data (e.g. a lost client Finished) waits to be sent while nothing of that
    /// space is in flight, so only a probe, which ignores the congestion window, can carry it.
    /// </summary>
    public bool HandshakeDataPending { get; init; }

    public bool HasOneRttKeys { get; init; }

    public long MaxAckDelay { get; init; }

    public bool IsServer { get; init; }
}

/// <summary>Outcome of a loss detection timeout: losses were declared, or probes must be sent.</summary>
internal readonly struct LossTimeoutResult
{
    public bool ProbeRequired { get; init; }

    public PacketNumberSpace ProbeSpace { get; init; }

    public int ProbeCount { get; init; }
}
