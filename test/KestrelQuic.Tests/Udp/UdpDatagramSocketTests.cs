using System.Net;
using System.Net.Sockets;
using KestrelQuic.Udp;
using Xunit.Abstractions;
using static KestrelQuic.Tests.Udp.UdpTestHelpers;

namespace KestrelQuic.Tests.Udp;

public sealed class UdpDatagramSocketTests
{
    private readonly ITestOutputHelper _output;

    public UdpDatagramSocketTests(ITestOutputHelper output) => _output = output;

    [Theory]
    [InlineData(AddressFamily.InterNetwork)]
    [InlineData(AddressFamily.InterNetworkV6)]
    public void Bind_Loopback_EphemeralPortAndFamily(AddressFamily family)
    {
        using UdpDatagramSocket socket = BindLoopback(family);
        Assert.NotEqual(0, socket.LocalEndPoint.Port);
        Assert.Equal(family, socket.LocalEndPoint.AddressFamily);
        Assert.Equal(family, socket.AddressFamily);
        Assert.False(socket.DualMode);
        _output.WriteLine($"{socket.LocalEndPoint}: GSO supported {socket.GsoSupported}");
    }

    [Theory]
    [InlineData(AddressFamily.InterNetwork, true)]
    [InlineData(AddressFamily.InterNetwork, false)]
    [InlineData(AddressFamily.InterNetworkV6, true)]
    [InlineData(AddressFamily.InterNetworkV6, false)]
    public async Task Send_FortyFullAndOneShort_ReceiverGetsFortyOneExactDatagrams(AddressFamily family, bool gso)
    {
        using UdpDatagramSocket sender = BindLoopback(family);
        using UdpDatagramSocket receiver = BindLoopback(family);
        if (!gso)
        {
            sender.DisableGso();
        }

        int[] sizes = FortyPlusShort();
        sender.Send(Contiguous(sizes), 1200, AddressOf(receiver, sender));

        var received = await ReceiveAsync(receiver, sizes.Length);
        AssertDatagrams(received, sizes);
        Assert.All(received, r => Assert.Equal(sender.LocalEndPoint, r.From));
        Assert.True(await NothingMoreAsync(receiver));

        Assert.Equal(41, sender.DatagramsSent);
        Assert.Equal(sizes.Sum(), sender.BytesSent);
        Assert.Equal(0, sender.SendErrors);
        Assert.Equal(41, receiver.DatagramsReceived);
        Assert.Equal(sizes.Sum(), receiver.BytesReceived);
        if (gso)
        {
            // GSO is what this machine (Linux >= 4.18) offers; elsewhere the same datagrams go one by one.
            Assert.Equal(sender.GsoSupported ? 1 : 0, sender.GsoSends);
            Assert.Equal(sender.GsoSupported, sender.GsoEnabled);
        }
        else
        {
            Assert.Equal(0, sender.GsoSends);
            Assert.False(sender.GsoEnabled);
        }
    }

