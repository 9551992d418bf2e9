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

    [Fact]
    public async Task HandshakeTimeout_LogsHandshakeIncompleteWithErrorType()
    {
        var clientLog = new CapturingLoggerProvider();
        using var silent = new System.Net.Sockets.UdpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0)); // takes the Initials, never answers
        QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions((System.Net.IPEndPoint)silent.Client.LocalEndPoint!);
        clientOptions.HandshakeTimeout = TimeSpan.FromMilliseconds(500);
        clientOptions.LoggerFactory = clientLog;
        QuicException e = await Assert.ThrowsAsync<QuicException>(async () => await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout));
        Assert.Equal(QuicError.ConnectionTimeout, e.QuicError);

        CapturingLoggerProvider.Entry incomplete = await clientLog.WaitFor(e => e.EventId.Id == 5, Timeout);
        output.WriteLine(incomplete.Message);
        Assert.Equal("HandshakeIncomplete", incomplete.EventId.Name);
        Assert.Equal(LogLevel.Information, incomplete.Level);
        Assert.Equal(QuicLog.CategoryName, incomplete.Category);
        Assert.Equal("timeout", incomplete["ErrorType"]);
        Assert.Equal(silent.Client.LocalEndPoint!.ToString(), incomplete["RemoteEndPoint"]);
        Assert.IsType<long>(incomplete["ConnectionId"]);
        Assert.DoesNotContain(clientLog.Entries, e => e.EventId.Id == 4);
    }

    [Fact]
    public async Task QlogDirectory_LogsQlogEnabledOnce_AndUnwritableTraceLogsQlogWriteFailed()
    {
        // A regular file where the directory should be: every qlog file under it fails to open.
        string blocker = Path.GetTempFileName();
        try
        {
            var clientLog = new CapturingLoggerProvider();
            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
            for (int i = 0; i < 2; i++)
            {
                QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.QlogDirectory = blocker);
                clientOptions.LoggerFactory = clientLog;
                Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
                await using QuicConnection client = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
                await using QuicConnection server = await acceptTask.WaitAsync(Timeout);
                await client.CloseAsync(0);
            }

            CapturingLoggerProvider.Entry enabled = await clientLog.WaitFor(e => e.EventId.Id == 10, Timeout);
            Assert.Equal("QlogEnabled", enabled.EventId.Name);
            Assert.Equal(LogLevel.Information, enabled.Level);
            Assert.Equal(Path.GetFullPath(blocker), enabled["Directory"]);

            CapturingLoggerProvider.Entry failed = await clientLog.WaitFor(e => e.EventId.Id == 11, Timeout);
            output.WriteLine(failed.Message + " " + failed.Exception?.GetType().Name);
            Assert.Equal("QlogWriteFailed", failed.EventId.Name);
            Assert.Equal(LogLevel.Warning, failed.Level);
            Assert.StartsWith(Path.GetFullPath(blocker) + Path.DirectorySeparatorChar, (string)failed["Path"]!);
            Assert.EndsWith("_client.sqlog", (string)failed["Path"]!);
            Assert.IsAssignableFrom<IOException>(failed.Exception);
            Assert.DoesNotContain(clientLog.Entries, e => e.EventId.Id == 9);
        }
        finally
        {
            File.Delete(blocker);
        }
    }

    [Fact]
    public async Task UnwritableSecretsLog_LogsSecretsLogWriteFailed()
    {
        string blocker = Path.GetTempFileName();
        try
        {
            string keys = Path.Combine(blocker, "keys.log"); // under a regular file: cannot be created
            var clientLog = new CapturingLoggerProvider();
            await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
            QuicClientConnectionOptions clientOptions = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.SecretsLogFile = keys);
            clientOptions.LoggerFactory = clientLog;
            Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
            await using QuicConnection client = await QuicConnection.ConnectAsync(clientOptions).AsTask().WaitAsync(Timeout);
            await using QuicConnection server = await acceptTask.WaitAsync(Timeout);

            CapturingLoggerProvider.Entry failed = await clientLog.WaitFor(e => e.EventId.Id == 9, Timeout);
            output.WriteLine(failed.Message + " " + failed.Exception?.GetType().Name);
            Assert.Equal("SecretsLogWriteFailed", failed.EventId.Name);
            Assert.Equal(LogLevel.Warning, failed.Level);
            Assert.Equal(Path.GetFullPath(keys), failed["Path"]);
            Assert.IsAssignableFrom<IOException>(failed.Exception);
            Assert.Contains(clientLog.Entries, e => e.EventId.Id == 8); // the secrets warning came first
            Assert.DoesNotContain(clientLog.Entries, e => e.EventId.Id == 11);
        }
        finally
        {
            File.Delete(blocker);
        }
    }

    [Fact]
    public async Task ServerHandshakeFailureFlood_TenAtInformation_ThenOneNotice_RestAtDebug()
    {
        var serverLog = new CapturingLoggerProvider();
        // A short idle timeout: should a client's CONNECTION_CLOSE be lost (UDP, a loaded machine), that handshake
        // still ends soon, as HandshakeIncomplete, and is counted by the same limit.
        QuicListenerOptions listenerOptions = LoopbackTests.ListenerOptions(c => c.IdleTimeout = TimeSpan.FromSeconds(2));
        listenerOptions.LoggerFactory = serverLog;
        await using QuicListener listener = await QuicListener.ListenAsync(listenerOptions);
        const int Failures = 13;
        for (int i = 0; i < Failures; i++)
        {
            // The client refuses the server's certificate: the server sees the peer's TLS alert.
            await Assert.ThrowsAsync<QuicException>(async () =>
                await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.ServerName = "not-localhost.example")).AsTask().WaitAsync(Timeout));
        }

        // HandshakeFailed (4) for a peer's alert, HandshakeIncomplete (5) for a handshake that timed out instead.
        static bool IsFailure(CapturingLoggerProvider.Entry e) => e.EventId.Id is 4 or 5;
        using var cts = new CancellationTokenSource(Timeout);
        while (serverLog.Entries.Count(IsFailure) < Failures)
        {
            try
            {
                await Task.Delay(20, cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"{serverLog.Entries.Count(IsFailure)} of {Failures} handshake failures logged: " + string.Join("; ", serverLog.Entries.Select(e => $"{e.EventId.Name} {e.Level} {e.Message}")));
            }
        }

        List<CapturingLoggerProvider.Entry> failures = serverLog.Entries.Where(IsFailure).ToList();
        Assert.All(failures.Where(f => f.EventId.Id == 4), f => Assert.Equal("peer", f["Sender"]));
        Assert.True(failures.Count(f => f.EventId.Id == 4) >= Failures - 1, "most clients' alerts reach the server");
        Assert.Equal(10, failures.Count(f => f.Level == LogLevel.Information));
        Assert.Equal(Failures - 10, failures.Count(f => f.Level == LogLevel.Debug));
        CapturingLoggerProvider.Entry notice = Assert.Single(serverLog.Entries, e => e.EventId.Id == 13);
        Assert.Equal("PeerFailureLogsSuppressed", notice.EventId.Name);
        Assert.Equal(LogLevel.Warning, notice.Level);
        Assert.Equal(10, notice["Limit"]);
        Assert.Equal(60.0, notice["WindowSeconds"]);

        // The notice comes right after the tenth Information line.
        List<CapturingLoggerProvider.Entry> ordered = serverLog.Entries.Where(e => IsFailure(e) || e.EventId.Id == 13).ToList();
        Assert.Equal(13, ordered[10].EventId.Id);
        Assert.All(ordered.Take(10), e => Assert.Equal(LogLevel.Information, e.Level));
        output.WriteLine(notice.Message);
    }

    [Fact]
    public void LogRateLimiter_AllowsLimitPerWindow_AnnouncesOnce_ResetsWithTheNextWindow()
    {
        var limiter = new LogRateLimiter(limit: 3, window: TimeSpan.FromSeconds(10));
        long t = TimeSpan.FromHours(1).Ticks;
        Assert.Equal(LogRateDecision.Allow, limiter.Next(t));
        Assert.Equal(LogRateDecision.Allow, limiter.Next(t + 1));
        Assert.Equal(LogRateDecision.Allow, limiter.Next(t + 2));
        Assert.Equal(LogRateDecision.StartSuppressing, limiter.Next(t + 3));
        Assert.Equal(LogRateDecision.Suppress, limiter.Next(t + 4));
        Assert.Equal(LogRateDecision.Suppress, limiter.Next(t + TimeSpan.FromSeconds(10).Ticks - 1));
        Assert.Equal(LogRateDecision.Allow, limiter.Next(t + TimeSpan.FromSeconds(10).Ticks));
        Assert.Equal(LogRateDecision.Allow, limiter.Next(t + TimeSpan.FromSeconds(11).Ticks));
    }
}
