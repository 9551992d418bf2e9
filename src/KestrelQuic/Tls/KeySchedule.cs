using System.Buffers;
using System.Security.Cryptography;
using KestrelQuic.Crypto;

namespace KestrelQuic.Tls;

/// <summary>The TLS 1.3 key schedule (RFC 8446 §7.1) for one hash function.</summary>
internal sealed class KeySchedule
{
    private readonly byte[] _emptyHash;

    public KeySchedule(HashAlgorithmName hash, ReadOnlySpan<byte> psk)
    {
        Hash = hash;
        HashLength = hash == HashAlgorithmName.SHA384 ? 48 : 32;
        _emptyHash = HashData(hash, []);

        // Without a PSK the IKM is a string of Hash.length zero bytes; the salt is likewise zero.
        EarlySecret = Extract(psk.IsEmpty ? new byte[HashLength] : psk, []);
    }

    public HashAlgorithmName Hash { get; }

    public int HashLength { get; }

    public byte[] EarlySecret { get; }

    public byte[]? HandshakeSecret { get; private set; }

    public byte[]? MasterSecret { get; private set; }

    public static byte[] HashData(HashAlgorithmName hash, ReadOnlySpan<byte> data) =>
        hash == HashAlgorithmName.SHA384 ? SHA384.HashData(data) : SHA256.HashData(data);

    /// <summary>Derive-Secret(Secret, Label, Messages) with the transcript hash already computed.</summary>
    public byte[] DeriveSecret(ReadOnlySpan<byte> secret, ReadOnlySpan<byte> label, ReadOnlySpan<byte> transcriptHash) =>
        HkdfLabel.Expand(Hash, secret, label, transcriptHash, HashLength);

    public byte[] BinderKey() => DeriveSecret(EarlySecret, "res binder"u8, _emptyHash);

    public void DeriveHandshakeSecret(ReadOnlySpan<byte> sharedSecret)
    {
        byte[] derived = DeriveSecret(EarlySecret, "derived"u8, _emptyHash);
        HandshakeSecret = Extract(sharedSecret, derived);
    }

    public void DeriveMasterSecret()
    {
        byte[] derived = DeriveSecret(HandshakeSecret!, "derived"u8, _emptyHash);
        MasterSecret = Extract(new byte[HashLength], derived);
    }

    /// <summary>verify_data = HMAC(finished_key, transcript hash) (RFC 8446 §4.4.4); also used for PSK binders.</summary>
    public byte[] ComputeFinished(ReadOnlySpan<byte> baseKey, ReadOnlySpan<byte> transcriptHash)
    {
        byte[] finishedKey = HkdfLabel.Expand(Hash, baseKey, "finished"u8, [], HashLength);
        return Hash == HashAlgorithmName.SHA384
            ? HMACSHA384.HashData(finishedKey, transcriptHash)
            : HMACSHA256.HashData(finishedKey, transcriptHash);
    }

    /// <summary>The PSK associated with a ticket (RFC 8446 §4.6.1).</summary>
    public byte[] ResumptionPsk(ReadOnlySpan<byte> resumptionMasterSecret, ReadOnlySpan<byte> nonce) =>
        HkdfLabel.Expand(Hash, resumptionMasterSecret, "resumption"u8, nonce, HashLength);

    private byte[] Extract(ReadOnlySpan<byte> ikm, ReadOnlySpan<byte> salt)
    {
        byte[] prk = new byte[HashLength];
        HKDF.Extract(Hash, ikm, salt, prk);
        return prk;
    }
}

/// <summary>The running transcript (RFC 8446 §4.4.1). Raw bytes are kept too because PSK binders hash a prefix plus a truncated ClientHello.</summary>
internal sealed class Transcript : IDisposable
{
    private ArrayBufferWriter<byte>? _messages = new(4096);
    private IncrementalHash? _hash;

    public HashAlgorithmName? Hash { get; private set; }

    public void Add(ReadOnlySpan<byte> message)
    {
        Messages.Write(message);
        _hash?.AppendData(message);
    }

    public void SetHash(HashAlgorithmName hash)
    {
        if (_hash is not null)
        {
            return;
        }

        Hash = hash;
        _hash = IncrementalHash.CreateHash(hash);
        _hash.AppendData(Messages.WrittenSpan);
    }

    public byte[] CurrentHash() => _hash!.GetCurrentHash();

    /// <summary>Hash of the transcript so far followed by <paramref name="extra"/>, without changing the transcript.</summary>
    public byte[] HashWith(HashAlgorithmName hash, ReadOnlySpan<byte> extra)
    {
        using IncrementalHash h = IncrementalHash.CreateHash(hash);
        h.AppendData(Messages.WrittenSpan);
        h.AppendData(extra);
        return h.GetHashAndReset();
    }

    /// <summary>After a HelloRetryRequest, ClientHello1 is replaced by message_hash (RFC 8446 §4.4.1).</summary>
    public void ReplaceWithMessageHash()
    {
        byte[] hashOfClientHello1 = _hash!.GetHashAndReset();
        Messages.ResetWrittenCount();
        Span<byte> header = [(byte)HandshakeType.MessageHash, 0, 0, (byte)hashOfClientHello1.Length];
        Add(header);
        Add(hashOfClientHello1);
    }

    private ArrayBufferWriter<byte> Messages => _messages ?? throw new InvalidOperationException("The transcript was released after the handshake.");

    /// <summary>
    /// Drops the messages and the running hash once the last secret that depends on them is derived (the
    /// resumption master secret): a few KiB per connection that an idle connection should not keep.
    /// </summary>
    public void Release()
    {
        _hash?.Dispose();
        _hash = null;
        _messages = null;
    }

    public void Dispose() => _hash?.Dispose();
}
