using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Udp;

/// <summary>
/// Turns received <see cref="SocketAddress"/> values into <see cref="IPEndPoint"/> objects, returning the same
/// instance while an address repeats so the receive path does not allocate per datagram. Direct-mapped by the
/// address hash: a colliding address evicts the previous one. Not thread-safe: one per receive loop.
/// </summary>
internal sealed class IPEndPointCache
{
    private static readonly IPEndPoint s_v4Template = new(IPAddress.Any, 0);
    private static readonly IPEndPoint s_v6Template = new(IPAddress.IPv6Any, 0);

    private readonly SocketAddress?[] _addresses;
    private readonly IPEndPoint?[] _endPoints;
    private readonly int _mask;
    private readonly bool _unmapIPv4;

    /// <param name="capacity">Number of slots, rounded up to a power of two.</param>
    /// <param name="unmapIPv4">
    /// Report IPv4-mapped IPv6 addresses (what a dual-mode socket receives from IPv4 peers) as plain IPv4
    /// end points; <see cref="UdpDatagramSocket.CreateSocketAddress"/> maps them back for sending.
    /// </param>
    public IPEndPointCache(int capacity = 256, bool unmapIPv4 = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        int size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity);
        _addresses = new SocketAddress?[size];
        _endPoints = new IPEndPoint?[size];
        _mask = size - 1;
        _unmapIPv4 = unmapIPv4;
    }

    /// <summary>Addresses that had to be converted (and allocated) since construction.</summary>
    public long Misses { get; private set; }

    /// <summary>The end point for <paramref name="address"/>; allocates only when it is not cached.</summary>
    public IPEndPoint GetEndPoint(SocketAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        int index = address.GetHashCode() & _mask;
        SocketAddress? cached = _addresses[index];
        if (cached is not null && SocketAddressHelpers.ContentEquals(cached, address))
        {
            return _endPoints[index]!;
        }

        IPEndPoint endPoint = Convert(address);
        _addresses[index] = SocketAddressHelpers.Clone(address);
        _endPoints[index] = endPoint;
        Misses++;
        return endPoint;
    }

    private IPEndPoint Convert(SocketAddress address)
    {
        IPEndPoint template = address.Family switch
        {
            AddressFamily.InterNetwork => s_v4Template,
            AddressFamily.InterNetworkV6 => s_v6Template,
            _ => throw new ArgumentException($"Not an IP socket address: {address.Family}.", nameof(address)),
        };
        var endPoint = (IPEndPoint)template.Create(address);
        if (_unmapIPv4 && endPoint.Address.IsIPv4MappedToIPv6)
        {
            endPoint = new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port);
        }

        return endPoint;
    }
}
