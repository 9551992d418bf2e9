using KestrelQuic.Protocol;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// The HKDF-Expand-Label labels used to derive packet protection material for one QUIC version
/// (RFC 9001 §5.1, §5.4, §6.1; RFC 9369 §3.3.2 renames them "quicv2 …"). The "tls13 " prefix is added by <c>HkdfLabel</c>.
/// </summary>
internal sealed class PacketProtectionLabels
{
    /// <summary>QUIC version 1 labels.</summary>
    public static readonly PacketProtectionLabels Version1 = new("quic key"u8, "quic iv"u8, "quic hp"u8, "quic ku"u8);

    /// <summary>QUIC version 2 labels.</summary>
    public static readonly PacketProtectionLabels Version2 = new("quicv2 key"u8, "quicv2 iv"u8, "quicv2 hp"u8, "quicv2 ku"u8);

    private readonly byte[] _key;
    private readonly byte[] _iv;
    private readonly byte[] _hp;
    private readonly byte[] _ku;

    private PacketProtectionLabels(ReadOnlySpan<byte> key, ReadOnlySpan<byte> iv, ReadOnlySpan<byte> hp, ReadOnlySpan<byte> ku)
    {
        _key = key.ToArray();
        _iv = iv.ToArray();
        _hp = hp.ToArray();
        _ku = ku.ToArray();
    }

    /// <summary>Label for the AEAD key ("quic key").</summary>
    public ReadOnlySpan<byte> Key => _key;

    /// <summary>Label for the AEAD IV ("quic iv").</summary>
    public ReadOnlySpan<byte> Iv => _iv;

    /// <summary>Label for the header protection key ("quic hp").</summary>
    public ReadOnlySpan<byte> Hp => _hp;

    /// <summary>Label for the next key phase secret ("quic ku").</summary>
    public ReadOnlySpan<byte> Ku => _ku;

    /// <summary>The labels for <paramref name="version"/>; throws for versions without defined packet protection.</summary>
    public static PacketProtectionLabels For(uint version) => version switch
    {
        QuicVersion.Version1 => Version1,
        QuicVersion.Version2 => Version2,
        _ => throw new ArgumentOutOfRangeException(nameof(version), version, "No packet protection is defined for this QUIC version."),
    };
}
