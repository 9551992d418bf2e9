using KestrelQuic.Connection;
using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Stream termination and stream credit end to end: RESET_STREAM, STOP_SENDING (RFC 9000 §3, §19.4, §19.5) and MAX_STREAMS (§4.6).</summary>
public sealed class StreamLifecycleSimulationTests
{
    private static bool HasEvent(List<ConnectionEvent> events, ConnectionEventKind kind, ulong streamId)
        => events.Any(e => e.Kind == kind && e.StreamId == streamId);

    [Fact]
    public void ResetStream_PeerSeesErrorCode_AndStreamEndsOnBothSides()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());

        Assert.True(net.Client.TryOpenStream(bidirectional: true, out ulong id));
        byte[] payload = SimulationHelpers.Payload(300_000, 1);
        pump.Send(net.Client, id, payload, fin: false);
        Assert.True(net.RunUntil(() => net.Server!.GetStream(id)?.Receive?.HighestReceivedOffset > 50_000, TimeSpan.FromSeconds(5)));

        net.Client.ResetStream(id, 0x77);
        Assert.Equal(SendStreamState.ResetSent, net.Client.GetStream(id)!.SendState);
        Assert.True(net.RunUntil(() => HasEvent(net.ServerEvents, ConnectionEventKind.StreamReset, id), TimeSpan.FromSeconds(5)));

        ConnectionEvent reset = net.ServerEvents.Single(e => e.Kind == ConnectionEventKind.StreamReset && e.StreamId == id);
        Assert.Equal(0x77UL, reset.ErrorCode);
        StreamState serverStream = net.Server!.GetStream(id)!;
        Assert.Equal(0x77UL, serverStream.PeerResetErrorCode);
        Assert.Equal(ReceiveStreamState.ResetRecvd, serverStream.ReceiveState);
        // RFC 9000 §4.5: the final size carried by RESET_STREAM is what the client had sent, and it is charged to flow control.
        long finalSize = net.Client.GetStream(id)!.ResetFinalSize;
        Assert.InRange(finalSize, 50_001, payload.Length);
        Assert.Equal(finalSize, serverStream.ReceiveFlow!.HighestReceived);
        Assert.DoesNotContain((net.Server, id), pump.Finished);

        // The RESET_STREAM is acknowledged: Reset Sent → Reset Recvd on the client.
        Assert.True(net.RunUntil(() => net.Client.GetStream(id)!.SendState == SendStreamState.ResetRecvd, TimeSpan.FromSeconds(5)));

        // The server application reads the reset (Reset Read) and finishes its own direction: the stream closes on both sides.
        net.Server.ReadStream(id, new byte[16], out bool finished);
        Assert.False(finished);
        Assert.Equal(ReceiveStreamState.ResetRead, serverStream.ReceiveState);
        net.Server.FinishStream(id);
        Assert.True(net.RunUntil(
            () => HasEvent(net.ClientEvents, ConnectionEventKind.StreamClosed, id) && HasEvent(net.ServerEvents, ConnectionEventKind.StreamClosed, id),
            TimeSpan.FromSeconds(5)));
        Assert.Null(net.Client.GetStream(id));
        Assert.Null(net.Server.GetStream(id));
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server.CloseReason);
    }

    [Fact]
    public void StopSending_PeerSeesErrorCode_RespondsWithResetStream_AndStreamEnds()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        var pump = new StreamPump(net);
        Assert.True(net.RunUntilHandshakeComplete());

        Assert.True(net.Client.TryOpenStream(bidirectional: true, out ulong id));
        byte[] request = SimulationHelpers.Payload(100, 2);
        pump.Send(net.Client, id, request);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(5)));
        Assert.Equal(request, pump.ReceivedBytes(net.Server!, id));

        byte[] response = SimulationHelpers.Payload(4 * 1024 * 1024, 3);
        pump.Send(net.Server!, id, response);
        Assert.True(net.RunUntil(() => pump.ReceivedBytes(net.Client, id).Length > 64 * 1024, TimeSpan.FromSeconds(10)));

        net.Client.StopSending(id, 0x55);
        Assert.True(net.RunUntil(() => HasEvent(net.ServerEvents, ConnectionEventKind.StreamStopSending, id), TimeSpan.FromSeconds(5)));
        Assert.Equal(0x55UL, net.ServerEvents.Single(e => e.Kind == ConnectionEventKind.StreamStopSending && e.StreamId == id).ErrorCode);

        // RFC 9000 §3.5: the sender answers with RESET_STREAM, copying the STOP_SENDING error code.
        Assert.True(net.RunUntil(() => HasEvent(net.ClientEvents, ConnectionEventKind.StreamReset, id), TimeSpan.FromSeconds(5)));
        Assert.Equal(0x55UL, net.ClientEvents.Single(e => e.Kind == ConnectionEventKind.StreamReset && e.StreamId == id).ErrorCode);

        Assert.True(net.RunUntil(
            () => HasEvent(net.ClientEvents, ConnectionEventKind.StreamClosed, id) && HasEvent(net.ServerEvents, ConnectionEventKind.StreamClosed, id),
            TimeSpan.FromSeconds(5)));
        Assert.Null(net.Client.GetStream(id));
        Assert.Null(net.Server!.GetStream(id));

        // The server stopped sending: only part of the response was ever delivered, and what arrived is a prefix of it.
        byte[] got = pump.ReceivedBytes(net.Client, id);
        Assert.True(got.Length < response.Length, $"{got.Length} bytes delivered");
        Assert.Equal(response.AsSpan(0, got.Length).ToArray(), got);
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server.CloseReason);
    }

    [Fact]
    public void ThreeHundredSequentialStreams_WithLimitOf100_AllComplete()
    {
        const int total = 300;
        using var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(),
            SimulationHelpers.ServerConfig(c => c.MaxBidirectionalStreams = 100));
        var pump = new StreamPump(net);
        Action<QuicConnectionCore, ConnectionEvent> pumpHandler = net.OnEvent!;
        var opened = new List<ulong>();
        var responded = new HashSet<ulong>();
        int maxServerStreams = 0;
        bool refusedAtLimit = false;

        static byte[] Request(int i) => SimulationHelpers.Payload(700 + (i * 37 % 2000), i);
        static byte[] Response(int i) => SimulationHelpers.Payload(900 + (i * 53 % 3000), 100_000 + i);

        void OpenMore()
        {
            while (opened.Count < total)
            {
                if (!net.Client.TryOpenStream(bidirectional: true, out ulong id))
                {
                    refusedAtLimit |= opened.Count == 100;
                    return;
                }

                pump.Send(net.Client, id, Request(opened.Count));
                opened.Add(id);
            }
        }

        net.OnEvent = (connection, e) =>
        {
            pumpHandler(connection, e);
            if (connection == net.Client && e.Kind == ConnectionEventKind.StreamsAvailable) OpenMore();
            if (connection == net.Server && pump.Finished.Contains((connection, e.StreamId)) && responded.Add(e.StreamId))
            {
                pump.Send(connection, e.StreamId, Response((int)(e.StreamId / 4)));
            }

            if (net.Server is not null) maxServerStreams = Math.Max(maxServerStreams, net.Server.StreamCount);
        };

        Assert.True(net.RunUntilHandshakeComplete());
        OpenMore();
        Assert.Equal(100, opened.Count); // exactly the initial_max_streams_bidi the server allowed
        Assert.True(refusedAtLimit);

        bool done = net.RunUntil(() => opened.Count == total && opened.All(id => pump.Finished.Contains((net.Client, id))), TimeSpan.FromSeconds(60));
        Assert.True(done, $"opened {opened.Count}, completed {opened.Count(id => pump.Finished.Contains((net.Client, id)))}");

        for (int i = 0; i < total; i++)
        {
            ulong id = opened[i];
            Assert.Equal((ulong)i * 4, id);
            Assert.Equal(Request(i), pump.ReceivedBytes(net.Server!, id));
            Assert.Equal(Response(i), pump.ReceivedBytes(net.Client, id));
        }

        // Never more than 100 client streams alive on the server at once: credit came back as streams closed.
        Assert.InRange(maxServerStreams, 1, 100);
        Assert.Null(net.Client.CloseReason);
        Assert.Null(net.Server!.CloseReason);
    }
}
