using KestrelQuic.Frames;
using KestrelQuic.Packets;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// A sender held back by the peer's limits says so on the wire (RFC 9000 §4.1, §4.6): DATA_BLOCKED,
/// STREAM_DATA_BLOCKED and STREAMS_BLOCKED, each decoded from the packets the receiver decrypted, carrying the limit
/// the sender is stuck at; once the receiver raises the limit the transfer completes with its content intact.
/// </summary>
public sealed class BlockedFramesSimulationTests(ITestOutputHelper output)
{
    private const int Window = 16 * 1024;

    private static SimulatedNetwork Connect(FrameRecorder recorder, Action<KestrelQuic.Configuration.QuicConfiguration> server)
    {
        var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(server), tracers: recorder);
        Assert.True(net.RunUntilHandshakeComplete());
        return net;
    }

    private void Log(FrameRecorder recorder)
    {
        output.WriteLine("server received: " + string.Join(", ", recorder.ServerReceived.Where(f => f.Type is not (FrameType.Stream or FrameType.Ack or FrameType.Crypto)).Select(f => $"{f.Type}(id {f.StreamId}, max {f.Maximum})").Distinct()));
        output.WriteLine("client received: " + string.Join(", ", recorder.ClientReceived.Where(f => f.Type is not (FrameType.Stream or FrameType.Ack or FrameType.Crypto)).Select(f => $"{f.Type}(id {f.StreamId}, max {f.Maximum})").Distinct()));
    }

    [Fact]
    public void StreamWindowExhausted_StreamDataBlockedOnTheWire_TransferCompletesAfterMaxStreamData()
    {
        var recorder = new FrameRecorder();
        using SimulatedNetwork net = Connect(recorder, c =>
        {
            c.MaxStreamData = Window;
            c.MaxStreamReceiveWindow = Window;
        });
        var pump = new StreamPump(net);
        bool serverReads = false;
        pump.ReadEnabled = c => c != net.Server || serverReads;

        byte[] payload = SimulationHelpers.Payload(200_000, 11);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        pump.Send(net.Client, id, payload);
        net.RunFor(TimeSpan.FromSeconds(2));
        Log(recorder);

        Assert.Equal(Window, (long)net.Client.GetStream(id)!.Send!.SentOffset);
        RecordedFrame blocked = recorder.ServerReceived.First(f => f.Type == FrameType.StreamDataBlocked);
        Assert.Equal(PacketType.OneRtt, blocked.PacketType);
        Assert.Equal(id, blocked.StreamId);
        Assert.Equal((ulong)Window, blocked.Maximum);
        Assert.DoesNotContain(recorder.ServerReceived, f => f.Type is FrameType.DataBlocked);
        Assert.DoesNotContain(recorder.ClientReceived, f => f.Type == FrameType.MaxStreamData && f.StreamId == id);

        serverReads = true;
        pump.ReadAll();
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        Assert.Contains(recorder.ClientReceived, f => f.Type == FrameType.MaxStreamData && f.StreamId == id && f.Maximum > Window && f.Time > blocked.Time);
    }

    [Fact]
    public void ConnectionWindowExhausted_DataBlockedOnTheWire_TransferCompletesAfterMaxData()
    {
        var recorder = new FrameRecorder();
        using SimulatedNetwork net = Connect(recorder, c =>
        {
            c.MaxData = 2 * Window;
            c.MaxConnectionReceiveWindow = 2 * Window;
        });
        var pump = new StreamPump(net);
        bool serverReads = false;
        pump.ReadEnabled = c => c != net.Server || serverReads;

        // The stream window (1 MiB) is far from reached: only the connection is blocked.
        byte[] payload = SimulationHelpers.Payload(200_000, 12);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        pump.Send(net.Client, id, payload);
        net.RunFor(TimeSpan.FromSeconds(2));
        Log(recorder);

        Assert.Equal(2 * Window, (long)net.Client.GetStream(id)!.Send!.SentOffset);
        RecordedFrame blocked = recorder.ServerReceived.First(f => f.Type == FrameType.DataBlocked);
        Assert.Equal(PacketType.OneRtt, blocked.PacketType);
        Assert.Equal((ulong)(2 * Window), blocked.Maximum);
        Assert.DoesNotContain(recorder.ServerReceived, f => f.Type is FrameType.StreamDataBlocked);
        Assert.DoesNotContain(recorder.ClientReceived, f => f.Type == FrameType.MaxData);

        serverReads = true;
        pump.ReadAll();
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(60)));
        Assert.Equal(payload, pump.ReceivedBytes(net.Server!, id));
        Assert.Contains(recorder.ClientReceived, f => f.Type == FrameType.MaxData && f.Maximum > (ulong)(2 * Window) && f.Time > blocked.Time);
    }

    [Fact]
    public void StreamLimitReached_StreamsBlockedBidiAndUniOnTheWire_NewStreamsOpenAfterMaxStreams()
    {
        var recorder = new FrameRecorder();
        using SimulatedNetwork net = Connect(recorder, c =>
        {
            c.MaxBidirectionalStreams = 2;
            c.MaxUnidirectionalStreams = 1;
        });
        var pump = new StreamPump(net);

        Assert.True(net.Client.TryOpenStream(true, out ulong bidi0));
        Assert.True(net.Client.TryOpenStream(true, out ulong bidi1));
        Assert.False(net.Client.TryOpenStream(true, out _));
        Assert.True(net.Client.TryOpenStream(false, out ulong uni0));
        Assert.False(net.Client.TryOpenStream(false, out _));
        net.RunFor(TimeSpan.FromSeconds(1));
        Log(recorder);

        RecordedFrame bidiBlocked = recorder.ServerReceived.First(f => f.Type == FrameType.StreamsBlockedBidi);
        RecordedFrame uniBlocked = recorder.ServerReceived.First(f => f.Type == FrameType.StreamsBlockedUni);
        Assert.Equal(2UL, bidiBlocked.Maximum);
        Assert.Equal(1UL, uniBlocked.Maximum);
        Assert.Equal(PacketType.OneRtt, bidiBlocked.PacketType);
        Assert.DoesNotContain(recorder.ClientReceived, f => f.Type is FrameType.MaxStreamsBidi or FrameType.MaxStreamsUni);

        // The open streams finish (the server answers the bidirectional ones with an empty FIN): the server's
        // MAX_STREAMS frames let the blocked opens through.
        byte[][] payloads = [SimulationHelpers.Payload(5000, 1), SimulationHelpers.Payload(6000, 2), SimulationHelpers.Payload(7000, 3)];
        pump.Send(net.Client, bidi0, payloads[0]);
        pump.Send(net.Client, bidi1, payloads[1]);
        pump.Send(net.Client, uni0, payloads[2]);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, bidi0)) && pump.Finished.Contains((net.Server!, bidi1)) && pump.Finished.Contains((net.Server!, uni0)), TimeSpan.FromSeconds(10)));
        pump.Send(net.Server!, bidi0, []);
        pump.Send(net.Server!, bidi1, []);
        Assert.True(net.RunUntil(
            () => net.Client.AvailableLocalStreams(QuicStreamType.Bidirectional) > 0 && net.Client.AvailableLocalStreams(QuicStreamType.Unidirectional) > 0,
            TimeSpan.FromSeconds(10)));
        Log(recorder);
        Assert.Contains(recorder.ClientReceived, f => f.Type == FrameType.MaxStreamsBidi && f.Maximum > 2 && f.Time > bidiBlocked.Time);
        Assert.Contains(recorder.ClientReceived, f => f.Type == FrameType.MaxStreamsUni && f.Maximum > 1 && f.Time > uniBlocked.Time);

        Assert.True(net.Client.TryOpenStream(true, out ulong bidi2));
        Assert.Equal(8UL, bidi2); // the third client-initiated bidirectional stream
        Assert.True(net.Client.TryOpenStream(false, out ulong uni1));
        Assert.Equal(6UL, uni1); // the second client-initiated unidirectional stream
        byte[] late = SimulationHelpers.Payload(50_000, 4);
        pump.Send(net.Client, bidi2, late);
        pump.Send(net.Client, uni1, late);
        Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, bidi2)) && pump.Finished.Contains((net.Server!, uni1)), TimeSpan.FromSeconds(10)));
        Assert.Equal(payloads[0], pump.ReceivedBytes(net.Server!, bidi0));
        Assert.Equal(payloads[2], pump.ReceivedBytes(net.Server!, uni0));
        Assert.Equal(late, pump.ReceivedBytes(net.Server!, bidi2));
        Assert.Equal(late, pump.ReceivedBytes(net.Server!, uni1));
    }
}
