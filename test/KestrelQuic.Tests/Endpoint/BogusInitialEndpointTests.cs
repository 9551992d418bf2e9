using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Endpoint;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>Initials that do not decrypt keep no state, so a flood of them cannot take the handshake slots.</summary>
public sealed class BogusInitialEndpointTests
{
    [Fact]
    public void BogusInitials_CreateNoConnection_AndLeaveTheHandshakeSlotsFree()
    {
        using var pair = new EndpointPair(new EndpointSettings
        {
            ServerConfiguration = SimulationHelpers.ServerConfig(c => c.Retry = RetryMode.Never),
            StaticKey = EndpointPair.StaticKey,
            MaxHandshakes = 2,
        });
        var random = new Random(11);
        for (int i = 0; i < 500; i++)
        {
            var dcid = new byte[8 + random.Next(0, 13)];
            var scid = new byte[random.Next(0, 21)];
            random.NextBytes(dcid);
            random.NextBytes(scid);
            byte[] initial = EndpointPackets.FakeInitial(QuicVersion.Version1, dcid, scid, 1200 + random.Next(0, 200));
            pair.DeliverNow(new IPEndPoint(IPAddress.Parse("10.7.0.1"), 1000 + i), EndpointPair.ServerAddress, initial);
        }

        pair.Flush();
        Assert.Equal(0, pair.Server.ConnectionCount);
        Assert.Equal(0, pair.Server.HandshakesInProgress);
        Assert.Equal(500, pair.Server.Statistics.DroppedMalformed);
        Assert.Equal(0, pair.Server.Statistics.ConnectionsAccepted);
        Assert.Empty(pair.SentFrom(EndpointPair.ServerAddress)); // nothing answered, nothing amplified

        // A real client still gets a slot.
        EndpointConnection client = pair.Connect();
        Assert.True(pair.RunUntilEstablished(client));
        Assert.Equal(1, pair.Server.Statistics.ConnectionsAccepted);
    }
}
