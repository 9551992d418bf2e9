using KestrelQuic.Configuration;
using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

public sealed class ResumptionSimulationTests
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();

    private static byte[] ObtainTicket(QuicConfiguration serverConfig)
    {
        // TLS reads the simulated clock: the ticket comes from a connection that ran before the resuming one.
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), serverConfig, startTime: SimulationClock.EarlierConnection);
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

/// <summary>
/// The core reads no clock: ticket age and lifetime and certificate validity follow the time the connections are
/// driven with (here the simulated clock, which runs hours ahead in no real time).
/// </summary>
public sealed class SimulatedWallClockTests
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(7, 32).Select(i => (byte)i).ToArray();

    private static QuicConfiguration Server() => SimulationHelpers.ServerConfig(c =>
    {
        c.SessionTicketKey = s_ticketKey;
        c.SessionTicketLifetime = TimeSpan.FromHours(1);
    });

    private static byte[] ObtainTicket(QuicConfiguration server)
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), server, startTime: SimulationClock.EarlierConnection);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(10)));
        return net.ClientEvents.First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;
    }

    private static SimulatedNetwork ResumeAt(QuicConfiguration server, byte[] ticket, TimeSpan afterTicket)
        => new(SimulationHelpers.ClientConfig(c => c.SessionTicket = ticket), server, startTime: SimulationClock.EarlierConnection + afterTicket.Ticks);

    [Fact]
    public void TicketWithinItsLifetime_OnTheSimulatedClock_Resumes()
    {
        QuicConfiguration server = Server();
        byte[] ticket = ObtainTicket(server);

        using SimulatedNetwork net = ResumeAt(server, ticket, TimeSpan.FromMinutes(50));
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.Tls.IsResumed);
        Assert.True(net.Server!.Tls.IsResumed);
    }

    [Fact]
    public void TicketPastItsLifetime_OnTheSimulatedClock_ClientDoesNotOfferIt_FullHandshake()
    {
        QuicConfiguration server = Server();
        byte[] ticket = ObtainTicket(server);

        // Milliseconds of real time passed; two hours of simulated time did.
        using SimulatedNetwork net = ResumeAt(server, ticket, TimeSpan.FromHours(2));
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.False(net.Client.Tls.IsResumed);
        Assert.False(net.Server!.Tls.IsResumed);
        Assert.Null(net.Client.CloseReason);
    }

    [Fact]
    public void TicketPastItsLifetime_OnTheSimulatedClock_ServerRefusesIt_FullHandshake()
    {
        QuicConfiguration server = Server();
        byte[] ticket = ObtainTicket(server);

        // A client whose own view makes the ticket look fresh still offers it; the server's ticket (sealed with the
        // time it was issued, read from the simulated clock) is past its lifetime and refused.
        Assert.True(KestrelQuic.Tls.TlsSessionTicket.TryDeserialize(ticket, out KestrelQuic.Tls.TlsSessionTicket? t));
        byte[] fresh = ZeroRttReplaySimulationTests.CopyWithReceivedAt(t!, t!.ReceivedAt + TimeSpan.FromHours(2)).Serialize();
        using SimulatedNetwork net = ResumeAt(server, fresh, TimeSpan.FromHours(2) + TimeSpan.FromSeconds(1));
        byte[]? firstFlight = null;
        net.Filter = (toServer, d) =>
        {
            if (toServer) firstFlight ??= (byte[])d.Clone();
            return true;
        };
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(OffersPreSharedKey(firstFlight!, net.Client.OriginalDestinationConnectionId), "the client offered the ticket");
        Assert.False(net.Server!.Tls.IsResumed);
        Assert.False(net.Client.Tls.IsResumed);
        Assert.Null(net.Client.CloseReason);
    }

    /// <summary>Whether the ClientHello in the client's first Initial carries pre_shared_key.</summary>
    private static bool OffersPreSharedKey(byte[] datagram, byte[] originalDcid)
    {
        KestrelQuic.Tests.Endpoint.OpenedPacket initial = KestrelQuic.Tests.Endpoint.EndpointPackets.Open(datagram, originalDcid, sentByServer: false)[0];
        byte[] hello = initial.Frames!.Single(f => f.Type == KestrelQuic.Frames.FrameType.Crypto && f.Offset == 0).Data;
        int i = 4 + 2 + 32;                               // handshake header, legacy_version, random
        i += 1 + hello[i];                                // legacy_session_id
        i += 2 + (hello[i] << 8 | hello[i + 1]);          // cipher_suites
        i += 1 + hello[i];                                // legacy_compression_methods
        var extensions = KestrelQuic.Tls.ExtensionBlock.Parse(hello.AsSpan(i + 2, hello[i] << 8 | hello[i + 1]));
        return extensions.Contains(KestrelQuic.Tls.ExtensionType.PreSharedKey);
    }

    [Fact]
    public void CertificatePastItsValidity_OnTheSimulatedClock_IsRefused()
    {
        // The test certificate is valid until 2036; the simulated clock says 2037.
        long in2037 = new DateTime(2037, 1, 1, 0, 0, 0, DateTimeKind.Utc).Ticks;
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), startTime: in2037);
        Assert.True(net.RunUntil(() => net.Client.State == ConnectionState.Closed || net.Client.IsHandshakeComplete, TimeSpan.FromSeconds(10)));
        Assert.False(net.Client.IsHandshakeComplete);
        Assert.Equal(0x100UL + (ulong)KestrelQuic.Tls.TlsAlert.CertificateExpired, net.Client.CloseReason!.ErrorCode);
        Assert.Contains("2037-01-01", net.Client.CloseReason.Reason, StringComparison.Ordinal);
    }
}
