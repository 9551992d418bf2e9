namespace KestrelQuic.Tests.Simulation;

/// <summary>Corrupted datagrams fail authentication (RFC 9001 §5.3), are dropped and recovered like losses.</summary>
public sealed class CorruptionSimulationTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OneMegabyte_With5PercentCorruptDatagrams_CompletesWithContentVerified(bool clientToServer)
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), seed: 5);
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());

        foreach (LinkConditions link in new[] { net.ToServer, net.ToClient }) link.CorruptRate = 0.05;

        var sender = clientToServer ? net.Client : net.Server!;
        var receiver = clientToServer ? net.Server! : net.Client;
        byte[] payload = SimulationHelpers.Payload(1024 * 1024, 9);
        Assert.True(sender.TryOpenStream(bidirectional: true, out ulong id));
        pump.Send(sender, id, payload);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((receiver, id)), TimeSpan.FromSeconds(120)), "transfer did not finish");

        Assert.Equal(payload, pump.ReceivedBytes(receiver, id));
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server!.CloseReason);

        // About 5% of the ~900 data datagrams were damaged: the receiver rejected them, the sender retransmitted.
        long rejected = receiver.Statistics.DecryptionFailures + receiver.Statistics.PacketsDropped;
        Assert.True(rejected >= 10, $"only {rejected} datagrams rejected");
        Assert.True(sender.Statistics.PacketsLost > 0);
    }
}
