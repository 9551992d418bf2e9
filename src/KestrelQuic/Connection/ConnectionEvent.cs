using KestrelQuic.Protocol;

namespace KestrelQuic.Connection;

/// <summary>What happened on a connection, for the layer driving it.</summary>
internal enum ConnectionEventKind
{
    /// <summary>The TLS handshake completed (client: Finished sent; server: client Finished received).</summary>
    HandshakeCompleted,

    /// <summary>The handshake is confirmed (RFC 9001 §4.1.2).</summary>
    HandshakeConfirmed,

    /// <summary>The peer opened stream <see cref="ConnectionEvent.StreamId"/>.</summary>
    StreamOpened,

    /// <summary>Stream data (or the FIN) became readable.</summary>
    StreamReadable,

    /// <summary>Room appeared in the stream's send buffer or flow-control credit arrived.</summary>
    StreamWritable,

    /// <summary>The peer reset the stream (RESET_STREAM) with <see cref="ConnectionEvent.ErrorCode"/>.</summary>
    StreamReset,

    /// <summary>The peer asked us to stop sending (STOP_SENDING) with <see cref="ConnectionEvent.ErrorCode"/>.</summary>
    StreamStopSending,

    /// <summary>Both halves of the stream are finished; its state was released.</summary>
    StreamClosed,

    /// <summary>More locally initiated streams may be opened (MAX_STREAMS raised).</summary>
    StreamsAvailable,

    /// <summary>A DATAGRAM frame arrived; payload in <see cref="ConnectionEvent.Data"/>.</summary>
    DatagramReceived,

    /// <summary>A local connection ID was issued (route it) or retired (stop routing it): <see cref="ConnectionEvent.Data"/> and <see cref="ConnectionEvent.Flag"/> (true = added).</summary>
    ConnectionIdChanged,

    /// <summary>The client received a session ticket, serialized in <see cref="ConnectionEvent.Data"/>.</summary>
    SessionTicketReceived,

    /// <summary>The client received a NEW_TOKEN token in <see cref="ConnectionEvent.Data"/>.</summary>
    NewTokenReceived,

    /// <summary>A PING or datagram-level acknowledgement awaited by the application arrived.</summary>
    PingAcknowledged,

    /// <summary>1-RTT keys were updated (either side initiated).</summary>
    KeyUpdated,

    /// <summary>A new path was validated; the peer's address is now <see cref="ConnectionEvent.Data"/>-less (see the connection's RemoteAddress).</summary>
    PathValidated,

    /// <summary>Server with deferred configuration: the ClientHello arrived (see <see cref="QuicConnectionCore.ClientHello"/>); call <see cref="QuicConnectionCore.ResumeHandshake"/>.</summary>
    ClientHelloReceived,

    /// <summary>The connection is over: see the connection's <see cref="QuicConnectionCore.CloseReason"/>.</summary>
    Terminated,
}

/// <summary>One connection event. Allocation-free except the payload of datagrams, tickets and tokens.</summary>
internal readonly record struct ConnectionEvent(ConnectionEventKind Kind, ulong StreamId = 0, ulong ErrorCode = 0, byte[]? Data = null, bool Flag = false);

/// <summary>Why and how a connection ended.</summary>
public sealed record QuicCloseReason
{
    /// <summary>The error code: a <see cref="TransportErrorCode"/> when <see cref="IsApplicationError"/> is false.</summary>
    public ulong ErrorCode { get; init; }

    /// <summary>True for an application CONNECTION_CLOSE (0x1d).</summary>
    public bool IsApplicationError { get; init; }

    /// <summary>The frame type that triggered a transport error, 0 if none.</summary>
    public ulong FrameType { get; init; }

    /// <summary>The reason phrase.</summary>
    public string Reason { get; init; } = string.Empty;

    /// <summary>True when the peer closed the connection (we received CONNECTION_CLOSE or a stateless reset).</summary>
    public bool ClosedByPeer { get; init; }

    /// <summary>True when the connection ended through idle timeout (no CONNECTION_CLOSE was exchanged).</summary>
    public bool IdleTimeout { get; init; }

    /// <summary>True when the peer sent a stateless reset.</summary>
    public bool StatelessReset { get; init; }

    /// <inheritdoc />
    public override string ToString() =>
        IdleTimeout ? "idle timeout" :
        StatelessReset ? "stateless reset" :
        $"{(ClosedByPeer ? "peer" : "local")} {(IsApplicationError ? "application" : "transport")} error 0x{ErrorCode:x}{(IsApplicationError ? string.Empty : $" ({(TransportErrorCode)ErrorCode})")}: {Reason}";
}
