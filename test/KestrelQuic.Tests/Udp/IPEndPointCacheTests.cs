using System.Net;
using KestrelQuic.Udp;

namespace KestrelQuic.Tests.Udp;

public sealed class IPEndPointCacheTests
{
    [Fact]
    public void GetEndPoint_RepeatedAddress_SameInstanceWithoutAllocation()
    {
        var cache = new IPEndPointCache(capacity: 16);
        SocketAddress received = new IPEndPoint(IPAddress.Parse("192.0.2.7"), 4433).Serialize();
        IPEndPoint first = cache.GetEndPoint(received);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.0.2.7"), 4433), first);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 10_000; i++)
        {
            Assert.Same(first, cache.GetEndPoint(received));
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1, cache.Misses);
    }

    [Fact]
    public void GetEndPoint_CachedCopyIsIndependentOfTheReusedAddress()
    {
        var cache = new IPEndPointCache();
        SocketAddress reused = new IPEndPoint(IPAddress.IPv6Loopback, 1000).Serialize();
        IPEndPoint a = cache.GetEndPoint(reused);
        SocketAddress other = new IPEndPoint(IPAddress.IPv6Loopback, 1001).Serialize();
        other.Buffer.Span[..other.Size].CopyTo(reused.Buffer.Span); // a receive overwrites the same object
        IPEndPoint b = cache.GetEndPoint(reused);
        Assert.Equal(1000, a.Port);
        Assert.Equal(1001, b.Port);
        Assert.Equal(2, cache.Misses);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void GetEndPoint_IPv4MappedAddress_UnmappedWhenAsked(bool unmap)
    {
        var cache = new IPEndPointCache(unmapIPv4: unmap);
        SocketAddress mapped = new IPEndPoint(IPAddress.Parse("::ffff:198.51.100.1"), 443).Serialize();
        IPEndPoint endPoint = cache.GetEndPoint(mapped);
        Assert.Equal(unmap ? IPAddress.Parse("198.51.100.1") : IPAddress.Parse("::ffff:198.51.100.1"), endPoint.Address);
        Assert.Equal(443, endPoint.Port);
    }

    [Fact]
    public void GetEndPoint_ManyAddresses_CollisionsEvictButStayCorrect()
    {
        var cache = new IPEndPointCache(capacity: 4);
        for (int round = 0; round < 3; round++)
        {
            for (int port = 1; port <= 50; port++)
            {
                Assert.Equal(port, cache.GetEndPoint(new IPEndPoint(IPAddress.Loopback, port).Serialize()).Port);
            }
        }
    }
}
