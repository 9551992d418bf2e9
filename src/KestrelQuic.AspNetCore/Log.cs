using System.Net;
using System.Net.Security;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore;

/// <summary>Log messages of the transport (category <c>KestrelQuic.AspNetCore</c>), with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Listening for QUIC on {EndPoint} (ALPN {Protocols}).", EventName = "Listening")]
    public static partial void Listening(ILogger logger, EndPoint endPoint, string protocols);

    [LoggerMessage(2, LogLevel.Information, "Stopped listening for QUIC on {EndPoint}.", EventName = "Unbound")]
    public static partial void Unbound(ILogger logger, EndPoint endPoint);

    [LoggerMessage(3, LogLevel.Debug, "Connection {ConnectionId} accepted from {RemoteEndPoint}: ALPN {Protocol}, {CipherSuite}, version 0x{Version:x8}.", EventName = "ConnectionAccepted")]
    public static partial void ConnectionAccepted(ILogger logger, string connectionId, EndPoint remoteEndPoint, string protocol, TlsCipherSuite cipherSuite, uint version);

    [LoggerMessage(4, LogLevel.Debug, "Connection {ConnectionId} closed: {Reason}.", EventName = "ConnectionClosed")]
    public static partial void ConnectionClosed(ILogger logger, string connectionId, string reason);

    [LoggerMessage(5, LogLevel.Debug, "Connection {ConnectionId} aborted by the application with error code 0x{ErrorCode:x}: {Message}", EventName = "ConnectionAborting")]
    public static partial void ConnectionAborting(ILogger logger, string connectionId, long errorCode, string message);

    [LoggerMessage(6, LogLevel.Warning, "A QUIC handshake was refused: the TLS connection callback failed.", EventName = "HandshakeRefused")]
    public static partial void HandshakeRefused(ILogger logger, Exception exception);

    [LoggerMessage(7, LogLevel.Warning, "No server certificate was found for the server name '{ServerName}'.", EventName = "NoCertificate")]
    public static partial void NoCertificate(ILogger logger, string? serverName);

    [LoggerMessage(8, LogLevel.Error, "Accepting a QUIC connection failed.", EventName = "AcceptFailed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(9, LogLevel.Debug, "Connection {ConnectionId}: failed to shut down gracefully.", EventName = "ShutdownFailed")]
    public static partial void ShutdownFailed(ILogger logger, string connectionId, Exception exception);

    // Debug: a peer decides how many handshakes fail, and the engine already reports each one (category KestrelQuic,
    // events 4 and 5) at Information up to a rate.
    [LoggerMessage(11, LogLevel.Debug, "QUIC handshake with {RemoteEndPoint} failed: {Reason}.", EventName = "HandshakeFailed")]
    public static partial void HandshakeFailed(ILogger logger, EndPoint remoteEndPoint, string reason);

    [LoggerMessage(10, LogLevel.Error, "Connection {ConnectionId}: a stream or connection callback threw.", EventName = "CallbackFailed")]
    public static partial void CallbackFailed(ILogger logger, string connectionId, Exception exception);
}
