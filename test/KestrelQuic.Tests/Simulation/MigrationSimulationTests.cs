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

    [Fact]
    public void NatRebindingOntoAMuchSlowerPath_ServerValidatesItInsteadOfRevertingToTheDeadAddress()
    {
        // RFC 9000 §8.2.4: the validation timer uses the larger of the current PTO and a new path's PTO (kInitialRtt).
        // With only the current (fast) path's PTO, the server gave up before the first PATH_RESPONSE could arrive.
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        net.ToServer.Delay = net.ToClient.Delay = TimeSpan.FromMilliseconds(1);
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.Server!.TryOpenStream(false, out ulong id));
        byte[] data = SimulationHelpers.Payload(4_000_000, 4);
        pump.Send(net.Server, id, data);
        net.RunFor(TimeSpan.FromMilliseconds(20));
        Assert.DoesNotContain((net.Client, id), pump.Finished);

        // The NAT rebinds the client and the new route is slow: 400 ms each way.
        net.ToServer.Delay = net.ToClient.Delay = TimeSpan.FromMilliseconds(400);
        net.CurrentClientAddress = NewClientAddress;
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Client, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(data, pump.ReceivedBytes(net.Client, id));
        Assert.DoesNotContain(net.ServerEvents, e => e.Kind == ConnectionEventKind.PathValidationFailed);
        Assert.Contains(net.ServerEvents, e => e.Kind == ConnectionEventKind.PathValidated);
        Assert.Equal(NewClientAddress, net.Server.RemoteAddress);
    }

    [Fact]
    public void ClientMigratesOntoAMuchSlowerPath_ValidationWaitsForTheSlowResponse()
    {
        // The new path's round trip (800 ms) is far beyond a few PTOs of the fast current path (2 ms RTT): the
        // validation timer must assume kInitialRtt for a path it has never measured (RFC 9000 §8.2.4).
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        net.ToServer.Delay = net.ToClient.Delay = TimeSpan.FromMilliseconds(1);
        Assert.True(net.RunUntilHandshakeComplete());
        net.RunFor(TimeSpan.FromMilliseconds(100));

        net.ToServer.Delay = net.ToClient.Delay = TimeSpan.FromMilliseconds(400);
        net.CurrentClientAddress = NewClientAddress;
        net.Client.OnLocalAddressChanged(net.Now);
        Assert.True(net.RunUntil(() => net.ClientEvents.Any(e => e.Kind is ConnectionEventKind.PathValidated or ConnectionEventKind.PathValidationFailed), TimeSpan.FromSeconds(10)));
        Assert.DoesNotContain(net.ClientEvents, e => e.Kind == ConnectionEventKind.PathValidationFailed);
        Assert.Contains(net.ClientEvents, e => e.Kind == ConnectionEventKind.PathValidated);
    }
}
