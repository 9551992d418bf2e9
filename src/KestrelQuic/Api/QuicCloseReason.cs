using KestrelQuic.Protocol;

namespace KestrelQuic;

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

    /// <summary>We gave up a handshake that did not complete in time (closed with application error 0).</summary>
    internal bool HandshakeTimeout { get; init; }

    /// <inheritdoc />
    public override string ToString() =>
        IdleTimeout ? "idle timeout" :
        StatelessReset ? "stateless reset" :
        $"{(ClosedByPeer ? "peer" : "local")} {(IsApplicationError ? "application" : "transport")} error 0x{ErrorCode:x}{(IsApplicationError ? string.Empty : $" ({ErrorName(ErrorCode)})")}: {Reason}";

    // RFC 9001 §4.8: 0x100-0x1ff carry a TLS alert.
    private static string ErrorName(ulong code) => code is >= 0x100 and <= 0x1ff
        ? "crypto_error " + Diagnostics.QuicMetrics.SnakeCase(((Tls.TlsAlert)(byte)(code - 0x100)).ToString())
        : ((TransportErrorCode)code).ToString();
}
