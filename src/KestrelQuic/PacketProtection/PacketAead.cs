using System.Buffers.Binary;
using System.Security.Cryptography;
using KestrelQuic.Crypto;

namespace KestrelQuic.PacketProtection;

/// <summary>
/// The AEAD of one key phase and direction (RFC 9001 §5.3): AES-GCM on AES-NI and PCLMULQDQ
/// (<see cref="AesGcmIntrinsics"/>) where the processor has them, else a cached platform <see cref="AesGcm"/>, or the
/// platform <see cref="ChaCha20Poly1305"/>; nonce = IV XOR packet number. Seals and opens in place without allocating.
/// An idle connection may give the platform context back (<see cref="ReleaseContext"/>, about 1.4 KiB of native
/// memory each); the next packet builds it again from the key. Not thread-safe: the platform AEAD instances must not
/// be used concurrently.
/// </summary>
internal sealed class PacketAead : IDisposable
{
    public const int TagLength = CipherSuiteInfo.TagLength;
    private const int NonceLength = CipherSuiteInfo.IvLength;

    private readonly byte[] _key;
    private readonly byte[] _iv;
    private readonly bool _allowIntrinsics;
    private AesGcmIntrinsics? _aesGcmIntrinsics;
    private AesGcm? _aesGcm;
    private ChaCha20Poly1305? _chaCha;
    private bool _disposed;
    private long _encryptedPackets;
    private long _failedDecryptions;

    private PacketAead(CipherSuite suite, byte[] key, byte[] iv, bool allowIntrinsics)
    {
        Suite = suite;
        _key = key;
        _iv = iv;
        _allowIntrinsics = allowIntrinsics;
        CreateContext();
    }

    /// <summary>True when AES-GCM runs on <see cref="AesGcmIntrinsics"/> rather than the platform implementation.</summary>
    internal bool UsesIntrinsics => _aesGcmIntrinsics is not null || (Suite != CipherSuite.ChaCha20Poly1305Sha256 && _allowIntrinsics && AesGcmIntrinsics.IsSupported);

    public CipherSuite Suite { get; }

    /// <summary>Packets sealed with this key (for the confidentiality limit, RFC 9001 §6.6).</summary>
    public long EncryptedPackets => _encryptedPackets;

    /// <summary>Packets that failed authentication with this key (for the integrity limit, RFC 9001 §6.6).</summary>
    public long FailedDecryptions => _failedDecryptions;

    /// <summary>Creates the AEAD from the "quic key" and "quic iv" values.</summary>
    public static PacketAead Create(CipherSuite suite, ReadOnlySpan<byte> key, ReadOnlySpan<byte> iv) => Create(suite, key, iv, allowIntrinsics: true);

    /// <summary>As <see cref="Create(CipherSuite, ReadOnlySpan{byte}, ReadOnlySpan{byte})"/>; tests pass false to force the platform AEAD.</summary>
    internal static PacketAead Create(CipherSuite suite, ReadOnlySpan<byte> key, ReadOnlySpan<byte> iv, bool allowIntrinsics)
    {
        if (key.Length != CipherSuiteInfo.KeyLength(suite))
        {
            throw new ArgumentException($"AEAD key for {suite} must be {CipherSuiteInfo.KeyLength(suite)} bytes.", nameof(key));
        }

        if (iv.Length != NonceLength) throw new ArgumentException("The IV must be 12 bytes.", nameof(iv));

        return suite switch
        {
            CipherSuite.Aes128GcmSha256 or CipherSuite.Aes256GcmSha384 or CipherSuite.ChaCha20Poly1305Sha256 => new PacketAead(suite, key.ToArray(), iv.ToArray(), allowIntrinsics),
            _ => throw new ArgumentOutOfRangeException(nameof(suite), suite, "Unsupported cipher suite."),
        };
    }

