using System.Security.Cryptography;

namespace KestrelQuic.Crypto;

/// <summary>HKDF-Expand-Label and Derive-Secret from TLS 1.3 (RFC 8446 §7.1), used by both the TLS key schedule and QUIC packet protection.</summary>
internal static class HkdfLabel
{
    private const int MaxLabelLength = 255 - 6; // "tls13 " prefix

    /// <summary>HKDF-Expand-Label(Secret, Label, Context, Length) into <paramref name="output"/>.</summary>
    public static void Expand(HashAlgorithmName hash, ReadOnlySpan<byte> secret, ReadOnlySpan<byte> label, ReadOnlySpan<byte> context, Span<byte> output)
    {
        if (label.Length > MaxLabelLength) throw new ArgumentOutOfRangeException(nameof(label));
        if (context.Length > 255) throw new ArgumentOutOfRangeException(nameof(context));

        // struct { uint16 length; opaque label<7..255> = "tls13 " + Label; opaque context<0..255>; } HkdfLabel;
        Span<byte> info = stackalloc byte[2 + 1 + 6 + label.Length + 1 + context.Length];
        info[0] = (byte)(output.Length >> 8);
        info[1] = (byte)output.Length;
        info[2] = (byte)(6 + label.Length);
        "tls13 "u8.CopyTo(info.Slice(3));
        label.CopyTo(info.Slice(9));
        info[9 + label.Length] = (byte)context.Length;
        context.CopyTo(info.Slice(10 + label.Length));
        HKDF.Expand(hash, secret, output, info);
    }

    /// <summary>HKDF-Expand-Label returning a new array.</summary>
    public static byte[] Expand(HashAlgorithmName hash, ReadOnlySpan<byte> secret, ReadOnlySpan<byte> label, ReadOnlySpan<byte> context, int length)
    {
        byte[] output = new byte[length];
        Expand(hash, secret, label, context, output);
        return output;
    }
}
