using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Parameters;

/// <summary>The preferred_address transport parameter value (RFC 9000 §18.2). An all-zero address+port means "not provided" for that family.</summary>
internal sealed class PreferredAddress
{
    /// <summary>Encoded length without the connection ID: 4 + 2 + 16 + 2 + 1 + 16.</summary>
    public const int FixedLength = 41;

    private IPAddress _ipv4Address = IPAddress.Any;
    private IPAddress _ipv6Address = IPAddress.IPv6Any;

    public IPAddress IPv4Address
    {
        get => _ipv4Address;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.AddressFamily != AddressFamily.InterNetwork) throw new ArgumentException("An IPv4 address is required.", nameof(value));
            _ipv4Address = value;
        }
    }

    public ushort IPv4Port { get; set; }

    public IPAddress IPv6Address
    {
        get => _ipv6Address;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            if (value.AddressFamily != AddressFamily.InterNetworkV6) throw new ArgumentException("An IPv6 address is required.", nameof(value));
            _ipv6Address = value;
        }
    }

    public ushort IPv6Port { get; set; }

    /// <summary>1..20 bytes; a zero-length connection ID is not allowed here.</summary>
    public byte[] ConnectionId { get; set; } = [];

    /// <summary>16 bytes.</summary>
    public byte[] StatelessResetToken { get; set; } = new byte[16];

    public int EncodedLength => FixedLength + ConnectionId.Length;
}
