using System.Net;
using KestrelQuic.Connection;
using KestrelQuic.Packets;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// Managed memory an established, idle server connection keeps (issue 6, P6: ≤ 16 KiB per idle connection):
/// handshake state, transcript, sent-packet rings and stream chunks must be released once no longer needed.
/// </summary>
[Collection(nameof(AllocationMeasurementCollection))]
public sealed class IdleConnectionMemoryTests
{
    private static readonly IPEndPoint s_client = new(IPAddress.Loopback, 50000);
    private static readonly IPEndPoint s_server = new(IPAddress.Loopback, 443);
    private readonly ITestOutputHelper _output;

    public IdleConnectionMemoryTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void IdleServerConnection_RetainsLessThan16KiB()
    {
        var serverConfig = SimulationHelpers.ServerConfig();
        var clientConfig = SimulationHelpers.ClientConfig();
        var datagram = new byte[1500];
        long now = SimulationClock.Epoch + TimeSpan.FromSeconds(1).Ticks;

        QuicConnectionCore Connect(List<QuicConnectionCore> clients)
        {
            QuicConnectionCore client = QuicConnectionCore.CreateClient(clientConfig, s_server, now);
            int n = client.PollDatagram(datagram, now, out _);
            Assert.True(PacketHeaderParser.TryParse(datagram.AsSpan(0, n), 8, out PacketHeader h));
            QuicConnectionCore server = QuicConnectionCore.CreateServer(serverConfig, h.Version,
                datagram.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength),
                datagram.AsSpan(h.SourceConnectionIdOffset, h.SourceConnectionIdLength), s_client, now);
            server.ReceiveDatagram(datagram.AsSpan(0, n), s_client, now);
            for (int i = 0; i < 30 && !(client.IsHandshakeConfirmed && server.IsHandshakeConfirmed); i++)
            {
                now += TimeSpan.TicksPerMillisecond;
                while ((n = server.PollDatagram(datagram, now, out _)) > 0) client.ReceiveDatagram(datagram.AsSpan(0, n), s_server, now);
                while ((n = client.PollDatagram(datagram, now, out _)) > 0) server.ReceiveDatagram(datagram.AsSpan(0, n), s_client, now);
                while (client.TryDequeueEvent(out _)) { }
                while (server.TryDequeueEvent(out _)) { }
            }

            Assert.True(server.IsHandshakeConfirmed && client.IsHandshakeConfirmed);
            clients.Add(client);
            return server;
        }

        var warmClients = new List<QuicConnectionCore>();
        Connect(warmClients); // static caches, pools and JIT out of the way

        const int Count = 300;
        var clients = new List<QuicConnectionCore>(Count);
        var servers = new List<QuicConnectionCore>(Count);
        long before = GC.GetTotalMemory(forceFullCollection: true);
        for (int i = 0; i < Count; i++) servers.Add(Connect(clients));
        long withBoth = GC.GetTotalMemory(forceFullCollection: true);
        clients.Clear();
        long serversOnly = GC.GetTotalMemory(forceFullCollection: true);

        double perServer = (double)(serversOnly - before) / Count;
        double perClient = (double)(withBoth - serversOnly) / Count;
        _output.WriteLine($"idle connection, managed: server {perServer:F0} B, client {perClient:F0} B");
        Assert.True(perServer < 16 * 1024, $"{perServer:F0} B per idle server connection");
        GC.KeepAlive(servers);
        GC.KeepAlive(warmClients);
    }
}
