using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// Log messages of KestrelQuic (category "KestrelQuic"). Event ids are stable: add new ones, never renumber.
/// Nothing is logged per packet at Information or above. Events 4, 5 and 6 take their level from the caller: a server
/// logs its peers' failures at Information up to a rate, then at Debug (event 13 says so), so that a flood of failing
/// handshakes cannot flood the log.
/// </summary>
internal static partial class QuicLog
{
    public const string CategoryName = "KestrelQuic";

    [LoggerMessage(EventId = 1, EventName = "ConnectionAccepted", Level = LogLevel.Debug,
        Message = "Connection {ConnectionId} from {RemoteEndPoint} accepted (ALPN {ApplicationProtocol}, QUIC version {QuicVersion}).")]
    public static partial void ConnectionAccepted(ILogger logger, long connectionId, string? remoteEndPoint, string? applicationProtocol, string quicVersion);

    [LoggerMessage(EventId = 2, EventName = "ConnectionConnected", Level = LogLevel.Debug,
        Message = "Connection {ConnectionId} to {RemoteEndPoint} connected (ALPN {ApplicationProtocol}, QUIC version {QuicVersion}, resumed {Resumed}).")]
    public static partial void ConnectionConnected(ILogger logger, long connectionId, string? remoteEndPoint, string? applicationProtocol, string quicVersion, bool resumed);

    [LoggerMessage(EventId = 3, EventName = "ConnectionClosed", Level = LogLevel.Debug,
        Message = "Connection {ConnectionId} closed after {DurationMs} ms: {ErrorType} (error code {ErrorCode}, application {IsApplicationError}, by peer {ClosedByPeer}): {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, long connectionId, double durationMs, string errorType, string errorCode, bool isApplicationError, bool closedByPeer, string reason);

    [LoggerMessage(EventId = 4, EventName = "HandshakeFailed",
        Message = "Connection {ConnectionId} with {RemoteEndPoint}: handshake failed with TLS alert {TlsAlert} ({AlertCode}), sent by {Sender}: {Reason}")]
    public static partial void HandshakeFailedAlert(ILogger logger, LogLevel level, long connectionId, string? remoteEndPoint, string tlsAlert, int alertCode, string sender, string reason);

    [LoggerMessage(EventId = 5, EventName = "HandshakeIncomplete",
        Message = "Connection {ConnectionId} with {RemoteEndPoint} ended before its handshake completed: {ErrorType}: {Reason}")]
    public static partial void HandshakeIncomplete(ILogger logger, LogLevel level, long connectionId, string? remoteEndPoint, string errorType, string reason);

    [LoggerMessage(EventId = 6, EventName = "ProtocolError",
        Message = "Connection {ConnectionId} with {RemoteEndPoint}: transport error {ErrorType} ({ErrorCode}) on frame type {FrameType}, detected by {Detector}: {Reason}")]
    public static partial void ProtocolError(ILogger logger, LogLevel level, long connectionId, string? remoteEndPoint, string errorType, string errorCode, string frameType, string detector, string reason);

    [LoggerMessage(EventId = 7, EventName = "DatagramDropped", Level = LogLevel.Debug,
        Message = "Dropped a datagram of {Length} bytes from {RemoteEndPoint}: {DropReason}.")]
    public static partial void DatagramDropped(ILogger logger, int length, string? remoteEndPoint, string dropReason);

    [LoggerMessage(EventId = 8, EventName = "SecretsLogEnabled", Level = LogLevel.Warning,
        Message = "TLS secrets of every connection are written to {Path} ({Source}): anyone who can read it can decrypt the traffic. Use only for debugging.")]
    public static partial void SecretsLogEnabled(ILogger logger, string path, string source);

    [LoggerMessage(EventId = 9, EventName = "SecretsLogWriteFailed", Level = LogLevel.Warning,
        Message = "Could not write the secrets log {Path}.")]
    public static partial void SecretsLogWriteFailed(ILogger logger, Exception exception, string path);

    [LoggerMessage(EventId = 10, EventName = "QlogEnabled", Level = LogLevel.Information,
        Message = "qlog traces of every connection are written to {Directory}.")]
    public static partial void QlogEnabled(ILogger logger, string directory);

    [LoggerMessage(EventId = 11, EventName = "QlogWriteFailed", Level = LogLevel.Warning,
        Message = "Could not write the qlog file {Path}.")]
    public static partial void QlogWriteFailed(ILogger logger, Exception exception, string path);

    [LoggerMessage(EventId = 12, EventName = "TraceOutputDropped", Level = LogLevel.Warning,
        Message = "The {Output} is produced faster than the disk takes it: output beyond {MaxPendingBytes} queued bytes is dropped (first for {Path}). Logged once per backlog.")]
    public static partial void TraceOutputDropped(ILogger logger, string output, string path, long maxPendingBytes);

    [LoggerMessage(EventId = 13, EventName = "PeerFailureLogsSuppressed", Level = LogLevel.Warning,
        Message = "More than {Limit} connections from peers failed within {WindowSeconds} s: further failures (events 4, 5, 6) are logged at Debug until the window ends; kestrelquic.handshake.failures counts them all.")]
    public static partial void PeerFailureLogsSuppressed(ILogger logger, int limit, double windowSeconds);
}
