using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class StreamIdTests
{
    [Theory]
    // RFC 9000 §2.1 Table 1: 0x00 client bidi, 0x01 server bidi, 0x02 client uni, 0x03 server uni.
    [InlineData(0UL, true, true)]
    [InlineData(1UL, false, true)]
    [InlineData(2UL, true, false)]
    [InlineData(3UL, false, false)]
    [InlineData(4UL, true, true)]
    [InlineData(0x3FFF_FFFF_FFFF_FFFFUL, false, false)]
    public void TypeBits_FollowTable1(ulong id, bool client, bool bidi)
    {
        Assert.Equal(client, StreamId.IsClientInitiated(id));
        Assert.Equal(bidi, StreamId.IsBidirectional(id));
        Assert.Equal(id, StreamId.Create(StreamId.Index(id), client, bidi));
        Assert.Equal(bidi ? QuicStreamType.Bidirectional : QuicStreamType.Unidirectional, StreamId.TypeOf(id));
    }

    [Fact]
    public void Create_And_Index_RoundTrip()
    {
        Assert.Equal(8UL, StreamId.Create(2, clientInitiated: true, bidirectional: true));
        Assert.Equal(11UL, StreamId.Create(2, clientInitiated: false, bidirectional: false));
        Assert.Equal(2UL, StreamId.Index(11));
        Assert.Throws<ArgumentOutOfRangeException>(() => StreamId.Create(1UL << 60, true, true));
    }

    [Fact]
    public void LocalInitiation_And_Direction_DependOnRole()
    {
        Assert.True(StreamId.IsLocallyInitiated(0, isServer: false));
        Assert.False(StreamId.IsLocallyInitiated(0, isServer: true));
        Assert.True(StreamId.IsLocallyInitiated(3, isServer: true));

        // Client-initiated unidirectional stream 2: the client only sends, the server only receives.
        Assert.True(StreamId.CanSend(2, isServer: false));
        Assert.False(StreamId.CanReceive(2, isServer: false));
        Assert.False(StreamId.CanSend(2, isServer: true));
        Assert.True(StreamId.CanReceive(2, isServer: true));
        Assert.True(StreamId.CanSend(1, isServer: false) && StreamId.CanReceive(1, isServer: false));
    }
}
