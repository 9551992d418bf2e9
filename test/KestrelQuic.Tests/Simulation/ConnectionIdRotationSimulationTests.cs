using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Switching to a new peer connection ID mid-transfer (RFC 9000 §5.1.2, §19.16).</summary>
public sealed class ConnectionIdRotationSimulationTests
{
    [Fact]
    public void ClientChangesConnectionIdMidTransfer_TransferCompletes_ServerSeesNewDcidAndRetiresOld()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        int cidLength = net.ServerConfig.ConnectionIdLength;
        var shortHeaderDcids = new List<string>(); // in send order
        net.Filter = (toServer, datagram) =>
        {
            if (toServer && (datagram[0] & 0x80) == 0) shortHeaderDcids.Add(Convert.ToHexString(datagram, 1, cidLength));
            return true;
        };
        Assert.True(net.RunUntilHandshakeComplete());

        byte[] payload = SimulationHelpers.Payload(1024 * 1024, 21);
        Assert.True(net.Client.TryOpenStream(bidirectional: true, out ulong id));
        pump.Send(net.Client, id, payload);
        Assert.True(net.RunUntil(() => net.Server!.GetStream(id)?.Receive?.HighestReceivedOffset > 256 * 1024, TimeSpan.FromSeconds(10)));

        ConnectionIdEntry old = net.Client.ConnectionIds.ActivePeer!;
        Assert.Equal(0UL, old.SequenceNumber);
        Assert.True(net.Client.ChangeConnectionId());
        ConnectionIdEntry current = net.Client.ConnectionIds.ActivePeer!;
        Assert.NotEqual(old.SequenceNumber, current.SequenceNumber);
        Assert.NotEqual(old.ConnectionId, current.ConnectionId);
        int switchIndex = shortHeaderDcids.Count;

        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(30)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));

        // Every packet sent after the switch carries the new DCID, which is one the server issued.
        string oldHex = Convert.ToHexString(old.ConnectionId);
        string newHex = Convert.ToHexString(current.ConnectionId);
        List<string> after = shortHeaderDcids.Skip(switchIndex).ToList();
        Assert.NotEmpty(after);
        Assert.All(after, dcid => Assert.Equal(newHex, dcid));
        Assert.Contains(oldHex, shortHeaderDcids.Take(switchIndex));
        Assert.NotNull(net.Server!.ConnectionIds.FindLocal(current.ConnectionId));

        // RETIRE_CONNECTION_ID reached the server: it stopped routing the old ID and issued a replacement.
        Assert.True(net.RunUntil(() => net.Server.ConnectionIds.FindLocal(old.ConnectionId) is null, TimeSpan.FromSeconds(1)));
        Assert.Contains(net.ServerEvents, e => e.Kind == ConnectionEventKind.ConnectionIdChanged && e.StreamId == old.SequenceNumber && !e.Flag);
        Assert.Equal((int)Math.Min(8, net.ClientConfig.ActiveConnectionIdLimit), net.Server.ConnectionIds.LocalIds.Count);
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server.CloseReason);
    }

    [Fact]
    public void RepeatedRotation_UsesEachIssuedIdOnce_AndKeepsWorking()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());

        var used = new HashSet<string> { Convert.ToHexString(net.Client.ConnectionIds.ActivePeer!.ConnectionId) };
        for (int round = 0; round < 10; round++)
        {
            // Each round: rotate, then a request/transfer on a fresh stream (which also carries the retirement).
            Assert.True(net.RunUntil(() => net.Client.ChangeConnectionId(), TimeSpan.FromSeconds(1)), $"round {round}: no spare ID");
            Assert.True(used.Add(Convert.ToHexString(net.Client.ConnectionIds.ActivePeer!.ConnectionId)), $"round {round}: ID reused");

            byte[] payload = SimulationHelpers.Payload(20_000, round);
            Assert.True(net.Client.TryOpenStream(true, out ulong id));
            pump.Send(net.Client, id, payload);
            Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(5)), $"round {round}");
            Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        }

        Assert.Equal(11, used.Count);
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server!.CloseReason);
    }
}
