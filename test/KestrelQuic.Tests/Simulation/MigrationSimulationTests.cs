using System.Net;
using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Client migration to a new local address (RFC 9000 §9): path validation on both sides, success and failure.</summary>
public sealed class MigrationSimulationTests
{
    private static readonly IPEndPoint NewClientAddress = new(IPAddress.Parse("10.0.0.1"), 40001);

    [Fact]
    public void ClientMigrates_BothSidesValidateAndTransferContinues()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        byte[] data = SimulationHelpers.Payload(2_000_000, 3);
        pump.Send(net.Client, id, data);
        net.RunFor(TimeSpan.FromMilliseconds(30));

        net.CurrentClientAddress = NewClientAddress;
        net.Client.OnLocalAddressChanged(net.Now);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.PathValidated), TimeSpan.FromSeconds(5)));
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(20)));
        Assert.Equal(NewClientAddress, net.Server!.RemoteAddress);
        Assert.Contains(net.ServerEvents, e => e.Kind == ConnectionEventKind.PathValidated);
        Assert.DoesNotContain(net.ClientEvents, e => e.Kind == ConnectionEventKind.PathValidationFailed);
        Assert.Equal(data, pump.ReceivedBytes(net.Server, id));
    }

    [Fact]
    public void ClientMigratesToADeadPath_ValidationFailedIsReported()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());

        // Nothing comes back on the new path: no PATH_RESPONSE can arrive.
        net.ToClient.Down = true;
        net.Client.OnLocalAddressChanged(net.Now);
        Assert.True(net.Client.IsPathValidationInProgress);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind == ConnectionEventKind.PathValidationFailed), TimeSpan.FromSeconds(20)));
        Assert.False(net.Client.IsPathValidationInProgress);
        Assert.DoesNotContain(net.ClientEvents, e => e.Kind == ConnectionEventKind.PathValidated);
    }
}
