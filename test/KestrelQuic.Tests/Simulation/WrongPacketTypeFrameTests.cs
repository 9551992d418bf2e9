using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// A frame in a packet type that must not carry it (RFC 9000 §12.4, Table 3), sent to a connection in progress:
/// the receiver closes with PROTOCOL_VIOLATION naming the frame type, and the sender learns it from the
/// CONNECTION_CLOSE. The frames are decoded from what the receiver actually decrypted.
/// </summary>
public sealed class WrongPacketTypeFrameTests(ITestOutputHelper output)
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(1, 32).Select(i => (byte)(i * 3)).ToArray();

    // Three PADDING bytes first, so that even a one-byte frame leaves room for the header protection sample.
    public static TheoryData<string, byte[], ulong> HandshakeCases => new()
    {
        { "client STREAM", [0, 0, 0, 0x0a, 0x00, 0x01, 0x78], 0x0a },   // STREAM (LEN) on stream 0, one byte
        { "client MAX_DATA", [0, 0, 0, 0x10, 0x44, 0x00], 0x10 },       // MAX_DATA 1024
        { "server HANDSHAKE_DONE", [0, 0, 0, 0x1e], 0x1e },
        { "server NEW_TOKEN", [0, 0, 0, 0x07, 0x02, 0xaa, 0xbb], 0x07 },
    };

    public static TheoryData<string, byte[], ulong> ZeroRttCases => new()
    {
        { "ACK", [0, 0, 0, 0x02, 0x00, 0x00, 0x00, 0x00], 0x02 },       // ACK of packet 0
        { "HANDSHAKE_DONE", [0, 0, 0, 0x1e], 0x1e },
        { "CRYPTO", [0, 0, 0, 0x06, 0x00, 0x01, 0x14], 0x06 },
        { "NEW_TOKEN", [0, 0, 0, 0x07, 0x01, 0xaa], 0x07 },
    };

    [Theory]
    [MemberData(nameof(HandshakeCases))]
    public void FrameInAHandshakePacket_ClosesWithProtocolViolationNamingTheFrameType(string name, byte[] frames, ulong frameType)
    {
        bool fromClient = name.StartsWith("client", StringComparison.Ordinal);
        var recorder = new FrameRecorder();
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig(), tracers: recorder);
        if (fromClient)
        {
            // The client's first Handshake packet (it would carry its Finished, which moves to the next packet).
            net.Client.InjectRawFrames(frames, PacketType.Handshake);
        }
        else
        {
            // The server's first Handshake packet (EncryptedExtensions onward move to the next ones).
            net.ServerCreated = server => server.InjectRawFrames(frames, PacketType.Handshake);
        }

        Assert.True(net.RunUntil(() => net.Server?.CloseReason is not null && net.Client.CloseReason is not null, TimeSpan.FromSeconds(10)));
        QuicConnectionCore receiver = fromClient ? net.Server! : net.Client;
        QuicConnectionCore sender = fromClient ? net.Client : net.Server!;
        AssertClosedForFrame(receiver, sender, fromClient ? recorder.ServerReceived : recorder.ClientReceived, PacketType.Handshake, frameType);

        // Processing stopped at the bad frame: the packets after it (the rest of the handshake) were not acted on.
        Assert.False(receiver.IsHandshakeComplete);
    }

    [Theory]
    [MemberData(nameof(ZeroRttCases))]
    public void FrameInAZeroRttPacket_ClosesWithProtocolViolationNamingTheFrameType(string name, byte[] frames, ulong frameType)
    {
        _ = name;
        QuicConfiguration server = SimulationHelpers.ServerConfig(c =>
        {
            c.SessionTicketKey = s_ticketKey;
            c.EnableEarlyData = true;
        });
        byte[] ticket;
        using (var first = new SimulatedNetwork(SimulationHelpers.ClientConfig(), server, startTime: SimulationClock.EarlierConnection))
        {
            Assert.True(first.RunUntil(() => first.ClientEvents.Any(e => e.Kind == ConnectionEventKind.SessionTicketReceived), TimeSpan.FromSeconds(10)));
            ticket = first.ClientEvents.First(e => e.Kind == ConnectionEventKind.SessionTicketReceived).Data!;
        }

        var recorder = new FrameRecorder();
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(c =>
        {
            c.SessionTicket = ticket;
            c.EnableEarlyData = true;
        }), server, tracers: recorder);

        // Early data makes the client build 0-RTT packets; the first one carries the forbidden frame instead.
        Assert.True(net.Client.CanSendEarlyData);
        Assert.True(net.Client.TryOpenStream(true, out ulong id));
        Assert.Equal(8, net.Client.WriteStream(id, "GET /ok\n"u8, fin: true));
        net.Client.InjectRawFrames(frames, PacketType.ZeroRtt);
        Assert.True(net.RunUntil(() => net.Server?.CloseReason is not null && net.Client.CloseReason is not null, TimeSpan.FromSeconds(10)));

        AssertClosedForFrame(net.Server!, net.Client, recorder.ServerReceived, PacketType.ZeroRtt, frameType);
        Assert.True(net.Client.Statistics.ZeroRttPacketsSent > 0);
    }

    private void AssertClosedForFrame(QuicConnectionCore receiver, QuicConnectionCore sender, List<RecordedFrame> received, PacketType packetType, ulong frameType)
    {
        output.WriteLine($"receiver: {receiver.CloseReason}; sender: {sender.CloseReason}");

        // On the wire: the receiver decrypted a packet of that type holding the frame, and refused it.
        RecordedFrame offending = Assert.Single(received, f => f.Rejected);
        Assert.Equal(packetType, offending.PacketType);
        Assert.Equal(frameType, offending.RawType);

        QuicCloseReason local = receiver.CloseReason!;
        Assert.False(local.ClosedByPeer);
        Assert.False(local.IsApplicationError);
        Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, local.ErrorCode);
        Assert.Equal(frameType, local.FrameType);

        // The sender got the CONNECTION_CLOSE (0x1c) with the same code and frame type.
        QuicCloseReason remote = sender.CloseReason!;
        Assert.True(remote.ClosedByPeer);
        Assert.False(remote.IsApplicationError);
        Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, remote.ErrorCode);
        Assert.Equal(frameType, remote.FrameType);
    }
}
