using KestrelQuic.Protocol;
using KestrelQuic.Streams;

namespace KestrelQuic.Tests.Streams;

public sealed class StreamLimitsTests
{
    [Fact]
    public void RemoteStream_OpensLowerNumberedStreamsImplicitly()
    {
        var limits = new StreamLimits(isServer: true, localMaxBidi: 3, localMaxUni: 1);
        Assert.True(limits.TryOpenRemote(8, out ulong first, out ulong count, out _));
        Assert.Equal((0UL, 3UL), (first, count)); // streams 0, 4 and 8
        Assert.True(limits.TryOpenRemote(4, out _, out count, out _));
        Assert.Equal(0UL, count);
        Assert.True(limits.TryOpenRemote(2, out first, out count, out _));
        Assert.Equal((2UL, 1UL), (first, count));
        Assert.Equal(3UL, limits.RemoteOpened(QuicStreamType.Bidirectional));
    }

    [Fact]
    public void RemoteStream_BeyondLimit_IsStreamLimitError()
    {
        var limits = new StreamLimits(isServer: false, localMaxBidi: 2, localMaxUni: 0);
        Assert.True(limits.TryOpenRemote(5, out ulong first, out ulong count, out _)); // server bidi index 1
        Assert.Equal((1UL, 2UL), (first, count));
        Assert.False(limits.TryOpenRemote(9, out _, out _, out TransportError e, frameType: 0x08));
        Assert.Equal((TransportErrorCode.StreamLimitError, 0x08UL), (e.Code, e.FrameType));
        Assert.False(limits.TryOpenRemote(3, out _, out e)); // no unidirectional streams allowed
        Assert.Equal(TransportErrorCode.StreamLimitError, e.Code);
    }

    [Fact]
    public void LocalStreamNotYetOpened_IsStreamStateError()
    {
        var limits = new StreamLimits(isServer: false, 10, 10);
        limits.OnMaxStreams(QuicStreamType.Bidirectional, 10);
        Assert.False(limits.TryOpenRemote(0, out _, out _, out TransportError e, frameType: 0x11));
        Assert.Equal((TransportErrorCode.StreamStateError, 0x11UL), (e.Code, e.FrameType));
        Assert.True(limits.TryOpenLocal(QuicStreamType.Bidirectional, out ulong id));
        Assert.Equal(0UL, id);
        Assert.True(limits.IsLocalStreamOpened(0));
        Assert.True(limits.TryOpenRemote(0, out _, out ulong count, out _));
        Assert.Equal(0UL, count);
        Assert.False(limits.TryOpenRemote(4, out _, out _, out e));
        Assert.Equal(TransportErrorCode.StreamStateError, e.Code);
    }

    [Fact]
    public void LocalStreams_AllocatedInOrder_BlockedAtPeerLimit()
    {
        var limits = new StreamLimits(isServer: true, 0, 0);
        Assert.False(limits.TryOpenLocal(QuicStreamType.Unidirectional, out _)); // peer allowed none yet
        Assert.True(limits.ShouldSendStreamsBlocked(QuicStreamType.Unidirectional, out ulong limit));
        Assert.Equal(0UL, limit);
        Assert.False(limits.ShouldSendStreamsBlocked(QuicStreamType.Bidirectional, out _));

        Assert.True(limits.OnMaxStreams(QuicStreamType.Unidirectional, 2));
        Assert.False(limits.ShouldSendStreamsBlocked(QuicStreamType.Unidirectional, out _));
        Assert.True(limits.TryOpenLocal(QuicStreamType.Unidirectional, out ulong id));
        Assert.Equal(3UL, id);
        Assert.True(limits.TryOpenLocal(QuicStreamType.Unidirectional, out id));
        Assert.Equal(7UL, id);
        Assert.False(limits.TryOpenLocal(QuicStreamType.Unidirectional, out _));
        Assert.True(limits.ShouldSendStreamsBlocked(QuicStreamType.Unidirectional, out limit));
        Assert.Equal(2UL, limit);
        limits.OnStreamsBlockedSent(QuicStreamType.Unidirectional, 2);
        Assert.False(limits.ShouldSendStreamsBlocked(QuicStreamType.Unidirectional, out _)); // once per limit
        limits.OnStreamsBlockedLost(QuicStreamType.Unidirectional, 2);
        Assert.True(limits.ShouldSendStreamsBlocked(QuicStreamType.Unidirectional, out _));

        Assert.False(limits.OnMaxStreams(QuicStreamType.Unidirectional, 1)); // decrease ignored
        Assert.Equal(2UL, limits.PeerMaxStreams(QuicStreamType.Unidirectional));
        Assert.True(limits.OnMaxStreams(QuicStreamType.Unidirectional, 3));
        Assert.True(limits.TryOpenLocal(QuicStreamType.Unidirectional, out id));
        Assert.Equal(11UL, id);
    }

    [Fact]
    public void ClosedRemoteStreams_ReturnCredit_InBatches()
    {
        var limits = new StreamLimits(isServer: true, localMaxBidi: 4, localMaxUni: 0);
        Assert.True(limits.TryOpenRemote(12, out _, out _, out _)); // 0, 4, 8, 12
        Assert.False(limits.TryOpenRemote(16, out _, out _, out _));
        limits.OnRemoteStreamClosed(QuicStreamType.Bidirectional);
        Assert.False(limits.ShouldSendMaxStreams(QuicStreamType.Bidirectional, out _)); // below half the initial limit
        limits.OnRemoteStreamClosed(QuicStreamType.Bidirectional);
        Assert.True(limits.ShouldSendMaxStreams(QuicStreamType.Bidirectional, out ulong max));
        Assert.Equal(6UL, max);
        limits.OnMaxStreamsSent(QuicStreamType.Bidirectional, max);
        Assert.False(limits.ShouldSendMaxStreams(QuicStreamType.Bidirectional, out _));
        Assert.True(limits.TryOpenRemote(20, out ulong first, out ulong count, out _));
        Assert.Equal((16UL, 2UL), (first, count));
        Assert.False(limits.TryOpenRemote(24, out _, out _, out _));

        limits.OnMaxStreamsLost(QuicStreamType.Bidirectional);
        Assert.True(limits.ShouldSendMaxStreams(QuicStreamType.Bidirectional, out max));
        Assert.Equal(6UL, max);
        limits.OnMaxStreamsSent(QuicStreamType.Bidirectional, max);
        Assert.False(limits.ShouldSendMaxStreams(QuicStreamType.Bidirectional, out _));
        Assert.Throws<InvalidOperationException>(() => limits.OnRemoteStreamClosed(QuicStreamType.Unidirectional));
    }
}
