namespace KestrelQuic.Protocol;

/// <summary>
/// QUIC version numbers, for <see cref="Configuration.QuicConfiguration.SupportedVersions"/> and
/// <see cref="QuicConnection.Version"/>.
/// </summary>
public static class QuicVersion
{
    /// <summary>QUIC version 1 (RFC 9000).</summary>
    public const uint Version1 = 0x00000001;

    /// <summary>QUIC version 2 (RFC 9369): version 1 with other constants, negotiable from version 1 without a round trip.</summary>
    public const uint Version2 = 0x6b3343cf;

    /// <summary>The version field of a Version Negotiation packet.</summary>
    internal const uint Negotiation = 0;

    internal static bool IsSupported(uint version) => version is Version1 or Version2;

    /// <summary>Versions of the form 0x?a?a?a?a are reserved to exercise version negotiation (RFC 9000 §15).</summary>
    internal static bool IsReserved(uint version) => (version & 0x0F0F0F0F) == 0x0A0A0A0A;
}
