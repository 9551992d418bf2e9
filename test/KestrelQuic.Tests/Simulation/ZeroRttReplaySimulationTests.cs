using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Packets;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Simulation;

/// <summary>0-RTT anti-replay (RFC 9001 §9.2, RFC 8446 §8): a ticket's early data is accepted at most once per server.</summary>
public sealed class ZeroRttReplaySimulationTests
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(50, 32).Select(i => (byte)i).ToArray();
    private static readonly IPEndPoint s_attacker = new(IPAddress.Parse("10.9.9.9"), 5555);

    private static QuicConfiguration EarlyDataServer() => SimulationHelpers.ServerConfig(c =>
    {
        c.SessionTicketKey = s_ticketKey;
        c.EnableEarlyData = true;
    });

    private static byte[] ObtainTicket(QuicConfiguration serverConfig)
    {
        // TLS reads the simulated clock: the ticket comes from a connection that ran before the resuming one.
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), serverConfig, startTime: SimulationClock.EarlierConnection);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(10)));
        return net.ClientEvents.First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;
    }

    private static QuicConfiguration EarlyDataClient(byte[] ticket) => SimulationHelpers.ClientConfig(c =>
    {
        c.SessionTicket = ticket;
        c.EnableEarlyData = true;
    });

    /// <summary>Resumes with 0-RTT: opens a stream and queues <paramref name="request"/> before anything was exchanged.</summary>
    private static (ulong StreamId, StreamPump Pump) SendEarlyRequest(SimulatedNetwork net, byte[] request)
    {
        var pump = new StreamPump(net);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        pump.Send(net.Client, id, request);
        return (id, pump);
    }

    [Fact]
    public void ReplayedFirstFlight_FromAnotherAddress_EarlyDataRejected()
    {
        QuicConfiguration serverConfig = EarlyDataServer();
        byte[] ticket = ObtainTicket(serverConfig);
        var register = new EarlyDataAntiReplay();

        // The legitimate client: its first flight (Initial + 0-RTT) is recorded on the wire by the attacker.
        using var net = new SimulatedNetwork(EarlyDataClient(ticket), serverConfig, antiReplay: register);
        byte[] request = "POST /transfer?amount=100"u8.ToArray();
        (ulong id, StreamPump pump) = SendEarlyRequest(net, request);
        var captured = new List<byte[]>();
        net.Filter = (toServer, datagram) =>
        {
            if (toServer) captured.Add((byte[])datagram.Clone());
            return true;
        };
        net.Flush();
        net.Filter = null;
        Assert.Contains(captured, d => PacketHeaderParser.TryParse(d, 8, out PacketHeader h) && h.Type == PacketType.Initial);

        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(5)));
        Assert.True(net.Server!.EarlyDataAccepted);
        Assert.Equal(request, pump.ReceivedBytes(net.Server, id));
        Assert.True(Assert.IsType<KestrelQuic.Streams.StreamState>(net.Server.GetStream(id)).ReceivedEarlyData, "the request arrived in 0-RTT");
        Assert.Equal(1, register.Accepted);

        // The attacker replays the captured datagrams to the same server from its own address: a fresh connection.
        (QuicConnectionCore replayed, List<ConnectionEvent> events) = Replay(serverConfig, register, captured, net.Now);
        using (replayed)
        {
            Assert.False(replayed.EarlyDataAccepted);
            Assert.Equal(EarlyDataRejection.Replay, replayed.Tls.EarlyDataRejection);
            Assert.True(replayed.Tls.IsResumed, "the ticket itself is still good for a 1-RTT resumption");
            Assert.DoesNotContain(events, e => e.Kind is ConnectionEventKind.StreamOpened or ConnectionEventKind.StreamReadable);
            Assert.Equal(0, replayed.StreamCount);
            Assert.Equal(1, register.ReplaysRejected);
        }
    }

    [Fact]
    public void StaleTicketAge_EarlyDataRejected_HandshakeContinuesIn1Rtt()
    {
        QuicConfiguration serverConfig = EarlyDataServer();
        byte[] ticket = ObtainTicket(serverConfig);

        // The client believes it received the ticket a minute earlier than it did: its obfuscated_ticket_age is
        // 60 s off the server's view, beyond the freshness window (RFC 8446 §8.3).
        Assert.True(TlsSessionTicket.TryDeserialize(ticket, out TlsSessionTicket? t));
        byte[] stale = CopyWithReceivedAt(t!, t!.ReceivedAt - TimeSpan.FromMinutes(1)).Serialize();

        using var net = new SimulatedNetwork(EarlyDataClient(stale), serverConfig);
        byte[] request = SimulationHelpers.Payload(2500, 3);
        (ulong id, StreamPump pump) = SendEarlyRequest(net, request);
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));

        Assert.True(net.Server!.Tls.IsResumed);
        Assert.False(net.Server.EarlyDataAccepted);
        Assert.False(net.Client.EarlyDataAccepted);
        Assert.Equal(EarlyDataRejection.TicketAge, net.Server.Tls.EarlyDataRejection);
        Assert.Equal(0, net.AntiReplay.Accepted); // a refused attempt does not use the ticket up
        // The client resent the request in 1-RTT: complete, and not marked as early data.
        Assert.Equal(request, pump.ReceivedBytes(net.Server, id));
        Assert.False(Assert.IsType<KestrelQuic.Streams.StreamState>(net.Server.GetStream(id)).ReceivedEarlyData);
    }

    [Fact]
    public void SameTicketTwice_FirstAcceptedSecondRejected_BothComplete()
    {
        QuicConfiguration serverConfig = EarlyDataServer();
        byte[] ticket = ObtainTicket(serverConfig);
        var register = new EarlyDataAntiReplay();

        for (int attempt = 0; attempt < 2; attempt++)
        {
            using var net = new SimulatedNetwork(EarlyDataClient(ticket), serverConfig, seed: attempt + 1, antiReplay: register);
            byte[] request = SimulationHelpers.Payload(1000 + attempt, attempt);
            (ulong id, StreamPump pump) = SendEarlyRequest(net, request);
            Assert.True(net.RunUntilHandshakeComplete());
            Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));
            Assert.Equal(request, pump.ReceivedBytes(net.Server!, id));
            Assert.True(net.Server!.Tls.IsResumed);
            Assert.Equal(attempt == 0, net.Server.EarlyDataAccepted);
            Assert.Equal(attempt == 0, net.Client.EarlyDataAccepted);
            Assert.Equal(attempt == 0 ? EarlyDataRejection.None : EarlyDataRejection.Replay, net.Server.Tls.EarlyDataRejection);
            Assert.Equal(attempt == 0, Assert.IsType<KestrelQuic.Streams.StreamState>(net.Server.GetStream(id)).ReceivedEarlyData);
        }

        Assert.Equal(1, register.Accepted);
        Assert.Equal(1, register.ReplaysRejected);
    }

    [Fact]
    public void RegisterFull_EarlyDataRejectedRatherThanForgotten()
    {
        QuicConfiguration serverConfig = EarlyDataServer();
        byte[] first = ObtainTicket(serverConfig);
        byte[] second = ObtainTicket(serverConfig);
        var register = new EarlyDataAntiReplay(capacity: 1);

        foreach ((byte[] ticket, bool accepted) in new[] { (first, true), (second, false) })
        {
            using var net = new SimulatedNetwork(EarlyDataClient(ticket), serverConfig, antiReplay: register);
            (ulong id, StreamPump pump) = SendEarlyRequest(net, "GET /"u8.ToArray());
            Assert.True(net.RunUntilHandshakeComplete());
            Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(10)));
            Assert.Equal(accepted, net.Server!.EarlyDataAccepted);
            Assert.Equal(accepted ? EarlyDataRejection.None : EarlyDataRejection.AntiReplayFull, net.Server.Tls.EarlyDataRejection);
        }

        Assert.Equal(1, register.RejectedFull);
        Assert.Equal(1, register.Count);
    }

    [Fact]
    public void NoRegister_EarlyDataRejected()
    {
        QuicConfiguration serverConfig = EarlyDataServer();
        byte[] ticket = ObtainTicket(serverConfig);
        using var net = new SimulatedNetwork(EarlyDataClient(ticket), serverConfig);
        var captured = new List<byte[]>();
        net.Filter = (toServer, datagram) =>
        {
            if (toServer) captured.Add((byte[])datagram.Clone());
            return false; // nothing reaches the simulated server
        };
        SendEarlyRequest(net, "GET /"u8.ToArray());
        net.Flush();

        (QuicConnectionCore server, _) = Replay(serverConfig, null, captured, net.Now);
        using (server)
        {
            Assert.Equal(EarlyDataRejection.NoAntiReplay, server.Tls.EarlyDataRejection);
            Assert.False(server.EarlyDataAccepted);
        }
    }

    /// <summary>Feeds captured client datagrams to a new server connection, as an attacker would from another address.</summary>
    private static (QuicConnectionCore Server, List<ConnectionEvent> Events) Replay(QuicConfiguration serverConfig, EarlyDataAntiReplay? register, List<byte[]> datagrams, long now)
    {
        byte[] first = datagrams.First(d => PacketHeaderParser.TryParse(d, 8, out PacketHeader h) && h.Type == PacketType.Initial);
        Assert.True(PacketHeaderParser.TryParse(first, serverConfig.ConnectionIdLength, out PacketHeader header));
        QuicConnectionCore server = QuicConnectionCore.CreateServer(
            serverConfig,
            header.Version,
            first.AsSpan(header.DestinationConnectionIdOffset, header.DestinationConnectionIdLength),
            first.AsSpan(header.SourceConnectionIdOffset, header.SourceConnectionIdLength),
            s_attacker,
            now,
            antiReplay: register);
        var events = new List<ConnectionEvent>();
        var buffer = new byte[65536];
        foreach (byte[] d in datagrams)
        {
            server.ReceiveDatagram((byte[])d.Clone(), s_attacker, now);
            while (server.PollDatagram(buffer, now, out _) > 0)
            {
            }

            while (server.TryDequeueEvent(out ConnectionEvent e)) events.Add(e);
        }

        return (server, events);
    }

    internal static TlsSessionTicket CopyWithReceivedAt(TlsSessionTicket t, DateTimeOffset receivedAt) => new()
    {
        Ticket = t.Ticket,
        ResumptionSecret = t.ResumptionSecret,
        CipherSuite = t.CipherSuite,
        AgeAdd = t.AgeAdd,
        LifetimeSeconds = t.LifetimeSeconds,
        ReceivedAt = receivedAt,
        MaxEarlyDataSize = t.MaxEarlyDataSize,
        ApplicationProtocol = t.ApplicationProtocol,
        ServerName = t.ServerName,
        QuicData = t.QuicData,
    };
}
