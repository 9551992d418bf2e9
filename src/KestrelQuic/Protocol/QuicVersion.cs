namespace KestrelQuic.Protocol;

/// <summary>QUIC version numbers.</summary>
internal static class QuicVersion
{
    /// <summary>QUIC version 1 (RFC 9000).</summary>
    public const uint Version1 = 0x00000001;

    /// <summary>QUIC version 2 (RFC 9369).</summary>
    public const uint Version2 = 0x6b3343cf;

    /// <summary>The version field of a Version Negotiation packet.</summary>
    public const uint Negotiation = 0;

    public static bool IsSupported(uint version) => version is Version1 or Version2;

    /// <summary>Versions of the form 0x?a?a?a?a are reserved to exercise version negotiation (RFC 9000 §15).</summary>
    public static bool IsReserved(uint version) => (version & 0x0F0F0F0F) == 0x0A0A0A0A;
}
