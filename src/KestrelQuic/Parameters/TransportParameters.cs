using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Parameters;

/// <summary>
/// QUIC transport parameters (RFC 9000 §18, RFC 9221 §3, RFC 9287, RFC 9368 §3): the content of the
/// quic_transport_parameters TLS extension. Decoded and encoded once per connection, so this type allocates.
/// Default values are the RFC defaults; parameters equal to their default are not encoded.
/// </summary>
internal sealed class TransportParameters
{
    public const ulong DefaultMaxUdpPayloadSize = 65527;
    public const ulong DefaultAckDelayExponent = 3;
    public const ulong DefaultMaxAckDelay = 25;
    public const ulong DefaultActiveConnectionIdLimit = 2;

    /// <summary>Smallest permitted max_udp_payload_size (RFC 9000 §18.2).</summary>
    public const ulong MinMaxUdpPayloadSize = 1200;

    /// <summary>Largest permitted ack_delay_exponent.</summary>
    public const ulong MaxAckDelayExponent = 20;

    /// <summary>max_ack_delay values of 2^14 or more are invalid.</summary>
    public const ulong MaxAckDelayLimit = 1UL << 14;

    /// <summary>initial_max_streams_* cannot exceed 2^60.</summary>
    public const ulong MaxStreamsLimit = 1UL << 60;

    public const int MaxConnectionIdLength = 20;
    public const int StatelessResetTokenLength = 16;

    private bool _addGrease;
    private ulong _greaseId;
    private byte[] _greaseValue = [];

    public byte[]? OriginalDestinationConnectionId { get; set; }

    /// <summary>Milliseconds; 0 = no idle timeout.</summary>
    public ulong MaxIdleTimeout { get; set; }

    public byte[]? StatelessResetToken { get; set; }

    public ulong MaxUdpPayloadSize { get; set; } = DefaultMaxUdpPayloadSize;

    public ulong InitialMaxData { get; set; }

    public ulong InitialMaxStreamDataBidiLocal { get; set; }

    public ulong InitialMaxStreamDataBidiRemote { get; set; }

    public ulong InitialMaxStreamDataUni { get; set; }

    public ulong InitialMaxStreamsBidi { get; set; }

    public ulong InitialMaxStreamsUni { get; set; }

    public ulong AckDelayExponent { get; set; } = DefaultAckDelayExponent;

    /// <summary>Milliseconds.</summary>
    public ulong MaxAckDelay { get; set; } = DefaultMaxAckDelay;

    public bool DisableActiveMigration { get; set; }

    public PreferredAddress? PreferredAddress { get; set; }

    public ulong ActiveConnectionIdLimit { get; set; } = DefaultActiveConnectionIdLimit;

    public byte[]? InitialSourceConnectionId { get; set; }

    public byte[]? RetrySourceConnectionId { get; set; }

    /// <summary>RFC 9221: null = absent (DATAGRAM not supported).</summary>
    public ulong? MaxDatagramFrameSize { get; set; }

    /// <summary>RFC 9287: the peer may send packets with the QUIC Bit set to 0.</summary>
    public bool GreaseQuicBit { get; set; }

    public VersionInformation? VersionInformation { get; set; }

    /// <summary>When set, <see cref="Encode(Span{byte})"/> adds one reserved parameter (id 31 * N + 27, random value) to exercise the peer's tolerance (RFC 9000 §18.1).</summary>
    public bool AddGreaseParameter
    {
        get => _addGrease;
        set
        {
            if (value && !_addGrease)
            {
                // Chosen once so that GetEncodedLength and Encode agree.
                _greaseId = 31UL * (ulong)Random.Shared.NextInt64(0, 1L << 40) + 27;
                _greaseValue = new byte[Random.Shared.Next(0, 17)];
                Random.Shared.NextBytes(_greaseValue);
            }

            _addGrease = value;
        }
    }

    /// <summary>The reserved parameter id used when <see cref="AddGreaseParameter"/> is set.</summary>
    public ulong GreaseParameterId => _greaseId;

    public int GetEncodedLength() => Serialize(default, measureOnly: true);

    /// <summary>Encodes into <paramref name="destination"/> (sized with <see cref="GetEncodedLength"/>); returns bytes written.</summary>
    public int Encode(Span<byte> destination)
    {
        int length = GetEncodedLength();
        if (destination.Length < length) throw new ArgumentException("Destination too small.", nameof(destination));
        return Serialize(destination, measureOnly: false);
    }

    public byte[] Encode()
    {
        byte[] result = new byte[GetEncodedLength()];
        Serialize(result, measureOnly: false);
        return result;
    }

