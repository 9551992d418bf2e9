using KestrelQuic.Configuration;
using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

public sealed class ResumptionSimulationTests
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    private static byte[] ObtainTicket(QuicConfiguration serverConfig)
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), serverConfig);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(10)));
        Assert.False(net.Client.Tls.IsResumed);
        return net.ClientEvents.First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;
    }

    [Fact]
    public void Resumption_SecondHandshakeUsesTicket()
    {
        QuicConfiguration server = SimulationHelpers.ServerConfig(c => c.SessionTicketKey = s_ticketKey);
        byte[] ticket = ObtainTicket(server);

        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(c => c.SessionTicket = ticket), server);
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.Tls.IsResumed);
        Assert.True(net.Server!.Tls.IsResumed);
    }

    [Fact]
    public void ZeroRtt_Accepted_DataArrivesBeforeHandshakeCompletes()
    {
        QuicConfiguration server = SimulationHelpers.ServerConfig(c =>
        {
            c.SessionTicketKey = s_ticketKey;
            c.EnableEarlyData = true;
        });
        byte[] ticket = ObtainTicket(server);

        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
        }), server);
        var pump = new StreamPump(net);

        // Before any packet has been exchanged: the stream exists and its data goes out in 0-RTT packets.
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] request = "GET /early"u8.ToArray();
        pump.Send(net.Client, id, request);

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(5)));
        Assert.True(net.Client.EarlyDataAccepted);
        Assert.True(net.Server!.EarlyDataAccepted);
        Assert.Equal(request, pump.ReceivedBytes(net.Server, id));
        Assert.True(net.Client.Statistics.ZeroRttPacketsSent > 0);
        Assert.True(net.Server.Statistics.ZeroRttPacketsReceived > 0);

        int readable = net.ServerEvents.FindIndex(e => e.Kind == ConnectionEventKind.StreamReadable && e.StreamId == id);
        int completed = net.ServerEvents.FindIndex(e => e.Kind == ConnectionEventKind.HandshakeCompleted);
        Assert.True(readable >= 0 && readable < completed, "0-RTT data should be readable before the server completes the handshake");
    }

    [Fact]
    public void ZeroRtt_Rejected_DataIsResentIn1Rtt()
    {
        QuicConfiguration ticketServer = SimulationHelpers.ServerConfig(c =>
        {
            c.SessionTicketKey = s_ticketKey;
            c.EnableEarlyData = true;
        });
        byte[] ticket = ObtainTicket(ticketServer);

        // Same ticket key (resumption works) but the server now refuses early data.
        QuicConfiguration server = SimulationHelpers.ServerConfig(c =>
        {
            c.SessionTicketKey = s_ticketKey;
            c.EnableEarlyData = false;
        });
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
        }), server);
        var pump = new StreamPump(net);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] request = SimulationHelpers.Payload(3000, 9);
        pump.Send(net.Client, id, request);

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));
        Assert.False(net.Client.EarlyDataAccepted);
        Assert.True(net.Client.Tls.IsResumed);
        Assert.Equal(request, pump.ReceivedBytes(net.Server!, id));
        Assert.True(net.Client.Statistics.ZeroRttPacketsSent > 0);
        Assert.Equal(0, net.Server!.Statistics.ZeroRttPacketsReceived); // rejected: never decrypted
    }
}
