using System.Net;
using System.Net.Sockets;
using KestrelQuic.Udp;
using static KestrelQuic.Tests.Udp.UdpTestHelpers;

namespace KestrelQuic.Tests.Udp;

public sealed class SendBatchBuilderTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Builder_DestinationChanges_SplitsIntoOneBatchPerRun(bool gso)
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket a = BindLoopback();
        using UdpDatagramSocket b = BindLoopback();
        if (!gso)
        {
            sender.DisableGso();
        }

        using var builder = new SendBatchBuilder(sender, 1500);

        // The caller reuses one SocketAddress object for every destination: the builder must copy it.
        SocketAddress toA = AddressOf(a, sender);
        SocketAddress toB = AddressOf(b, sender);
        var scratch = new SocketAddress(AddressFamily.InterNetworkV6, SocketAddressHelpers.MaxIPAddressSize);
        int index = 0;
        void Add(SocketAddress to, int size)
        {
            SocketAddressHelpers.CopyTo(to, scratch);
            Span<byte> slot = builder.GetSlot(scratch, 1500);
            Fill(slot[..size], index++);
            builder.Commit(size);
        }

        Add(toA, 1200);
        Add(toA, 1200);
        Add(toA, 1200);
        Assert.Equal(3, builder.PendingDatagrams);
        Add(toB, 1200);
        Assert.Equal(1, builder.BatchesSent);
        Add(toB, 1200);
        Add(toA, 1200);
        Assert.Equal(2, builder.BatchesSent);
        builder.Flush();
        Assert.Equal(3, builder.BatchesSent);
        Assert.Equal(0, builder.PendingDatagrams);

        var atA = await ReceiveAsync(a, 4);
        var atB = await ReceiveAsync(b, 2);
        Assert.Equal([0, 1, 2, 5], atA.Select(r => BitConverter.ToInt32(r.Data)).Order());
        Assert.Equal([3, 4], atB.Select(r => BitConverter.ToInt32(r.Data)).Order());
        Assert.All(atA.Concat(atB), r => Assert.Equal(1200, r.Data.Length));
        Assert.True(atA.Concat(atB).All(r => Matches(r.Data, BitConverter.ToInt32(r.Data), 1200)));
        Assert.Equal(gso && sender.GsoSupported ? 2 : 0, sender.GsoSends); // the lone datagram to A is a plain send
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Builder_SizeChanges_ShortDatagramEndsBatchAndLongerOneStartsNext(bool gso)
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        if (!gso)
        {
            sender.DisableGso();
        }

        using var builder = new SendBatchBuilder(sender, 1500);
        SocketAddress to = AddressOf(receiver, sender);
        int[] sizes = [1200, 1200, 500, 1200, 1200, 60, 1300, 1300, 1300, 1400];
        // Batches: [1200 1200 500] [1200 1200 60] [1300 1300 1300] [1400]
        var batchesAfter = new List<long>();
        for (int i = 0; i < sizes.Length; i++)
        {
            Span<byte> slot = builder.GetSlot(to, 1500);
            Fill(slot[..sizes[i]], i);
            builder.Commit(sizes[i]);
            batchesAfter.Add(builder.BatchesSent);
        }

        builder.Flush();
        Assert.Equal([0, 0, 0, 1, 1, 1, 2, 2, 2, 3], batchesAfter);
        Assert.Equal(4, builder.BatchesSent);
        AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
        Assert.True(await NothingMoreAsync(receiver));
        Assert.Equal(sizes.Length, sender.DatagramsSent);
        Assert.Equal(gso && sender.GsoSupported ? 3 : 0, sender.GsoSends);
    }

    [Fact]
    public async Task Builder_SixtyFourDatagrams_FlushesAsFullBatch()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        using var builder = new SendBatchBuilder(sender, 1200);
        SocketAddress to = AddressOf(receiver, sender);
        int[] sizes = [.. Enumerable.Repeat(900, 70)];
        for (int i = 0; i < sizes.Length; i++)
        {
            Fill(builder.GetSlot(to, 1000)[..sizes[i]], i);
            builder.Commit(sizes[i]);
        }

        Assert.Equal(1, builder.BatchesSent);
        Assert.Equal(6, builder.PendingDatagrams);
        builder.Flush();
        AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
        Assert.Equal(sender.GsoSupported ? 2 : 0, sender.GsoSends);
    }

    [Fact]
    public async Task Builder_BufferFull_FlushesBeforeSlotWouldNotFit()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        using var builder = new SendBatchBuilder(sender, 1500); // 65,000 bytes: 43 datagrams of 1500
        SocketAddress to = AddressOf(receiver, sender);
        int[] sizes = [.. Enumerable.Repeat(1500, 50)];
        for (int i = 0; i < sizes.Length; i++)
        {
            Fill(builder.GetSlot(to, 1500), i);
            builder.Commit(1500);
        }

        Assert.Equal(1, builder.BatchesSent);
        Assert.Equal(7, builder.PendingDatagrams);
        builder.Flush();
        AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
    }

    [Fact]
    public async Task Builder_CommitZeroOrNewSlot_AbandonsSlot()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        using var builder = new SendBatchBuilder(sender, 1500);
        SocketAddress to = AddressOf(receiver, sender);

        Fill(builder.GetSlot(to, 1500)[..1000], 0);
        builder.Commit(1000);
        builder.GetSlot(to, 1500).Fill(0xEE);
        builder.Commit(0);
        builder.GetSlot(to, 1500).Fill(0xEE);
        Fill(builder.GetSlot(to, 1500)[..1000], 1); // replaces the uncommitted slot
        builder.Commit(1000);
        Assert.Throws<InvalidOperationException>(() => builder.Commit(10));
        Assert.Equal(2, builder.PendingDatagrams);
        Assert.Equal(2000, builder.PendingBytes);
        builder.Flush();
        AssertDatagrams(await ReceiveAsync(receiver, 2), [1000, 1000]);
        Assert.True(await NothingMoreAsync(receiver));
    }

    [Fact]
    public void Builder_InvalidArguments_Throw()
    {
        using UdpDatagramSocket sender = BindLoopback();
        var builder = new SendBatchBuilder(sender, 1200);
        SocketAddress to = sender.CreateSocketAddress(new IPEndPoint(IPAddress.Loopback, 9));
        Assert.Throws<ArgumentOutOfRangeException>(() => builder.GetSlot(to, 1201));
        Assert.Throws<ArgumentOutOfRangeException>(() => builder.GetSlot(to, 0));
        builder.GetSlot(to, 100);
        Assert.Throws<ArgumentOutOfRangeException>(() => builder.Commit(101));
        builder.Dispose();
        Assert.Throws<ObjectDisposedException>(() => builder.GetSlot(to, 100));
    }
}
