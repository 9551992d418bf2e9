using System.Security.Cryptography;
using KestrelQuic.Crypto;
using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

/// <summary>Server-side ticket state, sealed with AES-256-GCM under the session ticket key (stateless resumption, RFC 8446 §4.6.1).</summary>
internal sealed class TicketState
{
    private const byte FormatVersion = 1;
    private const int NonceLength = 12;
    private const int TagLength = 16;

    public required CipherSuite CipherSuite { get; init; }

    public required byte[] Psk { get; init; }

    public long IssuedUnixMilliseconds { get; init; }

    public uint AgeAdd { get; init; }

    public uint LifetimeSeconds { get; init; }

    public uint MaxEarlyDataSize { get; init; }

    public required string ApplicationProtocol { get; init; }

    public string? ServerName { get; init; }

    public required byte[] ApplicationData { get; init; }

    public byte[] Seal(byte[] key)
    {
        var w = new TlsMessageWriter();
        w.WriteUInt8(FormatVersion);
        w.WriteUInt16((ushort)CipherSuite);
        int v = w.BeginVector(1);
        w.WriteBytes(Psk);
        w.EndVector(v);
        w.WriteUInt32((uint)((ulong)IssuedUnixMilliseconds >> 32));
        w.WriteUInt32((uint)IssuedUnixMilliseconds);
        w.WriteUInt32(AgeAdd);
        w.WriteUInt32(LifetimeSeconds);
        w.WriteUInt32(MaxEarlyDataSize);
        v = w.BeginVector(1);
        w.WriteBytes(System.Text.Encoding.ASCII.GetBytes(ApplicationProtocol));
        w.EndVector(v);
        w.WriteUInt8(ServerName is null ? (byte)0 : (byte)1);
        v = w.BeginVector(2);
        w.WriteBytes(ServerName is null ? [] : System.Text.Encoding.UTF8.GetBytes(ServerName));
        w.EndVector(v);
        v = w.BeginVector(2);
        w.WriteBytes(ApplicationData);
        w.EndVector(v);

        ReadOnlySpan<byte> plaintext = w.Written;
        byte[] ticket = new byte[NonceLength + plaintext.Length + TagLength];
        Span<byte> nonce = ticket.AsSpan(0, NonceLength);
        RandomNumberGenerator.Fill(nonce);
        using var aead = new AesGcm(key, TagLength);
        aead.Encrypt(nonce, plaintext, ticket.AsSpan(NonceLength, plaintext.Length), ticket.AsSpan(NonceLength + plaintext.Length));
        return ticket;
    }

    /// <summary>Opens a ticket; null when it was not sealed with this key or is malformed.</summary>
    public static TicketState? TryOpen(byte[] key, ReadOnlySpan<byte> ticket)
    {
        if (ticket.Length < NonceLength + TagLength + 1)
        {
            return null;
        }

        byte[] plaintext = new byte[ticket.Length - NonceLength - TagLength];
        try
        {
            using var aead = new AesGcm(key, TagLength);
            aead.Decrypt(ticket[..NonceLength], ticket.Slice(NonceLength, plaintext.Length), ticket[^TagLength..], plaintext);
        }
        catch (CryptographicException)
        {
            return null;
        }

        var r = new SpanReader(plaintext);
        if (!r.TryReadByte(out byte version) || version != FormatVersion
            || !r.TryReadUInt16(out ushort suite) || !CipherSuiteInfo.IsDefined(suite)
            || !r.TryReadVector(1, out ReadOnlySpan<byte> psk)
            || !r.TryReadUInt64(out ulong issued)
            || !r.TryReadUInt32(out uint ageAdd) || !r.TryReadUInt32(out uint lifetime) || !r.TryReadUInt32(out uint maxEarly)
            || !r.TryReadVector(1, out ReadOnlySpan<byte> alpn)
            || !r.TryReadByte(out byte hasSni) || !r.TryReadVector(2, out ReadOnlySpan<byte> sni)
            || !r.TryReadVector(2, out ReadOnlySpan<byte> appData) || !r.IsEmpty)
        {
            return null;
        }

        return new TicketState
        {
            CipherSuite = (CipherSuite)suite,
            Psk = psk.ToArray(),
            IssuedUnixMilliseconds = (long)issued,
            AgeAdd = ageAdd,
            LifetimeSeconds = lifetime,
            MaxEarlyDataSize = maxEarly,
            ApplicationProtocol = System.Text.Encoding.ASCII.GetString(alpn),
            ServerName = hasSni == 1 ? System.Text.Encoding.UTF8.GetString(sni) : null,
            ApplicationData = appData.ToArray(),
        };
    }
}
