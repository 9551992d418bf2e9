using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

public sealed class EndpointTimerQueueTests
{
    [Fact]
    public void ChurnedConnections_DoNotStayInTheTimerQueue()
    {
        // A removed connection's older deadlines (its idle timeout above all) used to stay in the timer heap until they
        // came due, holding the whole connection: a busy server kept churn rate × idle timeout dead connections.
        TimeSpan idle = TimeSpan.FromMinutes(5);
        using var pair = new EndpointPair(EndpointPair.ServerSettings(c => c.IdleTimeout = idle));
        EndpointConnection keeper = pair.Connect(SimulationHelpers.ClientConfig(c => c.IdleTimeout = idle));
        Assert.True(pair.RunUntilEstablished(keeper));

        const int Churned = 300;
        for (int i = 0; i < Churned; i++)
        {
            EndpointConnection c = pair.Connect(SimulationHelpers.ClientConfig(c => c.IdleTimeout = idle));
            Assert.True(pair.RunUntilEstablished(c));
            EndpointConnection server = pair.ServerSideOf(c)!;
            c.Core.Close(0, "done", pair.Now);
            pair.Client.OnApplicationOperation(c, pair.Now);
            Assert.True(pair.RunUntil(() => c.Removed && server.Removed, TimeSpan.FromSeconds(10)));
        }

        Assert.Equal(1, pair.Server.ConnectionCount);
        Assert.False(keeper.Removed);
        Assert.True(pair.Server.TimerQueueLength <= 2 * pair.Server.ConnectionCount + 64, $"{pair.Server.TimerQueueLength} timer entries for {pair.Server.ConnectionCount} connection(s)");
        Assert.True(pair.Client.TimerQueueLength <= 2 * pair.Client.ConnectionCount + 64, $"{pair.Client.TimerQueueLength} timer entries for {pair.Client.ConnectionCount} connection(s)");
    }
}
