namespace KestrelQuic.Crypto;

/// <summary>TLS 1.3 cipher suites usable with QUIC (RFC 9001 §5.3). Values are the IANA code points.</summary>
public enum CipherSuite : ushort
{
    /// <summary>TLS_AES_128_GCM_SHA256.</summary>
    Aes128GcmSha256 = 0x1301,

    /// <summary>TLS_AES_256_GCM_SHA384.</summary>
    Aes256GcmSha384 = 0x1302,

    /// <summary>TLS_CHACHA20_POLY1305_SHA256.</summary>
    ChaCha20Poly1305Sha256 = 0x1303,
}

internal static class CipherSuiteInfo
{
    public static System.Security.Cryptography.HashAlgorithmName Hash(CipherSuite suite) =>
        suite == CipherSuite.Aes256GcmSha384 ? System.Security.Cryptography.HashAlgorithmName.SHA384 : System.Security.Cryptography.HashAlgorithmName.SHA256;

    public static int HashLength(CipherSuite suite) => suite == CipherSuite.Aes256GcmSha384 ? 48 : 32;

    public static int KeyLength(CipherSuite suite) => suite == CipherSuite.Aes128GcmSha256 ? 16 : 32;

    public const int IvLength = 12;

    public const int TagLength = 16;

    public static bool IsDefined(ushort value) => value is 0x1301 or 0x1302 or 0x1303;
}