    private int Serialize(Span<byte> destination, bool measureOnly)
    {
        var w = new ParameterWriter(destination, measureOnly);
        if (OriginalDestinationConnectionId is { } odcid) w.Bytes(TransportParameterId.OriginalDestinationConnectionId, CheckCid(odcid));
        if (MaxIdleTimeout != 0) w.VarInt(TransportParameterId.MaxIdleTimeout, MaxIdleTimeout);
        if (StatelessResetToken is { } token) w.Bytes(TransportParameterId.StatelessResetToken, CheckToken(token));
        if (MaxUdpPayloadSize != DefaultMaxUdpPayloadSize) w.VarInt(TransportParameterId.MaxUdpPayloadSize, MaxUdpPayloadSize);
        if (InitialMaxData != 0) w.VarInt(TransportParameterId.InitialMaxData, InitialMaxData);
        if (InitialMaxStreamDataBidiLocal != 0) w.VarInt(TransportParameterId.InitialMaxStreamDataBidiLocal, InitialMaxStreamDataBidiLocal);
        if (InitialMaxStreamDataBidiRemote != 0) w.VarInt(TransportParameterId.InitialMaxStreamDataBidiRemote, InitialMaxStreamDataBidiRemote);
        if (InitialMaxStreamDataUni != 0) w.VarInt(TransportParameterId.InitialMaxStreamDataUni, InitialMaxStreamDataUni);
        if (InitialMaxStreamsBidi != 0) w.VarInt(TransportParameterId.InitialMaxStreamsBidi, InitialMaxStreamsBidi);
        if (InitialMaxStreamsUni != 0) w.VarInt(TransportParameterId.InitialMaxStreamsUni, InitialMaxStreamsUni);
        if (AckDelayExponent != DefaultAckDelayExponent) w.VarInt(TransportParameterId.AckDelayExponent, AckDelayExponent);
        if (MaxAckDelay != DefaultMaxAckDelay) w.VarInt(TransportParameterId.MaxAckDelay, MaxAckDelay);
        if (DisableActiveMigration) w.Bytes(TransportParameterId.DisableActiveMigration, []);
        if (PreferredAddress is { } pa) w.PreferredAddress(pa);
        if (ActiveConnectionIdLimit != DefaultActiveConnectionIdLimit) w.VarInt(TransportParameterId.ActiveConnectionIdLimit, ActiveConnectionIdLimit);
        if (InitialSourceConnectionId is { } iscid) w.Bytes(TransportParameterId.InitialSourceConnectionId, CheckCid(iscid));
        if (RetrySourceConnectionId is { } rscid) w.Bytes(TransportParameterId.RetrySourceConnectionId, CheckCid(rscid));
        if (VersionInformation is { } vi) w.VersionInformation(vi);
        if (MaxDatagramFrameSize is { } mdfs) w.VarInt(TransportParameterId.MaxDatagramFrameSize, mdfs);
        if (GreaseQuicBit) w.Bytes(TransportParameterId.GreaseQuicBit, []);
        if (_addGrease) w.Bytes(_greaseId, _greaseValue);
        return w.Length;
    }

    private static byte[] CheckCid(byte[] cid) =>
        cid.Length <= MaxConnectionIdLength ? cid : throw new InvalidOperationException("Connection IDs are at most 20 bytes.");

    private static byte[] CheckToken(byte[] token) =>
        token.Length == StatelessResetTokenLength ? token : throw new InvalidOperationException("Stateless reset tokens are 16 bytes.");

