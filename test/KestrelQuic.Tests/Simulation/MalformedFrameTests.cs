using KestrelQuic.Connection;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// Frames sent by a (misbehaving) client inside valid 1-RTT packets: the server must close with the RFC's error
/// code and never throw. Frames are written by hand here so the test does not depend on our own encoder.
/// </summary>
public sealed class MalformedFrameTests
{
    // Well-formed encodings, one per frame type (client → server, client-initiated bidi stream 0 where relevant).
    public static TheoryData<string, string> ValidFrames => new()
    {
        { "ACK", "02" + "00" + "00" + "00" + "00" },                  // largest 0, delay 0, 0 ranges, first range 0
        { "ACK_ECN", "03" + "00" + "00" + "00" + "00" + "01" + "02" + "03" },
        { "RESET_STREAM", "04" + "00" + "4001" + "05" },              // stream 0, code 1, final size 5
        { "STOP_SENDING", "05" + "00" + "07" },
        { "CRYPTO", "06" + "00" + "03" + "010203" },
        { "STREAM", "0a" + "00" + "05" + "68656c6c6f" },              // stream 0, LEN, "hello"
        { "STREAM_OFF", "0e" + "00" + "4010" + "02" + "6869" },        // stream 0, OFF+LEN
        { "MAX_DATA", "10" + "80010000" },
        { "MAX_STREAM_DATA", "11" + "00" + "80010000" },
        { "MAX_STREAMS_BIDI", "12" + "4064" },
        { "MAX_STREAMS_UNI", "13" + "4064" },
        { "DATA_BLOCKED", "14" + "4400" },
        { "STREAM_DATA_BLOCKED", "15" + "00" + "4400" },
        { "STREAMS_BLOCKED_BIDI", "16" + "10" },
        { "STREAMS_BLOCKED_UNI", "17" + "10" },
        { "NEW_CONNECTION_ID", "18" + "01" + "00" + "08" + "0102030405060708" + "00112233445566778899aabbccddeeff" },
        { "RETIRE_CONNECTION_ID", "19" + "00" },
        { "PATH_CHALLENGE", "1a" + "0102030405060708" },
        { "PATH_RESPONSE", "1b" + "0102030405060708" },
        { "CONNECTION_CLOSE", "1c" + "0a" + "00" + "03" + "626164" },
        { "APPLICATION_CLOSE", "1d" + "4100" + "03" + "626164" },
        { "DATAGRAM_LEN", "31" + "03" + "010203" },
    };

