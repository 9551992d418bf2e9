using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Packets;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>
/// 0-RTT datagrams that overtake their Initial (reordering, or a ClientHello split over two Initials as Chromium's
/// post-quantum key share makes it) are kept for it (RFC 9000 §5.2.2) instead of dropped, so the request still
/// counts as early data.
/// </summary>
public sealed class EarlyZeroRttEndpointTests
{
    private static (EndpointPair Pair, byte[] Ticket) ServerWithTicket()
    {
        var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.EnableEarlyData = true));
        EndpointConnection first = pair.Connect();
        Assert.True(pair.RunUntil(() => pair.EventsOf(first).Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(5)));
        return (pair, pair.EventsOf(first).First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!);
    }

    private static bool StartsWithInitial(byte[] datagram)
        => PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h) && h.Type == PacketType.Initial;

    [Fact]
    public void ZeroRttDatagramsBeforeTheirInitial_KeptAndDelivered_RequestIsEarlyData()
    {
        (EndpointPair pair, byte[] ticket) = ServerWithTicket();
        using (pair)
        {
            // The client's Initial is held back 5 ms; the 0-RTT datagrams behind it arrive first.
            var held = new List<SimDatagram>();
            pair.Filter = d =>
            {
                if (!d.From.Equals(EndpointPair.ClientAddress) || !StartsWithInitial(d.Data) || held.Count > 0) return true;
                held.Add(d);
                return false;
            };
            EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c =>
            {
                c.SessionTicket = ticket;
                c.EnableEarlyData = true;
            }));
            Assert.True(client.Core.TryOpenStream(true, out ulong id));
            byte[] request = SimulationHelpers.Payload(6000, 5); // more than fits next to the Initial
            int sentBefore = pair.Sent.Count;
            pair.SendStream(client, id, request);
            pair.Flush();
            SimDatagram initial = Assert.Single(held);
            int zeroRttDatagrams = pair.Sent.Skip(sentBefore).Count(d => d.From.Equals(EndpointPair.ClientAddress) && !StartsWithInitial(d.Data));
            Assert.True(zeroRttDatagrams > 0, "the request fit next to the Initial");
            pair.Filter = null;
            pair.RunFor(TimeSpan.FromMilliseconds(15)); // the 0-RTT datagrams arrive, for nobody yet
            Assert.Empty(pair.Accepted.Skip(1));
            pair.DeliverNow(initial.From, initial.To, initial.Data);

            Assert.True(pair.RunUntil(() => pair.ServerSideOf(client) is { } s && pair.Finished.Contains((s, id)), TimeSpan.FromSeconds(5)));
            EndpointConnection server = pair.ServerSideOf(client)!;
            Assert.Equal(request, pair.ReceivedBytes(server, id));
            Assert.True(server.Core.EarlyDataAccepted);
            Assert.True(server.Core.Statistics.ZeroRttPacketsReceived >= zeroRttDatagrams, $"{server.Core.Statistics.ZeroRttPacketsReceived} 0-RTT packets received of {zeroRttDatagrams}+ sent");
            Assert.Equal(0, client.Core.Statistics.PacketsLost); // nothing had to be sent again in 1-RTT
            Assert.Equal(zeroRttDatagrams, pair.Server.Statistics.ZeroRttBuffered);
            Assert.Equal(zeroRttDatagrams, pair.Server.Statistics.ZeroRttDelivered);
        }
    }

    [Fact]
    public void ZeroRttForNobody_KeptBriefly_ThenForgotten_AndAFloodDisplacesOnlyItself()
    {
        (EndpointPair pair, byte[] ticket) = ServerWithTicket();
        using (pair)
        {
            // 0-RTT datagrams whose Initial never comes: at most 16 kept, then dropped when they expire.
            byte[] zeroRtt = EndpointPackets.FakeZeroRtt(new byte[8], 1200);
            for (int i = 0; i < 100; i++)
            {
                zeroRtt[6] = (byte)i; // another DCID each time
                pair.DeliverNow(EndpointPair.ClientAddress, EndpointPair.ServerAddress, zeroRtt);
            }

            Assert.Equal(100, pair.Server.Statistics.ZeroRttBuffered);
            Assert.Equal(100 - 16, pair.Server.Statistics.DroppedNoConnection); // the oldest displaced, 16 kept
            Assert.Equal(1, pair.Server.ConnectionCount); // the first connection only

            // A genuine resumption a while later is unaffected: its 0-RTT follows its Initial as usual.
            pair.RunFor(TimeSpan.FromSeconds(2));
            EndpointConnection client = pair.Connect(SimulationHelpers.ClientConfig(c =>
            {
                c.SessionTicket = ticket;
                c.EnableEarlyData = true;
            }));
            Assert.True(client.Core.TryOpenStream(true, out ulong id));
            pair.SendStream(client, id, "GET /"u8.ToArray());
            Assert.True(pair.RunUntil(() => pair.ServerSideOf(client) is { } s && pair.Finished.Contains((s, id)), TimeSpan.FromSeconds(5)));
            Assert.True(pair.ServerSideOf(client)!.Core.EarlyDataAccepted);
            Assert.Equal(0, pair.Server.Statistics.ZeroRttDelivered);
            Assert.Equal(100, pair.Server.Statistics.DroppedNoConnection); // the 16 kept expired when the next Initial looked
        }
    }
}
