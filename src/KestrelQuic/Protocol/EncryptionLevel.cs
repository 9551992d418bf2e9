namespace KestrelQuic.Protocol;

/// <summary>The encryption levels of RFC 9001 §2.1, in handshake order.</summary>
internal enum EncryptionLevel
{
    Initial = 0,
    ZeroRtt = 1,
    Handshake = 2,
    OneRtt = 3,
}

/// <summary>The three packet number spaces of RFC 9000 §12.3.</summary>
internal enum PacketNumberSpace
{
    Initial = 0,
    Handshake = 1,
    ApplicationData = 2,
}

internal static class EncryptionLevelExtensions
{
    public const int SpaceCount = 3;

    public static PacketNumberSpace ToSpace(this EncryptionLevel level) => level switch
    {
        EncryptionLevel.Initial => PacketNumberSpace.Initial,
        EncryptionLevel.Handshake => PacketNumberSpace.Handshake,
        _ => PacketNumberSpace.ApplicationData,
    };
}
