namespace KestrelQuic.AspNetCore.Tests;

public sealed class Http3ControlStreamFilterTests
{
    // Control stream type 0x00, SETTINGS (0x04, 5 bytes: QPACK max table capacity 0, blocked streams 0, a varint), GOAWAY(2^62-1).
    private static readonly byte[] Settings = [0x04, 0x05, 0x06, 0x80, 0x00, 0x80, 0x00];
    private static readonly byte[] KestrelGoAway = [0x07, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    private static readonly byte[] ServerGoAway = [0x07, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc];

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(100)]
    public async Task GoAwayWithClientMaximum_BecomesServerMaximum_WhateverTheWriteSizes(int chunk)
    {
        byte[] input = [0x00, .. Settings, .. KestrelGoAway, 0x07, 0x01, 0x04];
        byte[] output = await WriteInChunksAsync(input, chunk);
        Assert.Equal([0x00, .. Settings, .. ServerGoAway, 0x07, 0x01, 0x04], output);
    }

    [Fact]
    public async Task OtherFramesAndIds_AreUntouched()
    {
        // GOAWAY(2^62-5) and a reserved frame whose payload is all 0xff: unchanged.
        byte[] input = [0x00, 0x07, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb, 0x21, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        Assert.Equal(input, await WriteInChunksAsync(input, 4));
    }

    [Fact]
    public async Task NonControlStream_PassesThrough()
    {
        byte[] input = [0x54, .. KestrelGoAway]; // e.g. a WebTransport stream: not HTTP/3 frames
        Assert.Equal(input, await WriteInChunksAsync(input, 2));
    }

    private static async Task<byte[]> WriteInChunksAsync(byte[] input, int chunk)
    {
        using var sink = new MemoryStream();
        await using var filter = new Http3ControlStreamFilter(sink);
        for (int i = 0; i < input.Length; i += chunk)
        {
            await filter.WriteAsync(input.AsMemory(i, Math.Min(chunk, input.Length - i)));
        }

        return sink.ToArray();
    }
}