    private static SimulatedNetwork Connected(Action<KestrelQuic.Configuration.QuicConfiguration>? server = null)
    {
        var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.MaxDatagramFrameSize = 1200),
            SimulationHelpers.ServerConfig(c =>
            {
                c.MaxDatagramFrameSize = 1200;
                server?.Invoke(c);
            }));
        Assert.True(net.RunUntilHandshakeComplete());
        return net;
    }

    /// <summary>
    /// Leading PADDING keeps the frame under test last in the packet without trailing padding: a packet must carry
    /// at least 4 bytes after the packet number for header protection, and zeros appended after a truncated frame
    /// would complete it.
    /// </summary>
    private static byte[] WithLeadingPadding(byte[] frames) => [0, 0, 0, .. frames];

    private static QuicCloseReason SendAndGetServerClose(SimulatedNetwork net, byte[] payload) => SendAndGetClose(net.Client, net.Server!, net, payload);

    /// <summary>Sends <paramref name="payload"/> from <paramref name="sender"/> and returns why <paramref name="receiver"/> closed (the sender is told the same).</summary>
    private static QuicCloseReason SendAndGetClose(QuicConnectionCore sender, QuicConnectionCore receiver, SimulatedNetwork net, byte[] payload)
    {
        sender.InjectRawFrames(WithLeadingPadding(payload));
        Assert.True(net.RunUntil(() => receiver.CloseReason is not null, TimeSpan.FromSeconds(5)), "receiver did not close");
        Assert.False(receiver.CloseReason!.ClosedByPeer);
        Assert.True(net.RunUntil(() => sender.CloseReason is not null, TimeSpan.FromSeconds(5)));
        Assert.Equal(receiver.CloseReason.ErrorCode, sender.CloseReason!.ErrorCode);
        return receiver.CloseReason;
    }

    [Theory]
    [MemberData(nameof(ValidFrames))]
    public void TruncatedAtEveryOffset_ClosesWithFrameEncodingError(string name, string hex)
    {
        byte[] frame = Convert.FromHexString(hex);
        for (int length = 1; length < frame.Length; length++)
        {
            using SimulatedNetwork net = Connected();
            QuicCloseReason reason = SendAndGetServerClose(net, frame[..length]);
            Assert.True((ulong)TransportErrorCode.FrameEncodingError == reason.ErrorCode, $"{name} truncated to {length}: {reason}");
            if (frame[0] is >= 0x08 and <= 0x0f) Assert.InRange(reason.FrameType, 0x08UL, 0x0fUL);
            else Assert.Equal((ulong)frame[0], reason.FrameType);
        }
    }

    // Frames a server sends, among them NEW_TOKEN, which only a client may receive (stream 1: server-initiated bidi).
    public static TheoryData<string, string> ServerFrames => new()
    {
        { "NEW_TOKEN", "07" + "04" + "a1b2c3d4" },
        { "NEW_CONNECTION_ID", "18" + "01" + "00" + "08" + "0102030405060708" + "00112233445566778899aabbccddeeff" },
        { "MAX_STREAMS_BIDI", "12" + "4064" },
        { "STREAM", "0a" + "01" + "05" + "68656c6c6f" },
        { "ACK", "02" + "00" + "00" + "00" + "00" },
    };

    [Theory]
    [MemberData(nameof(ServerFrames))]
    public void TruncatedAtEveryOffset_ReceivedByTheClient_ClosesWithFrameEncodingError(string name, string hex)
    {
        byte[] frame = Convert.FromHexString(hex);
        for (int length = 1; length < frame.Length; length++)
        {
            using SimulatedNetwork net = Connected();
            QuicCloseReason reason = SendAndGetClose(net.Server!, net.Client, net, frame[..length]);
            Assert.True((ulong)TransportErrorCode.FrameEncodingError == reason.ErrorCode, $"{name} truncated to {length}: {reason}");
            Assert.Equal((ulong)frame[0], reason.FrameType);
        }
    }

    [Theory]
    [InlineData("empty packet is not possible: PADDING only is fine", "00", null)]
    [InlineData("unknown frame type", "21", TransportErrorCode.FrameEncodingError)]
    [InlineData("non-minimal frame type encoding", "4001", TransportErrorCode.ProtocolViolation)]
    [InlineData("HANDSHAKE_DONE from a client", "1e", TransportErrorCode.ProtocolViolation)]
    [InlineData("NEW_TOKEN from a client", "07" + "02" + "abcd", TransportErrorCode.ProtocolViolation)]
    [InlineData("STREAM on a server-initiated unidirectional stream", "0a" + "03" + "01" + "00", TransportErrorCode.StreamStateError)]
    [InlineData("STREAM on a server-initiated bidi stream never opened", "0a" + "01" + "01" + "00", TransportErrorCode.StreamStateError)]
    [InlineData("STOP_SENDING on a client-initiated unidirectional stream", "05" + "02" + "00", TransportErrorCode.StreamStateError)]
    [InlineData("STREAM beyond the stream limit", "0a" + "80000fa0" + "01" + "00", TransportErrorCode.StreamLimitError)]
    [InlineData("MAX_STREAMS above 2^60", "12" + "d000000000000001", TransportErrorCode.FrameEncodingError)]
    [InlineData("STREAM beyond the flow-control window", "0e" + "00" + "c000000100000000" + "01" + "00", TransportErrorCode.FlowControlError)]
    [InlineData("RESET_STREAM below data already received", "0a0005" + "68656c6c6f" + "04" + "00" + "00" + "02", TransportErrorCode.FinalSizeError)]
    [InlineData("final size changed", "0b0003" + "616263" + "0b0004" + "61626364", TransportErrorCode.FinalSizeError)]
    [InlineData("ACK of a packet never sent", "02" + "80100000" + "00" + "00" + "00", TransportErrorCode.ProtocolViolation)]
    [InlineData("RETIRE_CONNECTION_ID never issued", "19" + "3f", TransportErrorCode.ProtocolViolation)]
    [InlineData("too many connection IDs", "18" + "10" + "00" + "08" + "0102030405060701" + "00112233445566778899aabbccddee01"
        + "18" + "11" + "00" + "08" + "0102030405060702" + "00112233445566778899aabbccddee02"
        + "18" + "12" + "00" + "08" + "0102030405060703" + "00112233445566778899aabbccddee03"
        + "18" + "13" + "00" + "08" + "0102030405060704" + "00112233445566778899aabbccddee04"
        + "18" + "14" + "00" + "08" + "0102030405060705" + "00112233445566778899aabbccddee05", TransportErrorCode.ConnectionIdLimitError)]
    [InlineData("CRYPTO far beyond the buffer limit", "06" + "80100000" + "01" + "00", TransportErrorCode.CryptoBufferExceeded)]
    [InlineData("CRYPTO with a handshake message declared larger than the buffer", "06" + "00" + "04" + "04ffffff", TransportErrorCode.CryptoBufferExceeded)]
    public void SemanticViolations_CloseWithRfcErrorCode(string description, string hex, TransportErrorCode? expected)
    {
        using SimulatedNetwork net = Connected();
        if (expected is null)
        {
            net.Client.InjectRawFrames(Convert.FromHexString(hex));
            net.RunFor(TimeSpan.FromSeconds(1));
            Assert.Null(net.Server!.CloseReason);
            return;
        }

        QuicCloseReason reason = SendAndGetServerClose(net, Convert.FromHexString(hex));
        Assert.True((ulong)expected.Value == reason.ErrorCode, $"{description}: {reason}");
    }

    [Fact]
    public void DatagramNotNegotiated_IsProtocolViolation()
    {
        using var net = new SimulatedNetwork(SimulationHelpers.ClientConfig(), SimulationHelpers.ServerConfig());
        Assert.True(net.RunUntilHandshakeComplete());
        QuicCloseReason reason = SendAndGetServerClose(net, Convert.FromHexString("3103010203"));
        Assert.Equal((ulong)TransportErrorCode.ProtocolViolation, reason.ErrorCode);
    }

    [Fact]
    public void RandomFramePayloads_NeverThrow()
    {
        var random = new Random(20261125);
        byte[][] seeds = ValidFrames.Select(row => Convert.FromHexString((string)row[1])).ToArray();
        for (int i = 0; i < 200; i++)
        {
            using SimulatedNetwork net = Connected();
            byte[] payload = (byte[])seeds[random.Next(seeds.Length)].Clone();
            int mutations = 1 + random.Next(3);
            for (int m = 0; m < mutations; m++) payload[random.Next(payload.Length)] = (byte)random.Next(256);
            net.Client.InjectRawFrames(WithLeadingPadding(payload));
            net.RunFor(TimeSpan.FromSeconds(1));
            // Either accepted, or closed by the server with a transport error code (a mutation may also turn into a
            // valid close from the client); the simulation itself throws if anything escaped.
            if (net.Server!.CloseReason is { ClosedByPeer: false } reason)
            {
                Assert.False(reason.IsApplicationError);
                Assert.True(reason.ErrorCode <= (ulong)TransportErrorCode.VersionNegotiationError, reason.ToString());
            }
        }
    }
}