    [Fact]
    public async Task Send_DualModeSocket_ReceivesFromIPv4SenderAndRepliesOverIPv4()
    {
        using var dual = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.IPv6Any, 0), BigBuffer, BigBuffer);
        using UdpDatagramSocket v4 = BindLoopback(AddressFamily.InterNetwork);
        Assert.True(dual.DualMode);
        Assert.Equal(AddressFamily.InterNetworkV6, dual.AddressFamily);

        int[] sizes = FortyPlusShort();
        v4.Send(Contiguous(sizes), 1200, AddressOf(dual, v4, IPAddress.Loopback));
        var cache = new IPEndPointCache();
        var received = await ReceiveAsync(dual, sizes.Length, cache);
        AssertDatagrams(received, sizes);

        // The mapped source (::ffff:127.0.0.1) is reported as the IPv4 end point it is.
        IPEndPoint from = received[0].From;
        Assert.Equal(v4.LocalEndPoint, from);
        Assert.Equal(1, cache.Misses);

        // And the dual-mode socket answers an IPv4 peer through the mapped address, also as a GSO batch.
        dual.Send(Contiguous(sizes), 1200, dual.CreateSocketAddress(from));
        AssertDatagrams(await ReceiveAsync(v4, sizes.Length), sizes);
        Assert.Equal(dual.GsoSupported ? 1 : 0, dual.GsoSends);
    }

    [Fact]
    public async Task Send_ChangingSegmentSizes_EachBatchSplitsBySize()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        SocketAddress to = AddressOf(receiver, sender);
        int[] first = [.. Enumerable.Repeat(1000, 5), 10];
        int[] second = [.. Enumerable.Repeat(1400, 3)];

        sender.Send(Contiguous(first), 1000, to);
        AssertDatagrams(await ReceiveAsync(receiver, first.Length), first);

        // A single datagram longer than the segment size still in force must not be split by the kernel.
        int[] single = [1500];
        sender.Send(Contiguous(single), 1500, to);
        AssertDatagrams(await ReceiveAsync(receiver, 1), single);

        sender.Send(Contiguous(second), 1400, to);
        AssertDatagrams(await ReceiveAsync(receiver, second.Length), second);
        Assert.True(await NothingMoreAsync(receiver));
        Assert.Equal(sender.GsoSupported ? 2 : 0, sender.GsoSends);
    }

    [Fact]
    public async Task Send_KernelRejectsGso_FallsBackPermanentlyWithoutLoss()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        if (!sender.GsoSupported)
        {
            _output.WriteLine("UDP_SEGMENT not supported here: nothing to reject");
            return;
        }

        // SO_NO_CHECK (no UDP checksums) makes Linux refuse segmented sends with EINVAL, as a device without
        // checksum offload would; single datagrams still go out.
        Span<byte> one = stackalloc byte[4];
        BitConverter.TryWriteBytes(one, 1);
        sender.Socket.SetRawSocketOption(1 /* SOL_SOCKET */, 11 /* SO_NO_CHECK */, one);

        int[] sizes = FortyPlusShort();
        sender.Send(Contiguous(sizes), 1200, AddressOf(receiver, sender));
        AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
        Assert.False(sender.GsoEnabled);
        Assert.Equal(0, sender.GsoSends);
        Assert.Equal(0, sender.SendErrors);
        Assert.Equal(41, sender.DatagramsSent);
        Assert.Equal(SocketError.InvalidArgument, sender.LastSendError);

        // Later batches go datagram by datagram straight away.
        sender.Send(Contiguous(sizes), 1200, AddressOf(receiver, sender));
        AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
        Assert.Equal(82, sender.DatagramsSent);
        Assert.Equal(0, sender.GsoSends);
    }

    [Fact]
    public async Task Send_MoreThanSixtyFourSegments_SplitIntoSeveralSends()
    {
        using UdpDatagramSocket sender = BindLoopback();
        using UdpDatagramSocket receiver = BindLoopback();
        int[] small = [.. Enumerable.Repeat(100, 150)];        // 64-segment limit: 3 sends
        int[] large = [.. Enumerable.Repeat(1400, 100), 17];   // 65,000-byte limit: 46 per send, 3 sends
        sender.Send(Contiguous(small), 100, AddressOf(receiver, sender));
        AssertDatagrams(await ReceiveAsync(receiver, small.Length), small);
        sender.Send(Contiguous(large), 1400, AddressOf(receiver, sender));
        AssertDatagrams(await ReceiveAsync(receiver, large.Length), large);
        Assert.Equal(sender.GsoSupported ? 6 : 0, sender.GsoSends);
        Assert.Equal(small.Length + large.Length, sender.DatagramsSent);
    }

    [Fact]
    public async Task Receive_AfterIcmpPortUnreachable_StillReceives()
    {
        using UdpDatagramSocket socket = BindLoopback();
        using UdpDatagramSocket peer = BindLoopback();
        SocketAddress closed = ClosedPortAddress(socket);

        // Default (IP_RECVERR off): Linux does not even report the ICMP error on an unconnected socket.
        socket.Send(new byte[50], 50, closed);
        peer.Send(Payload(0), 100, AddressOf(socket, peer));
        AssertDatagrams(await ReceiveAsync(socket, 1), [100]);
        Assert.Equal(0, socket.ReceiveErrors);
        Assert.Equal(0, socket.SendErrors);
    }

    [Theory]
    [InlineData("IPv4")]
    [InlineData("IPv6")]
    [InlineData("dual-mode, IPv4 peer")]
    public async Task Receive_IcmpErrorsReported_ErrorIsCountedAndReceivingContinues(string mode)
    {
        bool dual = mode.StartsWith("dual", StringComparison.Ordinal);
        AddressFamily peerFamily = mode == "IPv6" ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork;
        using UdpDatagramSocket socket = dual
            ? UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.IPv6Any, 0), BigBuffer, BigBuffer)
            : BindLoopback(peerFamily);
        using UdpDatagramSocket peer = BindLoopback(peerFamily);
        socket.SetIcmpErrorReporting(true);
        SocketAddress closed = socket.CreateSocketAddress(ClosedPort(peer.LocalEndPoint.Address));
        SocketAddress toSocket = AddressOf(socket, peer, peer.LocalEndPoint.Address);

        // Error pending before the receive starts: the receive reports ECONNREFUSED first, then the datagram.
        socket.Send(new byte[50], 50, closed);
        peer.Send(Payload(0), 100, toSocket);
        AssertDatagrams(await ReceiveAsync(socket, 1), [100]);
        Assert.Equal(1, socket.ReceiveErrors);

        // Error arriving while a receive is parked: it wakes with the error and re-arms.
        byte[] buffer = new byte[2048];
        SocketAddress from = socket.CreateReceiveAddress();
        using var cts = new CancellationTokenSource(5000);
        ValueTask<int> parked = socket.ReceiveAsync(buffer, from, cts.Token);
        await Task.Delay(50);
        Assert.False(parked.IsCompleted);
        socket.Send(new byte[50], 50, closed);
        await Task.Delay(50);
        peer.Send(Payload(1), 100, toSocket);
        Assert.Equal(100, await parked);
        Assert.True(Matches(buffer.AsSpan(0, 100), 1, 100));
        Assert.Equal(2, socket.ReceiveErrors);
    }

    [Fact]
    public async Task Send_IcmpErrorPendingOnSocket_DatagramIsStillSent()
    {
        using UdpDatagramSocket socket = BindLoopback();
        using UdpDatagramSocket peer = BindLoopback();
        socket.SetIcmpErrorReporting(true);

        // The refusal for the first datagram is reported by the next send, which must be retried, not lost.
        socket.Send(new byte[50], 50, ClosedPortAddress(socket));
        int[] sizes = FortyPlusShort();
        socket.Send(Contiguous(sizes), 1200, AddressOf(peer, socket));
        AssertDatagrams(await ReceiveAsync(peer, sizes.Length), sizes);
        Assert.Equal(0, socket.SendErrors);
        Assert.Equal(1 + sizes.Length, socket.DatagramsSent);
        Assert.Equal(socket.GsoSupported, socket.GsoEnabled);
    }

    [Fact]
    public void Bind_BufferSizes_AppliedUpToKernelCap()
    {
        const int modest = 1024 * 1024;
        const int huge = 256 * 1024 * 1024;
        using (var socket = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), modest, modest))
        {
            _output.WriteLine($"requested {modest}: rcv {socket.ReceiveBufferSize}, snd {socket.SendBufferSize}");
            Assert.True(socket.ReceiveBufferSize >= modest || socket.ReceiveBufferSize == KernelCap("rmem_max"));
            Assert.True(socket.SendBufferSize >= modest || socket.SendBufferSize == KernelCap("wmem_max"));
        }

        using (var socket = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), huge, huge))
        {
            _output.WriteLine($"requested {huge}: rcv {socket.ReceiveBufferSize}, snd {socket.SendBufferSize}");
            int? rcvCap = KernelCap("rmem_max");
            int? sndCap = KernelCap("wmem_max");
            if (rcvCap is not null)
            {
                Assert.Equal(Math.Min(huge, rcvCap.Value), socket.ReceiveBufferSize);
            }

            if (sndCap is not null)
            {
                Assert.Equal(Math.Min(huge, sndCap.Value), socket.SendBufferSize);
            }
        }

        using (var socket = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.Loopback, 0), 0, 0))
        {
            _output.WriteLine($"OS default: rcv {socket.ReceiveBufferSize}, snd {socket.SendBufferSize}");
            if (ReadProcInt("/proc/sys/net/core/rmem_default") is int rcvDefault)
            {
                Assert.Equal(rcvDefault, socket.ReceiveBufferSize);
            }

            if (ReadProcInt("/proc/sys/net/core/wmem_default") is int sndDefault)
            {
                Assert.Equal(sndDefault, socket.SendBufferSize);
            }
        }
    }

    [Fact]
    public async Task Dispose_ParkedReceive_Ends()
    {
        UdpDatagramSocket socket = BindLoopback();
        ValueTask<int> parked = socket.ReceiveAsync(new byte[2048], socket.CreateReceiveAddress());
        await Task.Delay(20);
        socket.Dispose();
        Exception? error = await Record.ExceptionAsync(async () => await parked);
        Assert.True(error is ObjectDisposedException or SocketException { SocketErrorCode: SocketError.OperationAborted }, error?.ToString());
    }

    [Fact]
    public void CreateSocketAddress_MapsBetweenFamilies()
    {
        using var dual = UdpDatagramSocket.Bind(new IPEndPoint(IPAddress.IPv6Any, 0), 0, 0);
        using UdpDatagramSocket v4 = BindLoopback();
        var ipv4 = new IPEndPoint(IPAddress.Parse("192.0.2.1"), 443);
        Assert.Equal(AddressFamily.InterNetworkV6, dual.CreateSocketAddress(ipv4).Family);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("::ffff:192.0.2.1"), 443), new IPEndPointCache(unmapIPv4: false).GetEndPoint(dual.CreateSocketAddress(ipv4)));
        Assert.Equal(AddressFamily.InterNetwork, v4.CreateSocketAddress(new IPEndPoint(ipv4.Address.MapToIPv6(), 443)).Family);
    }

    internal static byte[] Payload(int index, int length = 100)
    {
        byte[] data = new byte[length];
        Fill(data, index);
        return data;
    }

    /// <summary>A loopback port nobody listens on (bound and released; reuse within the test is unlikely).</summary>
    private static SocketAddress ClosedPortAddress(UdpDatagramSocket sender) =>
        sender.CreateSocketAddress(ClosedPort(sender.LocalEndPoint.Address));

    private static IPEndPoint ClosedPort(IPAddress address)
    {
        using var probe = new Socket(address.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        probe.Bind(new IPEndPoint(address, 0));
        return (IPEndPoint)probe.LocalEndPoint!;
    }

    /// <summary>What SO_RCVBUF/SO_SNDBUF read back at most: Linux doubles the request and caps it at twice the sysctl.</summary>
    private static int? KernelCap(string name) => ReadProcInt($"/proc/sys/net/core/{name}") is int max ? 2 * max : null;

    private static int? ReadProcInt(string path) =>
        File.Exists(path) && int.TryParse(File.ReadAllText(path).Trim(), out int value) ? value : null;
}
