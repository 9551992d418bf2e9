using System.Net;
using System.Net.Sockets;
using KestrelQuic.Udp;

namespace KestrelQuic.Tests.Udp;

/// <summary>Loopback sockets, recognisable datagram contents, and a bounded receive for the UDP tests.</summary>
internal static class UdpTestHelpers
{
    public const int BigBuffer = 4 * 1024 * 1024;

    public static UdpDatagramSocket BindLoopback(AddressFamily family = AddressFamily.InterNetwork) =>
        UdpDatagramSocket.Bind(
            new IPEndPoint(family == AddressFamily.InterNetwork ? IPAddress.Loopback : IPAddress.IPv6Loopback, 0),
            BigBuffer,
            BigBuffer);

    /// <summary>The address to send to <paramref name="receiver"/> from <paramref name="sender"/>.</summary>
    public static SocketAddress AddressOf(UdpDatagramSocket receiver, UdpDatagramSocket sender, IPAddress? viaAddress = null)
    {
        IPAddress address = viaAddress ?? receiver.LocalEndPoint.Address;
        return sender.CreateSocketAddress(new IPEndPoint(address, receiver.LocalEndPoint.Port));
    }

    /// <summary>Datagram <paramref name="index"/> of a test run: its index, then a pattern derived from it.</summary>
    public static void Fill(Span<byte> datagram, int index)
    {
        for (int i = 0; i < datagram.Length; i++)
        {
            datagram[i] = (byte)(index * 31 + i * 7 + 1);
        }

        if (datagram.Length >= 4)
        {
            BitConverter.TryWriteBytes(datagram, index);
        }
    }

    public static bool Matches(ReadOnlySpan<byte> datagram, int index, int expectedLength)
    {
        if (datagram.Length != expectedLength)
        {
            return false;
        }

        Span<byte> expected = new byte[expectedLength];
        Fill(expected, index);
        return datagram.SequenceEqual(expected);
    }

    /// <summary>Datagrams <c>0..count-1</c> with the given sizes, laid out contiguously.</summary>
    public static byte[] Contiguous(IReadOnlyList<int> sizes)
    {
        byte[] data = new byte[sizes.Sum()];
        int offset = 0;
        for (int i = 0; i < sizes.Count; i++)
        {
            Fill(data.AsSpan(offset, sizes[i]), i);
            offset += sizes[i];
        }

        return data;
    }

    /// <summary>Receives exactly <paramref name="count"/> datagrams, failing after a timeout.</summary>
    public static async Task<List<(byte[] Data, IPEndPoint From)>> ReceiveAsync(
        UdpDatagramSocket socket, int count, IPEndPointCache? cache = null, int timeoutMs = 5000)
    {
        cache ??= new IPEndPointCache();
        using var cts = new CancellationTokenSource(timeoutMs);
        var result = new List<(byte[], IPEndPoint)>(count);
        byte[] buffer = new byte[65_536];
        SocketAddress address = socket.CreateReceiveAddress();
        while (result.Count < count)
        {
            int n = await socket.ReceiveAsync(buffer, address, cts.Token);
            result.Add((buffer.AsSpan(0, n).ToArray(), cache.GetEndPoint(address)));
        }

        return result;
    }

    /// <summary>True when nothing more arrives within <paramref name="waitMs"/>.</summary>
    public static async Task<bool> NothingMoreAsync(UdpDatagramSocket socket, int waitMs = 200)
    {
        using var cts = new CancellationTokenSource(waitMs);
        try
        {
            await socket.ReceiveAsync(new byte[65_536], socket.CreateReceiveAddress(), cts.Token);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    public static void AssertDatagrams(IReadOnlyList<(byte[] Data, IPEndPoint From)> received, IReadOnlyList<int> sizes, int firstIndex = 0)
    {
        Assert.Equal(sizes.Count, received.Count);

        // Loopback keeps order in practice; sorting by the embedded index keeps the check independent of it.
        byte[][] ordered = [.. received.Select(r => r.Data).OrderBy(d => BitConverter.ToInt32(d))];
        for (int i = 0; i < sizes.Count; i++)
        {
            Assert.True(
                Matches(ordered[i], firstIndex + i, sizes[i]),
                $"datagram {i}: {ordered[i].Length} bytes, expected {sizes[i]} bytes of pattern {firstIndex + i}");
        }
    }

    /// <summary>40 full datagrams of 1200 bytes and a short last one.</summary>
    public static int[] FortyPlusShort() => [.. Enumerable.Repeat(1200, 40), 345];
}
