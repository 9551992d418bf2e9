using KestrelQuic.Connection;
using KestrelQuic.Recovery;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// The closing and draining periods of an immediate close (RFC 9000 §10.2): the closing side answers a peer that
/// keeps sending with CONNECTION_CLOSE again, at a limited rate (§10.2.1); the draining side sends nothing (§10.2.2);
/// both forget the connection after about three PTOs.
/// </summary>
public sealed class ClosingDrainingSimulationTests(ITestOutputHelper output)
{
    private const ulong ApplicationError = 0x4242;
    private static readonly long s_maxAckDelay = TimeSpan.FromMilliseconds(25).Ticks; // the default on both sides

    private sealed record Sent(long Time, bool ToServer, ConnectionState SenderState, byte[] Data);

    /// <summary>
    /// A server streaming to the client (many packets in flight), the client closing with the first CONNECTION_CLOSE
    /// lost. Returns the network, the datagram log (from the moment of the close) and the close time.
    /// </summary>
    private static (SimulatedNetwork Net, List<Sent> Log, long ClosedAt) CloseWhileThePeerSends()
    {
        var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        var pump = new StreamPump(net);
        Assert.True(net.Server!.TryOpenStream(false, out ulong id));
        pump.Send(net.Server, id, SimulationHelpers.Payload(4 * 1024 * 1024, 1));
        Assert.True(net.RunUntil(() => pump.ReceivedBytes(net.Client, id).Length > 512 * 1024, TimeSpan.FromSeconds(10)));

        var log = new List<Sent>();
        bool firstCloseDropped = false;
        net.Filter = (toServer, d) =>
        {
            QuicConnectionCore sender = toServer ? net.Client : net.Server!;
            log.Add(new Sent(net.Now, toServer, sender.State, (byte[])d.Clone()));
            if (toServer && !firstCloseDropped)
            {
                firstCloseDropped = true;
                return false;
            }

            return true;
        };

        long closedAt = net.Now;
        net.Client.Close(ApplicationError, "done", net.Now);
        Assert.Equal(ConnectionState.Closing, net.Client.State);
        return (net, log, closedAt);
    }

    [Fact]
    public void FirstConnectionCloseLost_PeerKeepsSending_CloseIsResentAtALimitedRate()
    {
        (SimulatedNetwork net, List<Sent> log, long closedAt) = CloseWhileThePeerSends();
        using (net)
        {
            long srtt = net.Client.Rtt.SmoothedRtt;
            Assert.True(net.RunUntil(() => net.Server!.State == ConnectionState.Draining, TimeSpan.FromSeconds(2)));
            long drainedAt = net.Now;

            // The resent CONNECTION_CLOSE is what reached the server: it drains with the client's error.
            QuicCloseReason reason = net.Server!.CloseReason!;
            Assert.True(reason.ClosedByPeer);
            Assert.True(reason.IsApplicationError);
            Assert.Equal(ApplicationError, reason.ErrorCode);

            List<Sent> closes = log.Where(s => s.ToServer).ToList();
            List<Sent> serverPackets = log.Where(s => !s.ToServer && s.Time >= closedAt).ToList();
            Assert.All(closes, s => Assert.Equal(ConnectionState.Closing, s.SenderState));
            Assert.True(closes.Count >= 2, $"the CONNECTION_CLOSE was resent ({closes.Count} sent)");
            Assert.Equal(closedAt, closes[0].Time); // the first went out at once

            // Rate limit: answers are more than a smoothed RTT apart, and far fewer than the packets that prompted
            // them (the server's window of stream data, then its probes).
            for (int i = 1; i < closes.Count; i++)
            {
                Assert.True(closes[i].Time - closes[i - 1].Time > srtt, $"CONNECTION_CLOSE {i} only {TimeSpan.FromTicks(closes[i].Time - closes[i - 1].Time).TotalMilliseconds} ms after the previous one");
            }

            output.WriteLine($"srtt {TimeSpan.FromTicks(srtt).TotalMilliseconds} ms; {closes.Count} CONNECTION_CLOSE at +{string.Join(", +", closes.Select(c => TimeSpan.FromTicks(c.Time - closedAt).TotalMilliseconds))} ms for {serverPackets.Count} server datagrams; server drained at +{TimeSpan.FromTicks(drainedAt - closedAt).TotalMilliseconds} ms");
            Assert.True(serverPackets.Count >= 10 * closes.Count, $"{serverPackets.Count} server datagrams drew {closes.Count} CONNECTION_CLOSE");
            Assert.True(closes.Count <= 2 + (drainedAt - closedAt) / srtt);
        }
    }

