using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Stateless reset (RFC 9000 §10.3): a server that lost its state ends the client's connection with the token it issued.</summary>
public sealed class StatelessResetSimulationTests
{
    /// <summary>RFC 9000 §10.3: 0b01 fixed bits, unpredictable bits, then the 16-byte token; at least 21 bytes.</summary>
    private static byte[] StatelessReset(byte[] token, int length, Random random)
    {
        var datagram = new byte[length];
        random.NextBytes(datagram);
        datagram[0] = (byte)(0x40 | (datagram[0] & 0x3f));
        token.CopyTo(datagram.AsSpan(length - 16));
        return datagram;
    }

    private static Dictionary<string, byte[]> IssuedTokens(QuicConnectionCore server)
        => server.ConnectionIds.LocalIds.ToDictionary(e => Convert.ToHexString(e.ConnectionId), e => e.StatelessResetToken!);

    [Fact]
    public void ServerLosesState_StatelessResetWithIssuedToken_TerminatesClient()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        net.RunFor(TimeSpan.FromMilliseconds(200)); // NEW_CONNECTION_ID frames exchanged

        // The endpoint derives tokens from a static key, so it can still compute them after losing the connection.
        Dictionary<string, byte[]> tokens = IssuedTokens(net.Server!);
        Assert.True(tokens.Count >= 2);
        int cidLength = net.ServerConfig.ConnectionIdLength;
        var random = new Random(3);
        int resetsSent = 0;
        net.DiscardServer();
        net.ServerlessResponder = datagram =>
        {
            // Only short-header packets for a connection ID we issued get a reset, smaller than what triggered it.
            if ((datagram[0] & 0x80) != 0 || datagram.Length < 1 + cidLength) return null;
            if (!tokens.TryGetValue(Convert.ToHexString(datagram, 1, cidLength), out byte[]? token)) return null;
            resetsSent++;
            return StatelessReset(token, Math.Max(21, Math.Min(datagram.Length - 1, 43)), random);
        };

        long start = net.Now;
        net.Client.Ping();
        Assert.True(net.RunUntil(() => net.Client.State == ConnectionState.Closed, TimeSpan.FromSeconds(5)));

        Assert.Equal(1, resetsSent);
        QuicCloseReason reason = net.Client.CloseReason!;
        Assert.True(reason.StatelessReset);
        Assert.True(reason.ClosedByPeer);
        Assert.False(reason.IdleTimeout);
        Assert.Contains(net.ClientEvents, e => e.Kind == ConnectionEventKind.Terminated);
        // Ended on the round trip of the PING (2 × 10 ms), not by a timeout: no draining period after a reset.
        Assert.InRange(TimeSpan.FromTicks(net.Now - start).TotalMilliseconds, 1, 100);
        Assert.Equal(long.MaxValue, net.Client.NextTimeout);
    }

    [Fact]
    public void StatelessReset_OnlyTheTokenOfTheIdInUseIsAccepted()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        Assert.True(net.RunUntil(() => net.Client.ConnectionIds.PeerIds.Count >= 2, TimeSpan.FromSeconds(1)));

        var random = new Random(4);
        ConnectionIdEntry inUse = net.Client.ConnectionIds.ActivePeer!;
        ConnectionIdEntry spare = net.Client.ConnectionIds.PeerIds.First(e => e != inUse);
        Assert.Equal(inUse.StatelessResetToken, net.Server!.ConnectionIds.FindLocal(inUse.ConnectionId)!.StatelessResetToken);

        // A random token, or the token of a connection ID not used yet (RFC 9000 §10.3.1), is not a reset.
        net.Client.ReceiveDatagram(StatelessReset(random.NextBytes(16), 40, random), SimulatedNetwork.ServerAddress, net.Now);
        net.Client.ReceiveDatagram(StatelessReset(spare.StatelessResetToken!, 40, random), SimulatedNetwork.ServerAddress, net.Now);
        // Too short to be a reset (fewer than 21 bytes), even with the right token at the end.
        net.Client.ReceiveDatagram(StatelessReset(inUse.StatelessResetToken!, 20, random), SimulatedNetwork.ServerAddress, net.Now);
        Assert.Equal(ConnectionState.Established, net.Client.State);
        Assert.Null(net.Client.CloseReason);

        net.Client.ReceiveDatagram(StatelessReset(inUse.StatelessResetToken!, 40, random), SimulatedNetwork.ServerAddress, net.Now);
        Assert.Equal(ConnectionState.Closed, net.Client.State);
        Assert.True(net.Client.CloseReason!.StatelessReset);
    }
}

file static class RandomExtensions
{
    public static byte[] NextBytes(this Random random, int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }
}
