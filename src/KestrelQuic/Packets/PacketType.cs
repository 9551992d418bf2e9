namespace KestrelQuic.Packets;

/// <summary>QUIC packet types (RFC 9000 §17). The long-header types are the logical types; their wire bits differ in v2 (RFC 9369 §3.2).</summary>
internal enum PacketType
{
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
    VersionNegotiation,
    OneRtt,
}
