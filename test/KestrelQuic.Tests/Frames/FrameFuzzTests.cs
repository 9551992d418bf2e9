using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Frames;

public sealed class FrameFuzzTests
{
    private static readonly PacketType[] PacketTypes = [PacketType.Initial, PacketType.Handshake, PacketType.ZeroRtt, PacketType.OneRtt];

    [Fact]
    public void RandomMutation_OfValidPayloads_NeverThrows()
    {
        var random = new Random(0x5eed);
        List<FrameSample> samples = FrameSamples.All();
        var ranges = new ValueRange[64];
        int frames = 0, errors = 0;
        for (int iteration = 0; iteration < 20000; iteration++)
        {
            // 1-4 frames concatenated, then mutated.
            var payload = new List<byte>();
            int n = random.Next(1, 5);
            for (int i = 0; i < n; i++) payload.AddRange(samples[random.Next(samples.Count)].Bytes);
            byte[] bytes = payload.ToArray();
            int mutations = random.Next(1, 6);
            for (int m = 0; m < mutations; m++)
            {
                switch (random.Next(4))
                {
                    case 0:
                        bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                        break;
                    case 1:
                        bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                        break;
                    case 2:
                        // Varint-prefix flip: turns small fields into large ones.
                        bytes[random.Next(bytes.Length)] |= 0xc0;
                        break;
                    default:
                        bytes = bytes.AsSpan(0, random.Next(bytes.Length + 1)).ToArray();
                        if (bytes.Length == 0) bytes = [0x01];
                        break;
                }
            }

            (int f, int e) = Drain(bytes, PacketTypes[iteration & 3], ranges);
            frames += f;
            errors += e;
        }

        // Sanity: the fuzz exercised both outcomes.
        Assert.True(frames > 1000);
        Assert.True(errors > 1000);
    }

    [Fact]
    public void RandomGarbage_NeverThrows()
    {
        var random = new Random(1234);
        var ranges = new ValueRange[64];
        for (int iteration = 0; iteration < 20000; iteration++)
        {
            byte[] bytes = new byte[random.Next(0, 64)];
            random.NextBytes(bytes);

            // Bias towards known frame types so parsing goes deep.
            if (bytes.Length > 0 && random.Next(2) == 0) bytes[0] = (byte)random.Next(0x20);
            Drain(bytes, PacketTypes[iteration & 3], ranges);
        }
    }

    private static (int Frames, int Errors) Drain(byte[] bytes, PacketType packetType, ValueRange[] ranges)
    {
        var reader = new FrameReader(bytes, packetType);
        int frames = 0;
        int consumed = 0;
        while (true)
        {
            FrameReadStatus status = reader.TryReadFrame(out Frame frame, out TransportError error);
            if (status == FrameReadStatus.End)
            {
                Assert.Equal(bytes.Length, consumed);
                return (frames, 0);
            }

            if (status == FrameReadStatus.Error)
            {
                Assert.True(error.Code is TransportErrorCode.FrameEncodingError or TransportErrorCode.ProtocolViolation);
                return (frames, 1);
            }

            frames++;
            Assert.True(frame.EncodedLength > 0);
            consumed += frame.EncodedLength;
            Assert.True(FrameRules.IsAllowed(frame.Type, packetType));
            if (frame.Type is FrameType.Ack or FrameType.AckEcn)
            {
                int count = frame.Ack.CopyRanges(ranges);
                long previousStart = long.MaxValue;
                for (int i = 0; i < count; i++)
                {
                    Assert.True(ranges[i].Start >= 0);
                    Assert.True(ranges[i].End > ranges[i].Start);
                    Assert.True(ranges[i].End < previousStart);
                    previousStart = ranges[i].Start;
                }
            }
        }
    }
}