    /// <summary>Disposes the platform context; the next seal or open creates it again (once, then no allocation).</summary>
    public void ReleaseContext()
    {
        _aesGcmIntrinsics = null;
        _aesGcm?.Dispose();
        _aesGcm = null;
        _chaCha?.Dispose();
        _chaCha = null;
    }

    private void CreateContext()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Suite == CipherSuite.ChaCha20Poly1305Sha256) _chaCha = new ChaCha20Poly1305(_key);
        else if (_allowIntrinsics && AesGcmIntrinsics.IsSupported) _aesGcmIntrinsics = new AesGcmIntrinsics(_key);
        else _aesGcm = new AesGcm(_key, TagLength);
    }

    /// <summary>Encrypts <paramref name="plaintextInOut"/> in place and writes the 16-byte tag.</summary>
    public void Seal(long packetNumber, ReadOnlySpan<byte> associatedData, Span<byte> plaintextInOut, Span<byte> tag)
    {
        if (tag.Length != TagLength) throw new ArgumentException("The tag must be 16 bytes.", nameof(tag));
        Span<byte> nonce = stackalloc byte[NonceLength];
        ComputeNonce(packetNumber, nonce);
        if (_aesGcmIntrinsics is null && _aesGcm is null && _chaCha is null) CreateContext();
        if (_aesGcmIntrinsics is not null)
        {
            _aesGcmIntrinsics.Encrypt(nonce, plaintextInOut, plaintextInOut, tag, associatedData);
        }
        else if (_aesGcm is not null)
        {
            _aesGcm.Encrypt(nonce, plaintextInOut, plaintextInOut, tag, associatedData);
        }
        else
        {
            _chaCha!.Encrypt(nonce, plaintextInOut, plaintextInOut, tag, associatedData);
        }

        _encryptedPackets++;
    }

    /// <summary>
    /// Decrypts <paramref name="ciphertextInOut"/> in place. Returns false when authentication fails; the platform AEAD
    /// then clears the buffer (the intrinsic AES-GCM leaves it untouched), so callers must not retry the same bytes.
    /// </summary>
    public bool TryOpen(long packetNumber, ReadOnlySpan<byte> associatedData, Span<byte> ciphertextInOut, ReadOnlySpan<byte> tag)
    {
        if (tag.Length != TagLength)
        {
            _failedDecryptions++;
            return false;
        }

        Span<byte> nonce = stackalloc byte[NonceLength];
        ComputeNonce(packetNumber, nonce);
        if (_aesGcmIntrinsics is null && _aesGcm is null && _chaCha is null) CreateContext();
        if (_aesGcmIntrinsics is not null)
        {
            if (_aesGcmIntrinsics.TryDecrypt(nonce, ciphertextInOut, tag, ciphertextInOut, associatedData)) return true;
            _failedDecryptions++;
            return false;
        }

        try
        {
            if (_aesGcm is not null)
            {
                _aesGcm.Decrypt(nonce, ciphertextInOut, tag, ciphertextInOut, associatedData);
            }
            else
            {
                _chaCha!.Decrypt(nonce, ciphertextInOut, tag, ciphertextInOut, associatedData);
            }

            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            // A forged or corrupted packet is expected input; RFC 9001 §6.6 only asks us to count it.
            _failedDecryptions++;
            return false;
        }
    }

    /// <summary>nonce = iv XOR packet number, left-padded to the IV length in network byte order (RFC 9001 §5.3).</summary>
    internal void ComputeNonce(long packetNumber, Span<byte> nonce)
    {
        _iv.CopyTo(nonce);
        Span<byte> tail = nonce.Slice(NonceLength - 8);
        BinaryPrimitives.WriteUInt64BigEndian(tail, BinaryPrimitives.ReadUInt64BigEndian(tail) ^ (ulong)packetNumber);
    }

    public void Dispose()
    {
        _disposed = true;
        ReleaseContext();
        CryptographicOperations.ZeroMemory(_key);
    }
}
