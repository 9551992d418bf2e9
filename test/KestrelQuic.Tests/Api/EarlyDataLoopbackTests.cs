using System.Net;
using System.Net.Sockets;
using KestrelQuic.Connection;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// <see cref="QuicStream.IsEarlyData"/> over real UDP. The public client waits for the handshake before it opens
/// streams, so a sans-IO client core driven over a socket plays the 0-RTT client against a real listener.
/// </summary>
public sealed class EarlyDataLoopbackTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    // The socket layer's clock: the core reads wall time (ticket age) from the time it is driven with, as UTC ticks.
    private static long Now() => KestrelQuic.Udp.QuicClock.Now;

    [Fact]
    public async Task StreamOpenedIn0Rtt_IsEarlyData_LaterStreamIsNot()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.EnableEarlyData = true));

        // A first connection through the public API leaves a session ticket in the store.
        var store = new InMemoryQuicSessionStore();
        QuicClientConnectionOptions first = LoopbackTests.ClientOptions(listener.LocalEndPoint, c => c.EnableEarlyData = true);
        first.SessionStore = store;
        Task<QuicConnection> accept = listener.AcceptConnectionAsync().AsTask();
        await using (QuicConnection c1 = await QuicConnection.ConnectAsync(first).AsTask().WaitAsync(Timeout))
        await using (QuicConnection s1 = await accept.WaitAsync(Timeout))
        {
            await c1.PingAsync().AsTask().WaitAsync(Timeout);
        }

        string key = $"localhost:{listener.LocalEndPoint.Port}";
        byte[]? ticket = null;
        for (int i = 0; i < 100 && (ticket = store.TakeSessionTicket(key)) is null; i++) await Task.Delay(20);
        Assert.NotNull(ticket);

        // The resuming client sends a request on stream 0 in 0-RTT, and another on stream 4 once the handshake is done.
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using QuicConnectionCore client = QuicConnectionCore.CreateClient(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
        }), listener.LocalEndPoint, Now());
        Assert.True(client.TryOpenStream(true, out ulong early));
        client.WriteStream(early, "GET /early"u8, fin: true);

        using var stop = new CancellationTokenSource();
        bool clientEarlyDataAccepted = false;
        Task driver = Task.Factory.StartNew(() =>
        {
            var buffer = new byte[65536];
            EndPoint from = new IPEndPoint(IPAddress.Any, 0);
            bool lateOpened = false;
            while (!stop.IsCancellationRequested)
            {
                int n;
                while ((n = client.PollDatagram(buffer, Now(), out _)) > 0) socket.SendTo(buffer.AsSpan(0, n), listener.LocalEndPoint);
                if (client.IsHandshakeComplete && !lateOpened && client.TryOpenStream(true, out ulong late))
                {
                    lateOpened = true;
                    clientEarlyDataAccepted = client.EarlyDataAccepted;
                    client.WriteStream(late, "GET /late"u8, fin: true);
                    continue;
                }

                if (socket.Poll(5_000, SelectMode.SelectRead))
                {
                    n = socket.ReceiveFrom(buffer, ref from);
                    client.ReceiveDatagram(buffer.AsSpan(0, n), from, Now());
                }

                if (client.NextTimeout <= Now()) client.HandleTimeout(Now());
                while (client.TryDequeueEvent(out _))
                {
                }
            }
        }, TaskCreationOptions.LongRunning);

        try
        {
            await using QuicConnection server = await listener.AcceptConnectionAsync().AsTask().WaitAsync(Timeout);
            Assert.True(server.IsResumed);
            Assert.True(server.IsEarlyDataAccepted);

            await using QuicStream s0 = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(0, s0.Id);
            Assert.Equal("GET /early", await ReadAll(s0));
            Assert.True(s0.IsEarlyData);

            await using QuicStream s4 = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            Assert.Equal(4, s4.Id);
            Assert.Equal("GET /late", await ReadAll(s4));
            Assert.False(s4.IsEarlyData);
        }
        finally
        {
            stop.Cancel();
            await driver.WaitAsync(Timeout);
        }

        Assert.True(clientEarlyDataAccepted);
    }

    private static async Task<string> ReadAll(QuicStream stream)
    {
        var ms = new MemoryStream();
        await stream.CopyToAsync(ms).WaitAsync(Timeout);
        return System.Text.Encoding.ASCII.GetString(ms.ToArray());
    }
}
