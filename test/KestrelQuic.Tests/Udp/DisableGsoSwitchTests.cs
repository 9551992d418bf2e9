using System.Net.Sockets;
using KestrelQuic.Tests.Api;
using KestrelQuic.Udp;
using static KestrelQuic.Tests.Udp.UdpTestHelpers;

namespace KestrelQuic.Tests.Udp;

/// <summary>
/// The KestrelQuic.DisableGso AppContext switch (for packet captures on loopback). The switch is process-wide, so this
/// runs in the collection that runs alone: the GSO assertions of other socket tests must not see it.
/// </summary>
[Collection(SerialLoopbackCollection.Name)]
public sealed class DisableGsoSwitchTests
{
    [Fact]
    public async Task SwitchSet_SocketsBoundAfterwardSendOneDatagramPerCall()
    {
        AppContext.SetSwitch(UdpDatagramSocket.DisableGsoSwitch, true);
        try
        {
            using UdpDatagramSocket sender = BindLoopback(AddressFamily.InterNetwork);
            using UdpDatagramSocket receiver = BindLoopback(AddressFamily.InterNetwork);
            Assert.False(sender.GsoEnabled);
            int[] sizes = FortyPlusShort();
            sender.Send(Contiguous(sizes), 1200, AddressOf(receiver, sender));
            AssertDatagrams(await ReceiveAsync(receiver, sizes.Length), sizes);
            Assert.Equal(41, sender.DatagramsSent);
            Assert.Equal(0, sender.GsoSends);
        }
        finally
        {
            AppContext.SetSwitch(UdpDatagramSocket.DisableGsoSwitch, false);
        }

        using UdpDatagramSocket after = BindLoopback(AddressFamily.InterNetwork);
        Assert.Equal(after.GsoSupported, after.GsoEnabled);
    }
}
