using System.Net;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>
/// One server endpoint, two clients: one misbehaves (floods, fragments, optimistic ACKs) while the other downloads.
/// The misbehaving connection is closed with the RFC error code (or, for floods of legal frames, answered within
/// bounds) and the well-behaved download completes intact on the same endpoint. The single-connection versions,
/// with the limits themselves, are in <see cref="MisbehavingPeerTests"/>.
/// </summary>
public sealed class MisbehavingPeerEndpointTests(ITestOutputHelper output)
{
    private static readonly IPEndPoint s_goodAddress = new(IPAddress.Parse("10.0.0.3"), 40001);
    private const int DownloadSize = 2 * 1024 * 1024;

    /// <summary>The two clients, their server-side connections, and the good client's download in progress.</summary>
    private sealed class Scenario : IDisposable
    {
        public Scenario()
        {
            Pair = new EndpointPair();
            GoodEndpoint = Pair.AddEndpoint(s_goodAddress, new EndpointSettings());
            Bad = Pair.Connect();
            Good = Pair.Connect(from: GoodEndpoint);
            Assert.True(Pair.RunUntilEstablished(Bad));
            Assert.True(Pair.RunUntilEstablished(Good));
            BadServer = Pair.ServerSideOf(Bad)!;
            GoodServer = Pair.ServerSideOf(Good)!;
            Assert.Equal(2, Pair.Server.ConnectionCount);
        }

        public EndpointPair Pair { get; }

        public QuicEndpointCore GoodEndpoint { get; }

        public EndpointConnection Bad { get; }

        public EndpointConnection Good { get; }

        public EndpointConnection BadServer { get; }

        public EndpointConnection GoodServer { get; }

        public byte[] Download { get; } = SimulationHelpers.Payload(DownloadSize, 21);

        public ulong DownloadStream { get; private set; }

        /// <summary>The server application starts sending <see cref="Download"/> to the good client.</summary>
        public void StartDownload()
        {
            Assert.True(GoodServer.Core.TryOpenStream(bidirectional: false, out ulong id));
            DownloadStream = id;
            Pair.SendStream(GoodServer, id, Download);
        }

        public bool DownloadDone => Pair.Finished.Contains((Good, DownloadStream));

        /// <summary>Sends one 1-RTT packet from the misbehaving client carrying exactly <paramref name="frames"/>, then lets 2 ms pass.</summary>
        public void SendRawPacket(byte[] frames)
        {
            Bad.Core.InjectRawFrames([0, 0, 0, .. frames]);
            Bad.Core.Ping();
            Pair.Client.OnApplicationOperation(Bad, Pair.Now);
            Pair.RunFor(TimeSpan.FromMilliseconds(2));
        }

        /// <summary>The good client's download completes with the right bytes, and its connection is untouched.</summary>
        public void AssertGoodDownloadCompletes()
        {
            Assert.True(Pair.RunUntil(() => DownloadDone, TimeSpan.FromSeconds(60)), $"the good client received {Pair.ReceivedBytes(Good, DownloadStream).Length} of {DownloadSize} bytes");
            Assert.Equal(Download, Pair.ReceivedBytes(Good, DownloadStream));
            Assert.Null(Good.Core.CloseReason);
            Assert.Null(GoodServer.Core.CloseReason);
            Assert.Equal(ConnectionState.Established, GoodServer.Core.State);
        }

        /// <summary>
        /// The server closed the misbehaving connection itself with <paramref name="code"/>, and the client learned it
        /// (unless the server's packets to it are being dropped).
        /// </summary>
        public QuicCloseReason AssertBadClosed(TransportErrorCode code, bool clientHearsIt = true)
        {
            Assert.True(Pair.RunUntil(() => BadServer.Core.CloseReason is not null, TimeSpan.FromSeconds(5)));
            QuicCloseReason reason = BadServer.Core.CloseReason!;
            Assert.False(reason.ClosedByPeer);
            Assert.False(reason.IsApplicationError);
            Assert.Equal((ulong)code, reason.ErrorCode);
            if (!clientHearsIt) return reason;
            Assert.True(Pair.RunUntil(() => Bad.Core.CloseReason is not null, TimeSpan.FromSeconds(5)));
            Assert.Equal((ulong)code, Bad.Core.CloseReason!.ErrorCode);
            Assert.True(Bad.Core.CloseReason.ClosedByPeer);
            return reason;
        }

        public void AssertServerForgetsBad()
        {
            Assert.True(Pair.RunUntil(() => BadServer.Removed, TimeSpan.FromSeconds(30)), "the server still holds the misbehaving connection");
            Assert.Equal(1, Pair.Server.ConnectionCount);
            Assert.False(GoodServer.Removed);
        }

        public void Dispose() => Pair.Dispose();
    }

    [Fact]
    public void PathChallengeFlood_ResponsesBounded_OtherClientsDownloadCompletes()
    {
        using var s = new Scenario();
        s.StartDownload();
        const int Packets = 200, ChallengesPerPacket = 100;
        byte[] frames = new byte[ChallengesPerPacket * 9];
        for (int i = 0; i < ChallengesPerPacket; i++)
        {
            frames[i * 9] = 0x1a;
            frames[i * 9 + 1] = (byte)i;
        }

        int before = s.Pair.Sent.Count;
        for (int p = 0; p < Packets; p++) s.SendRawPacket(frames);
        s.Pair.RunFor(TimeSpan.FromMilliseconds(200));

        // PATH_CHALLENGE frames are legal, so the flooder is not closed (RFC 9000 §9.3.3 allows answering only some);
        // what the server sends it stays far below one PATH_RESPONSE per challenge.
        long toBad = s.Pair.Sent.Skip(before).Where(d => d.From.Equals(EndpointPair.ServerAddress) && d.To.Equals(EndpointPair.ClientAddress)).Sum(d => (long)d.Data.Length);
        output.WriteLine($"{Packets * ChallengesPerPacket} PATH_CHALLENGEs: the server sent the flooder {toBad:N0} bytes; good client: {s.Pair.ReceivedBytes(s.Good, s.DownloadStream).Length:N0} bytes so far");
        Assert.True(toBad < Packets * ChallengesPerPacket * 9 / 4, $"server sent {toBad} bytes to the flooder");
        Assert.Null(s.BadServer.Core.CloseReason);
        s.AssertGoodDownloadCompletes();
    }