    [Fact]
    public void DrainingSide_ReceivingMorePackets_SendsNothing()
    {
        (SimulatedNetwork net, List<Sent> log, _) = CloseWhileThePeerSends();
        using (net)
        {
            Assert.True(net.RunUntil(() => net.Server!.State == ConnectionState.Draining, TimeSpan.FromSeconds(2)));
            long drainedAt = net.Now;
            QuicConnectionCore server = net.Server!;
            List<byte[]> fromClient = log.Where(s => s.ToServer).Select(s => s.Data).ToList();

            // The peer keeps sending (its CONNECTION_CLOSE packets again, e.g. duplicated or delayed by the network):
            // the draining server answers none of them, and sends nothing at all until it is gone.
            var buffer = new byte[1500];
            for (int round = 0; round < 3; round++)
            {
                net.RunFor(TimeSpan.FromMilliseconds(20));
                foreach (byte[] d in fromClient) server.ReceiveDatagram((byte[])d.Clone(), SimulatedNetwork.ClientAddress, net.Now);
                Assert.Equal(ConnectionState.Draining, server.State);
                Assert.Equal(0, server.PollDatagram(buffer, net.Now, out _));
            }

            Assert.True(net.RunUntil(() => server.State == ConnectionState.Closed && net.Client.State == ConnectionState.Closed, TimeSpan.FromSeconds(5)));
            Assert.DoesNotContain(log, s => !s.ToServer && s.SenderState is ConnectionState.Draining or ConnectionState.Closed);
            Assert.DoesNotContain(log, s => !s.ToServer && s.Time > drainedAt);
        }
    }

    [Fact]
    public void ClosingAndDrainingSides_LeaveAfterAboutThreePtos()
    {
        (SimulatedNetwork net, _, long closedAt) = CloseWhileThePeerSends();
        using (net)
        {
            RttEstimator clientRtt = net.Client.Rtt;
            long clientLower = 3 * (clientRtt.SmoothedRtt + s_maxAckDelay);
            long clientUpper = 3 * clientRtt.GetPtoDuration(includeMaxAckDelay: true, s_maxAckDelay);
            Assert.True(net.RunUntil(() => net.Server!.State == ConnectionState.Draining, TimeSpan.FromSeconds(2)));
            long drainedAt = net.Now;
            RttEstimator serverRtt = net.Server!.Rtt;
            long serverLower = 3 * (serverRtt.SmoothedRtt + s_maxAckDelay);
            long serverUpper = 3 * serverRtt.GetPtoDuration(includeMaxAckDelay: true, s_maxAckDelay);

            long clientClosedAt = 0, serverClosedAt = 0;
            Assert.True(net.RunUntil(
                () =>
                {
                    if (clientClosedAt == 0 && net.Client.State == ConnectionState.Closed) clientClosedAt = net.Now;
                    if (serverClosedAt == 0 && net.Server.State == ConnectionState.Closed) serverClosedAt = net.Now;
                    return clientClosedAt != 0 && serverClosedAt != 0;
                },
                TimeSpan.FromSeconds(5)));

            // Three PTOs (RFC 9002 §6.2.1: smoothed RTT + max(4 RTTVAR, 1 ms) + max_ack_delay), each side from its
            // own estimate: no shorter than three times RTT + max_ack_delay, no longer than three full PTOs.
            long closing = clientClosedAt - closedAt;
            long draining = serverClosedAt - drainedAt;
            output.WriteLine($"closing {TimeSpan.FromTicks(closing).TotalMilliseconds} ms in [{TimeSpan.FromTicks(clientLower).TotalMilliseconds}, {TimeSpan.FromTicks(clientUpper).TotalMilliseconds}]; draining {TimeSpan.FromTicks(draining).TotalMilliseconds} ms in [{TimeSpan.FromTicks(serverLower).TotalMilliseconds}, {TimeSpan.FromTicks(serverUpper).TotalMilliseconds}]");
            Assert.InRange(closing, clientLower, clientUpper);
            Assert.InRange(draining, serverLower, serverUpper);
            Assert.InRange(TimeSpan.FromTicks(closing).TotalMilliseconds, 100, 1000);
            Assert.InRange(TimeSpan.FromTicks(draining).TotalMilliseconds, 100, 1000);

            // Terminated, with the reasons each side saw; nothing is sent after that.
            Assert.Single(net.ClientEvents, e => e.Kind == ConnectionEventKind.Terminated);
            Assert.Single(net.ServerEvents, e => e.Kind == ConnectionEventKind.Terminated); // at the start of draining, not again
            Assert.False(net.Client.CloseReason!.ClosedByPeer);
            Assert.Equal(long.MaxValue, net.Client.NextTimeout);
            Assert.Equal(long.MaxValue, net.Server.NextTimeout);
        }
    }
}
