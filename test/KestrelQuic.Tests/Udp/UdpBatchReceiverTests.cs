using System.Net;
using System.Net.Sockets;
using KestrelQuic.Udp;
using static KestrelQuic.Tests.Udp.UdpTestHelpers;

namespace KestrelQuic.Tests.Udp;

/// <summary>The Linux receive path of the dedicated receive thread: recvmmsg batches and UDP GRO trains.</summary>
public sealed class UdpBatchReceiverTests
{
    [Theory]
    [InlineData(AddressFamily.InterNetwork)]
    [InlineData(AddressFamily.InterNetworkV6)]
    public void GsoTrain_ArrivesAsOneGroMessage_SplitBackIntoTheSameDatagrams(AddressFamily family)
    {
        using UdpDatagramSocket sender = BindLoopback(family);
        using UdpDatagramSocket receiving = BindLoopback(family);
        using UdpBatchReceiver batch = UdpBatchReceiver.TryCreate(receiving, 8) ?? throw new InvalidOperationException("recvmmsg is available on Linux");
        Assert.True(sender.GsoSupported);
        Assert.True(batch.GroEnabled);

        int[] sizes = FortyPlusShort();
        sender.Send(Contiguous(sizes), 1200, AddressOf(receiving, sender));
        Assert.Equal(1, sender.GsoSends);

        List<(byte[] Data, IPEndPoint From)> datagrams = ReceiveAll(batch, sizes.Length, out int messages, out int largestMessage);
        AssertDatagrams(datagrams, sizes);
        Assert.All(datagrams, d => Assert.Equal(sender.LocalEndPoint, d.From));
        // On loopback the kernel hands the GSO train over whole: fewer messages than datagrams, one holding several.
        Assert.True(messages < sizes.Length, $"{messages} messages for {sizes.Length} datagrams");
        Assert.True(largestMessage > 1200, $"largest message {largestMessage} bytes");
    }

    [Fact]
    public void SeparateDatagrams_ComeBackInOneCall_InOrder_WithTheirSender()
    {
        using UdpDatagramSocket first = BindLoopback();
        using UdpDatagramSocket second = BindLoopback();
        using UdpDatagramSocket receiving = BindLoopback();
        using UdpBatchReceiver batch = UdpBatchReceiver.TryCreate(receiving, 8)!;
        first.DisableGso();
        for (int i = 0; i < 6; i++)
        {
            byte[] datagram = new byte[100 + i];
            Fill(datagram, i);
            (i % 2 == 0 ? first : second).Send(datagram, datagram.Length, AddressOf(receiving, i % 2 == 0 ? first : second));
        }

        batch.WaitReadable(2000);
        int n = batch.Receive();
        Assert.Equal(6, n); // one recvmmsg call, not six receives
        for (int i = 0; i < n; i++)
        {
            Assert.True(batch.GetMessage(i, out Span<byte> data, out SocketAddress source, out int segment));
            Assert.True(Matches(data, i, 100 + i));
            Assert.Equal(data.Length, segment);
            var from = (IPEndPoint)new IPEndPoint(IPAddress.Any, 0).Create(source);
            Assert.Equal((i % 2 == 0 ? first : second).LocalEndPoint.Port, from.Port);
        }

        Assert.Equal(0, batch.Receive()); // nothing more queued: no wait
    }

    [Fact]
    public async Task Shutdown_WakesAWaiter_AndLaterReceivesReportNothing()
    {
        using UdpDatagramSocket receiving = BindLoopback();
        using UdpBatchReceiver batch = UdpBatchReceiver.TryCreate(receiving, 4)!;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var waiter = Task.Run(() => batch.WaitReadable(10_000));
        await Task.Delay(100);
        UdpBatchReceiver.Shutdown(receiving);
        await waiter.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"woke after {clock.Elapsed}");
        Assert.True(batch.Receive() <= 0);
    }

    private static List<(byte[] Data, IPEndPoint From)> ReceiveAll(UdpBatchReceiver batch, int expected, out int messages, out int largestMessage)
    {
        var result = new List<(byte[], IPEndPoint)>();
        messages = 0;
        largestMessage = 0;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (result.Count < expected && DateTime.UtcNow < deadline)
        {
            int n = batch.Receive();
            if (n == 0)
            {
                batch.WaitReadable(200);
                continue;
            }

            for (int i = 0; i < n; i++)
            {
                Assert.True(batch.GetMessage(i, out Span<byte> data, out SocketAddress source, out int segment));
                messages++;
                largestMessage = Math.Max(largestMessage, data.Length);
                var from = (IPEndPoint)new IPEndPoint(source.Family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0).Create(source);
                while (!data.IsEmpty)
                {
                    int length = Math.Min(segment, data.Length);
                    result.Add((data[..length].ToArray(), from));
                    data = data[length..];
                }
            }
        }

        return result;
    }
}
