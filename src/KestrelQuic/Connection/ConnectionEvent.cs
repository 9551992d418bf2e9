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

    /// <summary>Validation of a new path gave up after its retries (RFC 9000 §8.2.4); a server fell back to the previous peer address.</summary>
    PathValidationFailed,

    /// <summary>Server with deferred configuration: the ClientHello arrived (see <see cref="QuicConnectionCore.ClientHello"/>); call <see cref="QuicConnectionCore.ResumeHandshake"/>.</summary>
    ClientHelloReceived,

    /// <summary>The connection is over: see the connection's <see cref="QuicConnectionCore.CloseReason"/>.</summary>
    Terminated,
}

/// <summary>One connection event. Allocation-free except the payload of datagrams, tickets and tokens.</summary>
internal readonly record struct ConnectionEvent(ConnectionEventKind Kind, ulong StreamId = 0, ulong ErrorCode = 0, byte[]? Data = null, bool Flag = false);
