using System.Net;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointGarbageTests
{
    private static readonly IPEndPoint GarbageAddress = new(IPAddress.Parse("10.9.9.9"), 9999);

    private static byte[] Mutate(byte[] original, Random random)
    {
        byte[] m = (byte[])original.Clone();
        for (int k = random.Next(1, 4); k > 0; k--) m[random.Next(m.Length)] ^= (byte)random.Next(1, 256);
        if (random.Next(8) == 0) m = m.AsSpan(0, random.Next(m.Length)).ToArray();
        return m;
    }

    /// <summary>Makes random, mutated-real and well-formed-but-bogus datagrams.</summary>
    private static byte[] NextGarbage(int i, Random random, byte[][] realInitials, byte[][] realShort, byte[] serverCid)
    {
        switch (i % 8)
        {
            case 0:
            case 1:
            {
                var d = new byte[random.Next(0, 1501)];
                random.NextBytes(d);
                return d;
            }

            case 2:
            case 3:
                return Mutate(realInitials[random.Next(realInitials.Length)], random);
            case 4:
                return Mutate(realShort[random.Next(realShort.Length)], random);
            case 5:
            {
                // Random bytes after a short header to the live connection's CID.
                byte[] d = EndpointPackets.ShortHeader(serverCid, random.Next(10, 1500), seed: random.Next());
                return d;
            }

            case 6:
            {
                // A well-formed Initial header (random CIDs, sometimes a token that looks like ours) with a junk payload.
                var dcid = new byte[random.Next(0, 21)];
                var scid = new byte[random.Next(0, 21)];
                random.NextBytes(dcid);
                random.NextBytes(scid);
                byte[]? token = null;
                if (random.Next(3) == 0)
                {
                    token = new byte[random.Next(1, 80)];
                    random.NextBytes(token);
                    token[0] = (byte)(random.Next(2) == 0 ? 0xA1 : 0xA2);
                }

                uint version = random.Next(2) == 0 ? QuicVersion.Version1 : QuicVersion.Version2;
                return EndpointPackets.FakeInitial(version, dcid, scid, random.Next(0, 4) == 0 ? 1199 : 1200 + random.Next(0, 300), token);
            }

            default:
            {
                // Long headers of every type and version with random contents.
                var d = new byte[random.Next(6, 1501)];
                random.NextBytes(d);
                d[0] |= 0x80;
                if (random.Next(2) == 0) System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(1), QuicVersion.Version1);
                d[5] = (byte)random.Next(0, 25);
                return d;
            }
        }
    }

    [Fact]
    public void ServerEndpoint_SurvivesTenThousandGarbageDatagrams_AndTheLiveConnectionStillWorks()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong warmup));
        pair.SendStream(client, warmup, SimulationHelpers.Payload(20_000, 1));
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, warmup)), TimeSpan.FromSeconds(5)));
        pair.RunFor(TimeSpan.FromMilliseconds(500));

        byte[][] realInitials = pair.SentFrom(EndpointPair.ClientAddress).Where(d => EndpointPackets.IsLongHeader(d.Data, PacketType.Initial)).Select(d => d.Data).ToArray();
        byte[][] realShort = pair.SentFrom(EndpointPair.ClientAddress).Where(d => (d.Data[0] & 0x80) == 0).Select(d => d.Data).ToArray();
        Assert.NotEmpty(realInitials);
        Assert.NotEmpty(realShort);
        byte[] serverCid = client.Core.ConnectionIds.ActivePeer!.ConnectionId;

        EndpointStatistics s = pair.Server.Statistics;
        long receivedBefore = s.DatagramsReceived;
        long liveBefore = server.Core.Statistics.DatagramsReceived;
        int acceptedBefore = pair.Accepted.Count;
        var before = (s.DroppedMalformed, s.DroppedTooShort, s.DroppedNoConnection, s.DroppedUnsupportedVersion, s.VersionNegotiationSent, s.RetrySent, s.ConnectionsRefused, s.StatelessResetsReceived, s.InvalidTokens, s.ConnectionsAccepted);
        Assert.Equal(default, before with { ConnectionsAccepted = 0 });

        const int Count = 10_000;
        var random = new Random(2024);
        for (int i = 0; i < Count; i++)
        {
            byte[] garbage = NextGarbage(i, random, realInitials, realShort, serverCid);
            pair.DeliverNow(i % 5 == 0 ? EndpointPair.ClientAddress : GarbageAddress, EndpointPair.ServerAddress, garbage);
            pair.Flush(); // responses leave the endpoint (none is delivered: the clock stands still)
        }

        Assert.Equal(receivedBefore + Count, s.DatagramsReceived);
        Assert.Equal(0, s.DroppedResponseQueueFull);

        // Every datagram ended in exactly one place (a NEW_TOKEN token that fails only adds to InvalidTokens before the
        // datagram goes on; a Retry token that fails ends there and is counted by InvalidTokens alone).
        List<EndpointConnection> created = pair.Accepted.Skip(acceptedBefore).ToList();
        long routed = server.Core.Statistics.DatagramsReceived - liveBefore + created.Sum(c => c.Core.Statistics.DatagramsReceived);
        long accounted = s.DroppedMalformed + s.DroppedTooShort + s.DroppedNoConnection + s.DroppedUnsupportedVersion
            + s.VersionNegotiationSent + s.RetrySent + s.ConnectionsRefused + s.StatelessResetsReceived + routed;
        Assert.InRange(accounted, Count - s.InvalidTokens, Count);
        Assert.Equal(created.Count, s.ConnectionsAccepted - 1);

        // Each kind of garbage reached its path.
        Assert.True(s.DroppedMalformed > 0, "malformed");
        Assert.True(s.DroppedTooShort > 0, "too short Initials");
        Assert.True(s.DroppedNoConnection > 0, "unroutable");
        Assert.True(s.DroppedUnsupportedVersion > 0, "small unknown-version");
        Assert.True(s.VersionNegotiationSent > 0, "version negotiation");
        Assert.True(s.StatelessResetsSent > 0, "stateless resets");
        Assert.True(s.InvalidTokens > 0, "tokens");
        // Bogus Initials keep no state: only an Initial that decrypts creates a connection (the others count as malformed).
        Assert.All(created, c => Assert.True(c.Core.Statistics.PacketsReceived > 0));
        Assert.True(created.Count < Count / 100, $"{created.Count} connections created");
        Assert.True(server.Core.Statistics.DatagramsReceived - liveBefore > 1000, "garbage routed to the live connection");
        Assert.Equal(0, s.StatelessResetsReceived);
        Assert.All(created, c => Assert.False(c.Core.IsHandshakeComplete));

        // The live connection is unharmed and still carries data both ways.
        Assert.Equal(ConnectionState.Established, server.Core.State);
        Assert.Equal(ConnectionState.Established, client.Core.State);
        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        byte[] up = SimulationHelpers.Payload(100 * 1024, 5);
        byte[] down = SimulationHelpers.Payload(100 * 1024, 6);
        pair.SendStream(client, streamId, up);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, streamId)), TimeSpan.FromSeconds(10)));
        pair.SendStream(server, streamId, down);
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((client, streamId)), TimeSpan.FromSeconds(10)));
        Assert.Equal(up, pair.ReceivedBytes(server, streamId));
        Assert.Equal(down, pair.ReceivedBytes(client, streamId));
        Assert.Null(client.Core.CloseReason);
        Assert.Null(server.Core.CloseReason);
    }

    [Fact]
    public void ClientEndpoint_SurvivesGarbage_AndItsConnectionStillWorks()
    {
        using var pair = new EndpointPair();
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        pair.RunFor(TimeSpan.FromMilliseconds(200));

        byte[][] realFromServer = pair.SentFrom(EndpointPair.ServerAddress).Select(d => d.Data).ToArray();
        byte[] clientCid = pair.ServerSideOf(client)!.Core.ConnectionIds.ActivePeer!.ConnectionId;
        const int Count = 3000;
        var random = new Random(7);
        long before = pair.Client.Statistics.DatagramsReceived;
        for (int i = 0; i < Count; i++)
        {
            byte[] garbage = NextGarbage(i, random, realFromServer, realFromServer, clientCid);
            pair.DeliverNow(i % 2 == 0 ? EndpointPair.ServerAddress : GarbageAddress, EndpointPair.ClientAddress, garbage);
            pair.Flush();
        }

        EndpointStatistics s = pair.Client.Statistics;
        Assert.Equal(before + Count, s.DatagramsReceived);
        Assert.Equal(0, s.ConnectionsAccepted);
        Assert.Equal(0, s.VersionNegotiationSent);
        Assert.Equal(0, s.RetrySent);
        Assert.Equal(1, pair.Client.ConnectionCount);

        Assert.True(client.Core.TryOpenStream(bidirectional: true, out ulong streamId));
        byte[] data = SimulationHelpers.Payload(30_000, 8);
        pair.SendStream(client, streamId, data);
        EndpointConnection server = pair.ServerSideOf(client)!;
        Assert.True(pair.RunUntil(() => pair.Finished.Contains((server, streamId)), TimeSpan.FromSeconds(10)));
        Assert.Equal(data, pair.ReceivedBytes(server, streamId));
        Assert.Equal(ConnectionState.Established, client.Core.State);
    }
}