    [Fact]
    public void NewConnectionIdFlood_ClosedWithConnectionIdLimitError_OtherClientsDownloadCompletes()
    {
        using var s = new Scenario();
        s.StartDownload();

        // The server's packets to the flooder are lost, so its RETIRE_CONNECTION_ID frames are never acknowledged.
        s.Pair.Filter = d => !d.To.Equals(EndpointPair.ClientAddress);
        ulong sequence = 8;
        int packets = 0;
        for (; packets < 300 && s.BadServer.Core.CloseReason is null; packets++)
        {
            var frames = new List<byte>();
            for (int i = 0; i < 30; i++, sequence++)
            {
                byte[] seq = [0x80, 0, (byte)(sequence >> 8), (byte)sequence];
                frames.AddRange([0x18, .. seq, .. seq, 8, 1, 2, 3, 4, 5, 6, (byte)(sequence >> 8), (byte)sequence]);
                frames.AddRange(new byte[14]);
                frames.AddRange([(byte)(sequence >> 8), (byte)sequence]);
            }

            s.SendRawPacket(frames.ToArray());
        }

        output.WriteLine($"{sequence - 8} NEW_CONNECTION_IDs in {packets} packets: server {s.BadServer.Core.CloseReason?.ToString() ?? "open"}");
        Assert.True(packets < 300, "the flood was not cut short");
        s.AssertBadClosed(TransportErrorCode.ConnectionIdLimitError, clientHearsIt: false);
        s.Pair.Filter = null;
        s.AssertGoodDownloadCompletes();
        s.AssertServerForgetsBad();
    }

    [Fact]
    public void TinyStreamFragmentsWithGaps_ClosedWithProtocolViolation_OtherClientsDownloadCompletes()
    {
        using var s = new Scenario();
        s.StartDownload();

        // 1-byte STREAM frames at every other offset, last first: each opens a new gap in the reassembly buffer.
        const int FramesPerPacket = 110, Packets = 40;
        long offset = 2L * FramesPerPacket * Packets;
        int sent = 0;
        for (int p = 0; p < Packets && s.BadServer.Core.CloseReason is null; p++)
        {
            var frames = new List<byte>();
            for (int i = 0; i < FramesPerPacket; i++)
            {
                offset -= 2;
                frames.AddRange([0x0e, 0x00, (byte)(0x80 | (offset >> 24)), (byte)(offset >> 16), (byte)(offset >> 8), (byte)offset, 0x01, 0x61]);
            }

            s.SendRawPacket(frames.ToArray());
            sent++;
        }

        output.WriteLine($"{sent} packets of {FramesPerPacket} one-byte fragments: server {s.BadServer.Core.CloseReason?.ToString() ?? "open"}");
        Assert.True(sent < Packets, "the flood was not cut short");
        s.AssertBadClosed(TransportErrorCode.ProtocolViolation);
        s.AssertGoodDownloadCompletes();
        s.AssertServerForgetsBad();
    }

    [Fact]
    public void OptimisticAck_ClosedWithProtocolViolation_OtherClientsDownloadCompletes()
    {
        using var s = new Scenario();
        s.StartDownload();

        // The misbehaving client downloads too, honestly at first, until the server has skipped a packet number (now
        // and then, to catch exactly this).
        Assert.True(s.BadServer.Core.TryOpenStream(bidirectional: false, out ulong badStream));
        byte[] badPayload = SimulationHelpers.Payload(32 * 1024 * 1024, 22);
        s.Pair.SendStream(s.BadServer, badStream, badPayload);
        Assert.True(s.Pair.RunUntil(() => s.BadServer.Core.Statistics.PacketNumbersSkipped > 0, TimeSpan.FromSeconds(30)), "no packet number was skipped");
        s.Pair.RunFor(TimeSpan.FromMilliseconds(50)); // packets after the skipped number go out

        // Then it acknowledges everything up to the largest packet number sent, received or not.
        long largest = s.BadServer.Core.Loss.LargestSent(PacketNumberSpace.ApplicationData);
        byte[] ack = [0x02, .. Fuzz.Mutator.EncodeVarInt((ulong)largest, 0), 0x00, 0x00, .. Fuzz.Mutator.EncodeVarInt((ulong)largest, 0)];
        s.SendRawPacket(ack);
        QuicCloseReason reason = s.AssertBadClosed(TransportErrorCode.ProtocolViolation);
        output.WriteLine($"{s.BadServer.Core.Statistics.PacketNumbersSkipped} packet numbers skipped of {largest + 1}; {reason}");
        Assert.Contains("skipped", reason.Reason, StringComparison.Ordinal);
        Assert.NotEqual(badPayload.Length, s.Pair.ReceivedBytes(s.Bad, badStream).Length); // cut short
        s.AssertGoodDownloadCompletes();
        s.AssertServerForgetsBad();
    }
}
