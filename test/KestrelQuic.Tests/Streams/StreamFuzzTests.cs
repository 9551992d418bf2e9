using KestrelQuic.FlowControl;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class StreamFuzzTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RandomPeerFrames_NeverThrow_AndOnlyReportStreamErrors(int seed)
    {
        var rng = new Random(seed);
        var payload = new byte[3000];
        rng.NextBytes(payload);
        var scratch = new byte[4096];
        int errors = 0;
        for (int round = 0; round < 300; round++)
        {
            var connRecv = new ReceiveFlowController(20_000, 20_000);
            var connSend = new SendFlowController(20_000);
            ulong id = (ulong)rng.Next(4);
            var s = new StreamState(id, isServer: rng.Next(2) == 0, rng.Next(0, 5000), 8000, 8000, connRecv, connSend);
            for (int step = 0; step < 40; step++)
            {
                bool ok;
                TransportError error;
                long offset = rng.Next(0, 9000);
                switch (rng.Next(7))
                {
                    case 0:
                    case 1:
                        ok = s.OnStreamFrame(offset, payload.AsSpan(0, rng.Next(0, 1500)), rng.Next(5) == 0, out error);
                        break;
                    case 2:
                        ok = s.OnResetStream((ulong)rng.Next(10), offset, out error);
                        break;
                    case 3:
                        ok = s.OnStopSending((ulong)rng.Next(10), out error);
                        break;
                    case 4:
                        ok = s.OnMaxStreamData(offset, out error);
                        break;
                    case 5:
                        ok = s.OnStreamDataBlocked(offset, out error);
                        break;
                    default:
                        ok = true;
                        error = default;
                        if (s.CanReceive) s.Read(scratch);
                        if (s.CanSend)
                        {
                            s.Write(payload.AsSpan(0, rng.Next(0, 2000)));
                            while (s.TryGetNextFrame(1200, out long o, out int l, out bool f, out _)) s.OnStreamFrameSent(o, l, f);
                        }

                        break;
                }

                if (!ok)
                {
                    errors++;
                    Assert.True(
                        error.Code is TransportErrorCode.FinalSizeError or TransportErrorCode.FlowControlError or TransportErrorCode.StreamStateError,
                        error.Code.ToString());
                    Assert.False(string.IsNullOrEmpty(error.Reason));
                    break; // a connection error ends the connection
                }

                Assert.True(connRecv.HighestReceived <= connRecv.MaxData);
                if (s.ReceiveFlow is { } flow)
                {
                    Assert.True(flow.HighestReceived <= flow.MaxData);
                    Assert.True(s.Receive!.HeldChunks <= (8000 / ChunkRing.ChunkSize) + 2);
                    if (s.Receive.FinalSize is long size) Assert.True(flow.HighestReceived <= size);
                }

                Assert.True(connSend.Used <= connSend.MaxData);
            }
        }

        Assert.True(errors > 50); // the generator does hit the error paths
    }
}
