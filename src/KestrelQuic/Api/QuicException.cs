namespace KestrelQuic;

/// <summary>Why a QUIC operation failed (modelled on System.Net.Quic.QuicError).</summary>
public enum QuicError
{
    /// <summary>An internal failure of this implementation.</summary>
    InternalError,

    /// <summary>The connection was closed by the peer with an application error code (<see cref="QuicException.ApplicationErrorCode"/>).</summary>
    ConnectionAborted,

    /// <summary>The peer reset the stream or asked us to stop sending (<see cref="QuicException.ApplicationErrorCode"/>).</summary>
    StreamAborted,

    /// <summary>The handshake did not complete in time.</summary>
    ConnectionTimeout,

    /// <summary>The server refused the connection (CONNECTION_REFUSED, or no common version).</summary>
    ConnectionRefused,

    /// <summary>No QUIC version both sides support.</summary>
    VersionNegotiationError,

    /// <summary>The connection ended through its idle timeout.</summary>
    ConnectionIdle,

    /// <summary>The operation was aborted locally (the stream or connection was aborted or disposed).</summary>
    OperationAborted,

    /// <summary>A transport error closed the connection (<see cref="QuicException.TransportErrorCode"/>), e.g. a TLS failure (0x100 + alert).</summary>
    TransportError,

    /// <summary>The peer sent a stateless reset: it lost the connection's state.</summary>
    StatelessReset,

    /// <summary>A user callback (for instance the per-connection options callback) threw.</summary>
    CallbackError,
}

/// <summary>A QUIC failure with the error codes that the peer or the transport reported.</summary>
public sealed class QuicException : IOException
{
    /// <summary>Creates an exception.</summary>
    public QuicException(QuicError error, long? applicationErrorCode, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        QuicError = error;
        ApplicationErrorCode = applicationErrorCode;
    }

    /// <summary>The kind of failure.</summary>
    public QuicError QuicError { get; }

    /// <summary>The application error code from CONNECTION_CLOSE (0x1d), RESET_STREAM or STOP_SENDING, when there was one.</summary>
    public long? ApplicationErrorCode { get; }

    /// <summary>The transport error code (RFC 9000 §20.1) when a transport CONNECTION_CLOSE ended the connection.</summary>
    public long? TransportErrorCode { get; init; }

    /// <summary>Maps how a connection ended to the exception its pending operations fail with.</summary>
    internal static QuicException FromCloseReason(QuicCloseReason? reason, bool abortedLocally = false)
    {
        if (reason is null) return new QuicException(QuicError.OperationAborted, null, "The connection was aborted.");
        if (reason.IdleTimeout) return new QuicException(QuicError.ConnectionIdle, null, "The connection timed out from inactivity.");
        if (reason.StatelessReset) return new QuicException(QuicError.StatelessReset, null, "The peer sent a stateless reset.");
        if (reason.IsApplicationError)
        {
            return reason.ClosedByPeer || !abortedLocally
                ? new QuicException(reason.ClosedByPeer ? QuicError.ConnectionAborted : QuicError.OperationAborted, (long)reason.ErrorCode, $"The connection was closed: {reason}.")
                : new QuicException(QuicError.OperationAborted, (long)reason.ErrorCode, "The connection was aborted locally.");
        }

        QuicError kind = reason.ErrorCode switch
        {
            (ulong)Protocol.TransportErrorCode.ConnectionRefused => QuicError.ConnectionRefused,
            (ulong)Protocol.TransportErrorCode.VersionNegotiationError => QuicError.VersionNegotiationError,
            _ => QuicError.TransportError,
        };
        return new QuicException(kind, null, $"The connection was closed: {reason}.") { TransportErrorCode = (long)reason.ErrorCode };
    }
}