    /// <summary>
    /// Decodes and validates transport parameters received from the peer. <paramref name="sentByServer"/> is true
    /// when the peer is the server (so server-only parameters are allowed). Any violation yields
    /// TRANSPORT_PARAMETER_ERROR (RFC 9000 §7.4, §18.2); unknown parameters are ignored.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> data, bool sentByServer,
        [NotNullWhen(true)] out TransportParameters? parameters, out TransportError error)
    {
        parameters = null;
        var p = new TransportParameters();
        var r = new SpanReader(data);
        ulong seenKnown = 0;
        HashSet<ulong>? seenUnknown = null;

        while (!r.IsEmpty)
        {
            if (!r.TryReadVarInt(out ulong id) || !r.TryReadVarInt(out ulong length) || length > (ulong)r.Remaining)
            {
                return Fail(out error, "Malformed transport parameter");
            }

            r.TryReadBytes((int)length, out ReadOnlySpan<byte> value);

            int bit = KnownIndex(id);
            if (bit < 0)
            {
                // Unknown (including reserved) parameters are ignored, but may still not repeat (RFC 9000 §7.4).
                seenUnknown ??= [];
                if (!seenUnknown.Add(id))
                {
                    return Fail(out error, "Duplicate transport parameter");
                }

                continue;
            }

            if ((seenKnown & (1UL << bit)) != 0)
            {
                return Fail(out error, "Duplicate transport parameter");
            }

            seenKnown |= 1UL << bit;

            string? failure = p.ReadKnown(id, value, sentByServer);
            if (failure is not null)
            {
                return Fail(out error, failure);
            }
        }

        // RFC 9000 §18.2: a server using a zero-length connection ID must not provide a preferred address.
        if (p.PreferredAddress is not null && p.InitialSourceConnectionId is { Length: 0 })
        {
            return Fail(out error, "preferred_address with a zero-length connection ID");
        }

        parameters = p;
        error = default;
        return true;
    }

    private static bool Fail(out TransportError error, string reason)
    {
        error = new TransportError(TransportErrorCode.TransportParameterError, 0, reason);
        return false;
    }

    private static int KnownIndex(ulong id) => id switch
    {
        <= TransportParameterId.VersionInformation => (int)id,
        TransportParameterId.MaxDatagramFrameSize => 18,
        TransportParameterId.GreaseQuicBit => 19,
        _ => -1,
    };

    private string? ReadKnown(ulong id, ReadOnlySpan<byte> value, bool sentByServer)
    {
        switch (id)
        {
            case TransportParameterId.OriginalDestinationConnectionId:
                if (!sentByServer) return "original_destination_connection_id sent by a client";
                if (value.Length > MaxConnectionIdLength) return "original_destination_connection_id too long";
                OriginalDestinationConnectionId = value.ToArray();
                return null;

            case TransportParameterId.StatelessResetToken:
                if (!sentByServer) return "stateless_reset_token sent by a client";
                if (value.Length != StatelessResetTokenLength) return "stateless_reset_token must be 16 bytes";
                StatelessResetToken = value.ToArray();
                return null;

            case TransportParameterId.PreferredAddress:
                if (!sentByServer) return "preferred_address sent by a client";
                return ReadPreferredAddress(value);

            case TransportParameterId.RetrySourceConnectionId:
                if (!sentByServer) return "retry_source_connection_id sent by a client";
                if (value.Length > MaxConnectionIdLength) return "retry_source_connection_id too long";
                RetrySourceConnectionId = value.ToArray();
                return null;

            case TransportParameterId.InitialSourceConnectionId:
                if (value.Length > MaxConnectionIdLength) return "initial_source_connection_id too long";
                InitialSourceConnectionId = value.ToArray();
                return null;

            case TransportParameterId.DisableActiveMigration:
                if (!value.IsEmpty) return "disable_active_migration must be empty";
                DisableActiveMigration = true;
                return null;

            case TransportParameterId.GreaseQuicBit:
                if (!value.IsEmpty) return "grease_quic_bit must be empty";
                GreaseQuicBit = true;
                return null;

            case TransportParameterId.VersionInformation:
                return ReadVersionInformation(value, sentByServer);
        }

        // The remaining known parameters are a single variable-length integer filling the value exactly.
        if (!VariableLengthInteger.TryRead(value, out ulong v, out int read) || read != value.Length)
        {
            return "Malformed integer transport parameter";
        }

        switch (id)
        {
            case TransportParameterId.MaxIdleTimeout:
                MaxIdleTimeout = v;
                break;
            case TransportParameterId.MaxUdpPayloadSize:
                if (v < MinMaxUdpPayloadSize) return "max_udp_payload_size below 1200";
                MaxUdpPayloadSize = v;
                break;
            case TransportParameterId.InitialMaxData:
                InitialMaxData = v;
                break;
            case TransportParameterId.InitialMaxStreamDataBidiLocal:
                InitialMaxStreamDataBidiLocal = v;
                break;
            case TransportParameterId.InitialMaxStreamDataBidiRemote:
                InitialMaxStreamDataBidiRemote = v;
                break;
            case TransportParameterId.InitialMaxStreamDataUni:
                InitialMaxStreamDataUni = v;
                break;
            case TransportParameterId.InitialMaxStreamsBidi:
                if (v > MaxStreamsLimit) return "initial_max_streams_bidi above 2^60";
                InitialMaxStreamsBidi = v;
                break;
            case TransportParameterId.InitialMaxStreamsUni:
                if (v > MaxStreamsLimit) return "initial_max_streams_uni above 2^60";
                InitialMaxStreamsUni = v;
                break;
            case TransportParameterId.AckDelayExponent:
                if (v > MaxAckDelayExponent) return "ack_delay_exponent above 20";
                AckDelayExponent = v;
                break;
            case TransportParameterId.MaxAckDelay:
                if (v >= MaxAckDelayLimit) return "max_ack_delay of 2^14 or more";
                MaxAckDelay = v;
                break;
            case TransportParameterId.ActiveConnectionIdLimit:
                if (v < 2) return "active_connection_id_limit below 2";
                ActiveConnectionIdLimit = v;
                break;
            case TransportParameterId.MaxDatagramFrameSize:
                MaxDatagramFrameSize = v;
                break;
        }

        return null;
    }

    // RFC 9000 §18.2, Figure 22.
    private string? ReadPreferredAddress(ReadOnlySpan<byte> value)
    {
        if (value.Length < PreferredAddress.FixedLength)
        {
            return "preferred_address too short";
        }

        int cidLength = value[24];
        if (cidLength == 0) return "preferred_address with a zero-length connection ID";
        if (cidLength > MaxConnectionIdLength) return "preferred_address connection ID too long";
        if (value.Length != PreferredAddress.FixedLength + cidLength) return "preferred_address has the wrong length";

        PreferredAddress = new PreferredAddress
        {
            IPv4Address = new IPAddress(value.Slice(0, 4)),
            IPv4Port = BinaryPrimitives.ReadUInt16BigEndian(value.Slice(4)),
            IPv6Address = new IPAddress(value.Slice(6, 16)),
            IPv6Port = BinaryPrimitives.ReadUInt16BigEndian(value.Slice(22)),
            ConnectionId = value.Slice(25, cidLength).ToArray(),
            StatelessResetToken = value.Slice(25 + cidLength, StatelessResetTokenLength).ToArray(),
        };
        return null;
    }

    // RFC 9368 §3: Chosen Version then Available Versions, all 32-bit and non-zero.
    private string? ReadVersionInformation(ReadOnlySpan<byte> value, bool sentByServer)
    {
        if (value.Length < 4 || value.Length % 4 != 0) return "version_information has the wrong length";
        uint chosen = BinaryPrimitives.ReadUInt32BigEndian(value);
        if (chosen == 0) return "version_information Chosen Version is 0";
        uint[] available = new uint[(value.Length / 4) - 1];
        for (int i = 0; i < available.Length; i++)
        {
            available[i] = BinaryPrimitives.ReadUInt32BigEndian(value.Slice(4 + i * 4));
            if (available[i] == 0) return "version_information Available Version is 0";
        }

        // RFC 9368 §4: a client's Chosen Version must be among its Available Versions (a server's need not be).
        if (!sentByServer && Array.IndexOf(available, chosen) < 0) return "version_information Chosen Version is not an Available Version";
        VersionInformation = new VersionInformation { ChosenVersion = chosen, AvailableVersions = available };
        return null;
    }

    // Writes (or only measures) id/length/value triples.
    private ref struct ParameterWriter
    {
        private SpanWriter _writer;
        private readonly bool _measureOnly;

        public ParameterWriter(Span<byte> destination, bool measureOnly)
        {
            _writer = new SpanWriter(destination);
            _measureOnly = measureOnly;
            Length = 0;
        }

        public int Length { get; private set; }

        public void VarInt(ulong id, ulong value)
        {
            int valueLength = VariableLengthInteger.GetLength(value);
            Header(id, valueLength);
            if (!_measureOnly) _writer.WriteVarInt(value);
        }

        public void Bytes(ulong id, ReadOnlySpan<byte> value)
        {
            Header(id, value.Length);
            if (!_measureOnly) _writer.WriteBytes(value);
        }

        public void PreferredAddress(PreferredAddress pa)
        {
            if (pa.ConnectionId.Length is 0 or > MaxConnectionIdLength) throw new InvalidOperationException("preferred_address needs a 1..20 byte connection ID.");
            CheckToken(pa.StatelessResetToken);
            Header(TransportParameterId.PreferredAddress, pa.EncodedLength);
            if (_measureOnly) return;
            pa.IPv4Address.TryWriteBytes(_writer.Reserve(4), out _);
            _writer.WriteUInt16(pa.IPv4Port);
            pa.IPv6Address.TryWriteBytes(_writer.Reserve(16), out _);
            _writer.WriteUInt16(pa.IPv6Port);
            _writer.WriteByte((byte)pa.ConnectionId.Length);
            _writer.WriteBytes(pa.ConnectionId);
            _writer.WriteBytes(pa.StatelessResetToken);
        }

        public void VersionInformation(VersionInformation vi)
        {
            Header(TransportParameterId.VersionInformation, vi.EncodedLength);
            if (_measureOnly) return;
            _writer.WriteUInt32(vi.ChosenVersion);
            foreach (uint v in vi.AvailableVersions) _writer.WriteUInt32(v);
        }

        private void Header(ulong id, int valueLength)
        {
            Length += VariableLengthInteger.GetLength(id) + VariableLengthInteger.GetLength((ulong)valueLength) + valueLength;
            if (_measureOnly) return;
            _writer.WriteVarInt(id);
            _writer.WriteVarInt((ulong)valueLength);
        }
    }
}
