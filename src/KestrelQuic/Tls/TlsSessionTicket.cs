using System.Text;
using KestrelQuic.Crypto;
using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

/// <summary>Client-side state of a NewSessionTicket (RFC 8446 §4.6.1) needed to resume.</summary>
public sealed class TlsSessionTicket
{
    private const byte FormatVersion = 1;

    /// <summary>The opaque ticket (PSK identity).</summary>
    public required byte[] Ticket { get; init; }

    /// <summary>The PSK derived from resumption_master_secret and the ticket nonce.</summary>
    public required byte[] ResumptionSecret { get; init; }

    /// <summary>Cipher suite of the connection that issued the ticket.</summary>
    public CipherSuite CipherSuite { get; init; }

    /// <summary>ticket_age_add.</summary>
    public uint AgeAdd { get; init; }

    /// <summary>ticket_lifetime in seconds.</summary>
    public uint LifetimeSeconds { get; init; }

    /// <summary>When the ticket was received.</summary>
    public DateTimeOffset ReceivedAt { get; init; }

    /// <summary>max_early_data_size (0 = no 0-RTT; 0xffffffff in QUIC when allowed).</summary>
    public uint MaxEarlyDataSize { get; init; }

    /// <summary>ALPN protocol of the issuing connection (0-RTT must use the same).</summary>
    public string? ApplicationProtocol { get; init; }

    /// <summary>SNI of the issuing connection.</summary>
    public string? ServerName { get; init; }

    /// <summary>Slot for the QUIC layer (remembered server transport parameters, RFC 9000 §7.4.1).</summary>
    public byte[]? QuicData { get; set; }

    /// <summary>Serializes the ticket for storage.</summary>
    public byte[] Serialize()
    {
        byte[] alpn = ApplicationProtocol is null ? [] : Encoding.ASCII.GetBytes(ApplicationProtocol);
        byte[] sni = ServerName is null ? [] : Encoding.UTF8.GetBytes(ServerName);
        byte[] quic = QuicData ?? [];
        byte[] buffer = new byte[1 + 4 + Ticket.Length + 2 + ResumptionSecret.Length + 2 + 4 + 4 + 8 + 4 + 1 + 2 + alpn.Length + 1 + 2 + sni.Length + 1 + 4 + quic.Length];
        var w = new SpanWriter(buffer);
        w.WriteByte(FormatVersion);
        w.WriteUInt32((uint)Ticket.Length);
        w.WriteBytes(Ticket);
        w.WriteUInt16((ushort)ResumptionSecret.Length);
        w.WriteBytes(ResumptionSecret);
        w.WriteUInt16((ushort)CipherSuite);
        w.WriteUInt32(AgeAdd);
        w.WriteUInt32(LifetimeSeconds);
        w.WriteUInt64((ulong)ReceivedAt.ToUnixTimeMilliseconds());
        w.WriteUInt32(MaxEarlyDataSize);
        WriteOptional(ref w, ApplicationProtocol is null ? null : alpn);
        WriteOptional(ref w, ServerName is null ? null : sni);
        w.WriteByte(QuicData is null ? (byte)0 : (byte)1);
        w.WriteUInt32((uint)quic.Length);
        w.WriteBytes(quic);
        return buffer[..w.Position];

        static void WriteOptional(ref SpanWriter w, byte[]? value)
        {
            w.WriteByte(value is null ? (byte)0 : (byte)1);
            w.WriteUInt16((ushort)(value?.Length ?? 0));
            w.WriteBytes(value ?? []);
        }
    }

    /// <summary>Parses data produced by <see cref="Serialize"/>; false on malformed input.</summary>
    public static bool TryDeserialize(ReadOnlySpan<byte> data, out TlsSessionTicket? ticket)
    {
        ticket = null;
        var r = new SpanReader(data);
        if (!r.TryReadByte(out byte version) || version != FormatVersion
            || !r.TryReadUInt32(out uint ticketLength) || ticketLength > int.MaxValue || !r.TryReadBytes((int)ticketLength, out ReadOnlySpan<byte> t) || t.IsEmpty
            || !r.TryReadVector(2, out ReadOnlySpan<byte> secret) || secret.Length is not (32 or 48)
            || !r.TryReadUInt16(out ushort suite) || !CipherSuiteInfo.IsDefined(suite)
            || !r.TryReadUInt32(out uint ageAdd) || !r.TryReadUInt32(out uint lifetime)
            || !r.TryReadUInt64(out ulong receivedMs) || receivedMs > 253402300799999UL
            || !r.TryReadUInt32(out uint maxEarly)
            || !TryReadOptional(ref r, out byte[]? alpn) || !TryReadOptional(ref r, out byte[]? sni)
            || !r.TryReadByte(out byte hasQuic) || hasQuic > 1
            || !r.TryReadUInt32(out uint quicLength) || quicLength > int.MaxValue || !r.TryReadBytes((int)quicLength, out ReadOnlySpan<byte> quic)
            || !r.IsEmpty)
        {
            return false;
        }

        ticket = new TlsSessionTicket
        {
            Ticket = t.ToArray(),
            ResumptionSecret = secret.ToArray(),
            CipherSuite = (CipherSuite)suite,
            AgeAdd = ageAdd,
            LifetimeSeconds = lifetime,
            ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds((long)receivedMs),
            MaxEarlyDataSize = maxEarly,
            ApplicationProtocol = alpn is null ? null : Encoding.ASCII.GetString(alpn),
            ServerName = sni is null ? null : Encoding.UTF8.GetString(sni),
            QuicData = hasQuic == 1 ? quic.ToArray() : null,
        };
        return true;

        static bool TryReadOptional(ref SpanReader r, out byte[]? value)
        {
            value = null;
            if (!r.TryReadByte(out byte present) || present > 1 || !r.TryReadVector(2, out ReadOnlySpan<byte> v))
            {
                return false;
            }

            value = present == 1 ? v.ToArray() : null;
            return true;
        }
    }
}
