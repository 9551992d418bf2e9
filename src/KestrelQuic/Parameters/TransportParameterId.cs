namespace KestrelQuic.Parameters;

/// <summary>Transport parameter identifiers (RFC 9000 §18.2, RFC 9221 §3, RFC 9287 §3, RFC 9368 §5).</summary>
internal static class TransportParameterId
{
    public const ulong OriginalDestinationConnectionId = 0x00;
    public const ulong MaxIdleTimeout = 0x01;
    public const ulong StatelessResetToken = 0x02;
    public const ulong MaxUdpPayloadSize = 0x03;
    public const ulong InitialMaxData = 0x04;
    public const ulong InitialMaxStreamDataBidiLocal = 0x05;
    public const ulong InitialMaxStreamDataBidiRemote = 0x06;
    public const ulong InitialMaxStreamDataUni = 0x07;
    public const ulong InitialMaxStreamsBidi = 0x08;
    public const ulong InitialMaxStreamsUni = 0x09;
    public const ulong AckDelayExponent = 0x0a;
    public const ulong MaxAckDelay = 0x0b;
    public const ulong DisableActiveMigration = 0x0c;
    public const ulong PreferredAddress = 0x0d;
    public const ulong ActiveConnectionIdLimit = 0x0e;
    public const ulong InitialSourceConnectionId = 0x0f;
    public const ulong RetrySourceConnectionId = 0x10;
    public const ulong VersionInformation = 0x11;
    public const ulong MaxDatagramFrameSize = 0x20;
    public const ulong GreaseQuicBit = 0x2ab2;

    /// <summary>Reserved identifiers 31 * N + 27 exercise the "ignore unknown parameters" rule (RFC 9000 §18.1).</summary>
    public static bool IsReserved(ulong id) => id >= 27 && (id - 27) % 31 == 0;
}
