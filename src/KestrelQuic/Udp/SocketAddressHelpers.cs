using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Udp;

/// <summary>Content comparison and copying of <see cref="SocketAddress"/> without allocation.</summary>
internal static class SocketAddressHelpers
{
    /// <summary>Room for any IP socket address (sockaddr_in6 is the larger one).</summary>
    public static readonly int MaxIPAddressSize = Math.Max(
        SocketAddress.GetMaximumAddressSize(AddressFamily.InterNetworkV6),
        SocketAddress.GetMaximumAddressSize(AddressFamily.InterNetwork));

    /// <summary>
    /// Compares the first <see cref="SocketAddress.Size"/> bytes. <see cref="SocketAddress.Equals(SocketAddress)"/>
    /// compares whole buffers, so two equal addresses held in buffers of different lengths would differ.
    /// </summary>
    public static bool ContentEquals(SocketAddress a, SocketAddress b) =>
        a.Size == b.Size && a.Buffer.Span[..a.Size].SequenceEqual(b.Buffer.Span[..b.Size]);

    /// <summary>Copies <paramref name="source"/> into <paramref name="target"/>, whose buffer must be large enough.</summary>
    public static void CopyTo(SocketAddress source, SocketAddress target)
    {
        source.Buffer.Span[..source.Size].CopyTo(target.Buffer.Span);
        target.Size = source.Size;
    }

    /// <summary>An exact, independent copy (allocates; for cache misses and setup only).</summary>
    public static SocketAddress Clone(SocketAddress source)
    {
        var copy = new SocketAddress(source.Family, source.Size);
        source.Buffer.Span[..source.Size].CopyTo(copy.Buffer.Span);
        return copy;
    }
}
