using KestrelQuic.Frames;

namespace KestrelQuic.Tests.Frames;

public sealed class FrameCapacityTests
{
    [Theory]
    [InlineData(0UL, 0UL, true)]
    [InlineData(4UL, 0UL, false)]
    [InlineData(1000UL, 70000UL, true)]
    [InlineData(1UL << 40, 1UL << 50, false)]
    public void StreamDataCapacity_IsMaximalFit(ulong streamId, ulong offset, bool explicitLength)
    {
        for (int space = 0; space < 20000; space += space < 100 ? 1 : 37)
        {
            int capacity = FrameWriter.GetStreamDataCapacity(streamId, offset, space, explicitLength);
            Assert.True(capacity >= 0);
            if (capacity > 0)
            {
                Assert.True(FrameWriter.GetStreamLength(streamId, offset, capacity, explicitLength) <= space);
            }

            Assert.True(FrameWriter.GetStreamLength(streamId, offset, capacity + 1, explicitLength) > space);
        }
    }

    [Fact]
    public void CryptoAndDatagramCapacity_IsMaximalFit()
    {
        for (int space = 0; space < 20000; space += space < 100 ? 1 : 37)
        {
            int c = FrameWriter.GetCryptoDataCapacity(5000, space);
            if (c > 0) Assert.True(FrameWriter.GetCryptoLength(5000, c) <= space);
            Assert.True(FrameWriter.GetCryptoLength(5000, c + 1) > space);

            foreach (bool explicitLength in new[] { true, false })
            {
                int d = FrameWriter.GetDatagramDataCapacity(space, explicitLength);
                if (d > 0) Assert.True(FrameWriter.GetDatagramLength(d, explicitLength) <= space);
                Assert.True(FrameWriter.GetDatagramLength(d + 1, explicitLength) > space);
            }
        }
    }
}
