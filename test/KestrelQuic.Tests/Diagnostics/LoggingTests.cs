using KestrelQuic.Diagnostics;
using KestrelQuic.Tests.Api;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>ILogger events with stable ids over loopback connections.</summary>
public sealed class LoggingTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Lifecycle_AcceptedConnectedClosed_WithErrorCodeAndReason()
    {
        var serverLog = new CapturingLoggerProvider();
        var clientLog = new CapturingLoggerProvider();
        QuicListenerOptions listenerOptions = LoopbackTests.ListenerOptions();
        listenerOptions.LoggerFactory = serverLog;
        await using QuicListener listener = await QuicListener.ListenAsync(listenerOptions);
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint);
        clientOptions.LoggerFactory = clientLog;

        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await client.CloseAsync(0x2a);
        await server.Closed.WaitAsync(Timeout);

        CapturingLoggerProvider.Entry accepted = await serverLog.WaitFor(e => e.EventId.Id == 1, Timeout);
        Assert.Equal("ConnectionAccepted", accepted.EventId.Name);
        Assert.Equal(QuicLog.CategoryName, accepted.Category);
        Assert.Equal(server.Id, accepted["ConnectionId"]);
        Assert.Equal(Simulation.SimulationHelpers.Alpn, accepted["ApplicationProtocol"]);
        CapturingLoggerProvider.Entry connected = await clientLog.WaitFor(e => e.EventId.Id == 2, Timeout);
        Assert.Equal(listener.LocalEndPoint.ToString(), connected["RemoteEndPoint"]);

        CapturingLoggerProvider.Entry serverClosed = await serverLog.WaitFor(e => e.EventId.Id == 3, Timeout);
        Assert.Equal("0x2a", serverClosed["ErrorCode"]);
        Assert.Equal(true, serverClosed["IsApplicationError"]);
        Assert.Equal(true, serverClosed["ClosedByPeer"]);
        CapturingLoggerProvider.Entry clientClosed = await clientLog.WaitFor(e => e.EventId.Id == 3, Timeout);
        Assert.Equal(false, clientClosed["ClosedByPeer"]);
        output.WriteLine(serverClosed.Message);

        // Nothing above Debug for a clean lifecycle, and nothing at all per packet.
        Assert.DoesNotContain(serverLog.Entries.Concat(clientLog.Entries), e => e.Level >= LogLevel.Information);
    }

    [Fact]
    public async Task HandshakeFailure_LogsTlsAlert()
    {
        var clientLog = new CapturingLoggerProvider();
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.ServerName = "not-localhost.example");
        clientOptions.LoggerFactory = clientLog;
        await Assert.ThrowsAsync<QuicException>(async () => await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout));

        CapturingLoggerProvider.Entry failed = await clientLog.WaitFor(e => e.EventId.Id == 4, Timeout);
        output.WriteLine(failed.Message);
        Assert.Equal("HandshakeFailed", failed.EventId.Name);
        Assert.Equal(LogLevel.Information, failed.Level);
        Assert.Equal("local", failed["Sender"]);
        Assert.InRange((int)failed["AlertCode"]!, 40, 49); // a certificate alert
        Assert.False(string.IsNullOrEmpty((string?)failed["TlsAlert"]));
    }

    [Fact]
    public async Task ProtocolError_LogsRfcErrorCodeAndFrameType_OnBothSides()
    {
        var serverLog = new CapturingLoggerProvider();
        var clientLog = new CapturingLoggerProvider();
        QuicListenerOptions listenerOptions = LoopbackTests.ListenerOptions();
        listenerOptions.LoggerFactory = serverLog;
        await using QuicListener listener = await QuicListener.ListenAsync(listenerOptions);
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint);
        clientOptions.LoggerFactory = clientLog;
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        await using QuicConnection client = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
        await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

        // RETIRE_CONNECTION_ID for a sequence number the server never issued: PROTOCOL_VIOLATION (RFC 9000 §19.16).
        lock (client.Endpoint.Lock)
        {
            client.Handle.Core.InjectRawFrames(Convert.FromHexString("193f"));
            client.Handle.Core.Ping();
            client.Endpoint.AfterApplicationOperationLocked(client.Handle);
        }

        await server.Closed.WaitAsync(Timeout);
        CapturingLoggerProvider.Entry local = await serverLog.WaitFor(e => e.EventId.Id == 6, Timeout);
        output.WriteLine(local.Message);
        Assert.Equal("protocol_violation", local["ErrorType"]);
        Assert.Equal("0xa", local["ErrorCode"]);
        Assert.Equal("0x19", local["FrameType"]);
        Assert.Equal("local", local["Detector"]);
        CapturingLoggerProvider.Entry remote = await clientLog.WaitFor(e => e.EventId.Id == 6, Timeout);
        Assert.Equal("peer", remote["Detector"]);
        Assert.Equal("0xa", remote["ErrorCode"]);
    }

    [Fact]
    public async Task DroppedDatagram_LoggedAtDebugWithReason()
    {
        var serverLog = new CapturingLoggerProvider();
        QuicListenerOptions listenerOptions = LoopbackTests.ListenerOptions();
        listenerOptions.LoggerFactory = serverLog;
        await using QuicListener listener = await QuicListener.ListenAsync(listenerOptions);
        using var udp = new System.Net.Sockets.UdpClient(System.Net.Sockets.AddressFamily.InterNetwork);
        byte[] shortInitial = new byte[100];
        shortInitial[0] = 0xc0; // long header, Initial, far below 1200 bytes
        shortInitial[4] = 1;    // version 1
        await udp.SendAsync(shortInitial, listener.LocalEndPoint);

        CapturingLoggerProvider.Entry dropped = await serverLog.WaitFor(e => e.EventId.Id == 7, Timeout);
        output.WriteLine(dropped.Message);
        Assert.Equal(LogLevel.Debug, dropped.Level);
        Assert.Equal(100, dropped["Length"]);
        Assert.False(string.IsNullOrEmpty((string?)dropped["DropReason"]));
    }
}
