using System.Net;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Parameters;

public sealed class TransportParametersTests
{
    private static readonly byte[] Token = Convert.FromHexString("00112233445566778899aabbccddeeff");

    private static TransportParameters FullServerParameters() => new()
    {
        OriginalDestinationConnectionId = Convert.FromHexString("8394c8f03e515708"),
        MaxIdleTimeout = 30_000,
        StatelessResetToken = Token,
        MaxUdpPayloadSize = 1472,
        InitialMaxData = 1UL << 40,
        InitialMaxStreamDataBidiLocal = 1_000_000,
        InitialMaxStreamDataBidiRemote = 2_000_000,
        InitialMaxStreamDataUni = 3_000_000,
        InitialMaxStreamsBidi = 100,
        InitialMaxStreamsUni = 1UL << 60,
        AckDelayExponent = 20,
        MaxAckDelay = (1UL << 14) - 1,
        DisableActiveMigration = true,
        PreferredAddress = new PreferredAddress
        {
            IPv4Address = IPAddress.Parse("192.0.2.1"),
            IPv4Port = 4433,
            IPv6Address = IPAddress.Parse("2001:db8::1"),
            IPv6Port = 4434,
            ConnectionId = [1, 2, 3, 4],
            StatelessResetToken = Token,
        },
        ActiveConnectionIdLimit = 8,
        InitialSourceConnectionId = Convert.FromHexString("f067a5502a4262b5"),
        RetrySourceConnectionId = [9, 9],
        MaxDatagramFrameSize = 65535,
        GreaseQuicBit = true,
        VersionInformation = new VersionInformation { ChosenVersion = QuicVersion.Version2, AvailableVersions = [QuicVersion.Version2, QuicVersion.Version1] },
    };

    private static TransportError DecodeError(ReadOnlySpan<byte> data, bool sentByServer = true)
    {
        Assert.False(TransportParameters.TryDecode(data, sentByServer, out TransportParameters? p, out TransportError error));
        Assert.Null(p);
        Assert.Equal(TransportErrorCode.TransportParameterError, error.Code);
        Assert.False(string.IsNullOrEmpty(error.Reason));
        return error;
    }

    private static byte[] Param(ulong id, ReadOnlySpan<byte> value)
    {
        var list = new List<byte>();
        list.AddRange(Varint(id));
        list.AddRange(Varint((ulong)value.Length));
        list.AddRange(value.ToArray());
        return list.ToArray();
    }

    private static byte[] VarintParam(ulong id, ulong value) => Param(id, Varint(value));

    private static byte[] Varint(ulong value)
    {
        byte[] b = new byte[VariableLengthInteger.GetLength(value)];
        VariableLengthInteger.Write(b, value);
        return b;
    }

    [Fact]
    public void RoundTrip_AllParameters()
    {
        TransportParameters original = FullServerParameters();
        byte[] encoded = original.Encode();
        Assert.Equal(original.GetEncodedLength(), encoded.Length);

        Assert.True(TransportParameters.TryDecode(encoded, sentByServer: true, out TransportParameters? p, out _));
        Assert.Equal(original.OriginalDestinationConnectionId, p.OriginalDestinationConnectionId);
        Assert.Equal(30_000UL, p.MaxIdleTimeout);
        Assert.Equal(Token, p.StatelessResetToken);
        Assert.Equal(1472UL, p.MaxUdpPayloadSize);
        Assert.Equal(1UL << 40, p.InitialMaxData);
        Assert.Equal(1_000_000UL, p.InitialMaxStreamDataBidiLocal);
        Assert.Equal(2_000_000UL, p.InitialMaxStreamDataBidiRemote);
        Assert.Equal(3_000_000UL, p.InitialMaxStreamDataUni);
        Assert.Equal(100UL, p.InitialMaxStreamsBidi);
        Assert.Equal(1UL << 60, p.InitialMaxStreamsUni);
        Assert.Equal(20UL, p.AckDelayExponent);
        Assert.Equal((1UL << 14) - 1, p.MaxAckDelay);
        Assert.True(p.DisableActiveMigration);
        Assert.NotNull(p.PreferredAddress);
        Assert.Equal(IPAddress.Parse("192.0.2.1"), p.PreferredAddress.IPv4Address);
        Assert.Equal(4433, p.PreferredAddress.IPv4Port);
        Assert.Equal(IPAddress.Parse("2001:db8::1"), p.PreferredAddress.IPv6Address);
        Assert.Equal(4434, p.PreferredAddress.IPv6Port);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, p.PreferredAddress.ConnectionId);
        Assert.Equal(Token, p.PreferredAddress.StatelessResetToken);
        Assert.Equal(8UL, p.ActiveConnectionIdLimit);
        Assert.Equal(original.InitialSourceConnectionId, p.InitialSourceConnectionId);
        Assert.Equal(new byte[] { 9, 9 }, p.RetrySourceConnectionId);
        Assert.Equal(65535UL, p.MaxDatagramFrameSize);
        Assert.True(p.GreaseQuicBit);
        Assert.NotNull(p.VersionInformation);
        Assert.Equal(QuicVersion.Version2, p.VersionInformation.ChosenVersion);
        Assert.Equal(new[] { QuicVersion.Version2, QuicVersion.Version1 }, p.VersionInformation.AvailableVersions);

        // Re-encoding gives the same bytes.
        Assert.Equal(encoded, p.Encode());
    }

    [Fact]
    public void Decode_Empty_GivesDefaults()
    {
        Assert.True(TransportParameters.TryDecode([], sentByServer: false, out TransportParameters? p, out _));
        Assert.Null(p.OriginalDestinationConnectionId);
        Assert.Equal(0UL, p.MaxIdleTimeout);
        Assert.Equal(65527UL, p.MaxUdpPayloadSize);
        Assert.Equal(3UL, p.AckDelayExponent);
        Assert.Equal(25UL, p.MaxAckDelay);
        Assert.Equal(2UL, p.ActiveConnectionIdLimit);
        Assert.Null(p.MaxDatagramFrameSize);
        Assert.Null(p.InitialSourceConnectionId);
        Assert.False(p.GreaseQuicBit);
        Assert.False(p.DisableActiveMigration);
        Assert.Empty(new TransportParameters().Encode());
    }

    [Fact]
    public void RoundTrip_ZeroLengthConnectionIdsAndZeroDatagramSize()
    {
        var original = new TransportParameters { InitialSourceConnectionId = [], MaxDatagramFrameSize = 0 };
        byte[] encoded = original.Encode();
        Assert.Equal("0f00" + "200100", Convert.ToHexString(encoded).ToLowerInvariant());
        Assert.True(TransportParameters.TryDecode(encoded, false, out TransportParameters? p, out _));
        Assert.NotNull(p.InitialSourceConnectionId);
        Assert.Empty(p.InitialSourceConnectionId);
        Assert.Equal(0UL, p.MaxDatagramFrameSize);
    }

    [Fact]
    public void Encode_IntoSpan_MatchesArray()
    {
        TransportParameters tp = FullServerParameters();
        byte[] buffer = new byte[512];
        int n = tp.Encode(buffer);
        Assert.Equal(tp.Encode(), buffer[..n]);
        Assert.Throws<ArgumentException>(() => tp.Encode(new byte[n - 1]));
    }

    [Fact]
    public void Duplicate_IsError()
    {
        DecodeError([.. VarintParam(0x04, 10), .. VarintParam(0x04, 10)]);
        DecodeError([.. Param(0x0f, [1]), .. Param(0x0f, [1])]);
        DecodeError([.. Param(0x2ab2, []), .. Param(0x2ab2, [])]);
        DecodeError([.. VarintParam(0x20, 1), .. VarintParam(0x20, 1)]);
        DecodeError([.. Param(0x1b, [1]), .. Param(0x1b, [2])]); // reserved id repeated
    }

    [Fact]
    public void UnknownAndGreaseIds_AreIgnored()
    {
        byte[] data = [.. Param(27, [1, 2, 3]), .. Param(31 * 1000 + 27, []), .. Param(0x3fff_ffff, new byte[40]), .. VarintParam(0x04, 77),
            .. Param(0xff00_0000_0000, [0xaa])];
        Assert.True(TransportParameters.TryDecode(data, false, out TransportParameters? p, out _));
        Assert.Equal(77UL, p.InitialMaxData);
    }

    [Fact]
    public void AddGreaseParameter_EmitsReservedIdThatDecodersSkip()
    {
        var tp = new TransportParameters { InitialMaxData = 5, AddGreaseParameter = true };
        Assert.True(TransportParameterId.IsReserved(tp.GreaseParameterId));
        byte[] encoded = tp.Encode();
        Assert.Equal(tp.GetEncodedLength(), encoded.Length);
        Assert.True(encoded.Length > 3);
        Assert.True(TransportParameters.TryDecode(encoded, false, out TransportParameters? p, out _));
        Assert.Equal(5UL, p.InitialMaxData);
    }

    [Theory]
    [InlineData(0x00UL)]
    [InlineData(0x02UL)]
    [InlineData(0x0dUL)]
    [InlineData(0x10UL)]
    public void ServerOnlyParameter_FromClient_IsError(ulong id)
    {
        TransportParameters server = FullServerParameters();
        byte[] value = id switch
        {
            0x00 => server.OriginalDestinationConnectionId!,
            0x02 => Token,
            0x0d => PreferredAddressBytes(4),
            _ => [1, 2],
        };
        byte[] data = Param(id, value);
        Assert.True(TransportParameters.TryDecode(data, sentByServer: true, out _, out _));
        DecodeError(data, sentByServer: false);
    }

    private static byte[] PreferredAddressBytes(int cidLength, int tokenLength = 16)
    {
        var list = new List<byte>();
        list.AddRange([192, 0, 2, 1, 0x11, 0x51]);
        list.AddRange(new byte[16]);
        list.AddRange([0x11, 0x52, (byte)cidLength]);
        list.AddRange(Enumerable.Repeat((byte)7, cidLength));
        list.AddRange(new byte[tokenLength]);
        return list.ToArray();
    }

    public static TheoryData<string, byte[]> InvalidValues() => new()
    {
        { "max_udp_payload_size 1199", VarintParam(0x03, 1199) },
        { "max_udp_payload_size 0", VarintParam(0x03, 0) },
        { "ack_delay_exponent 21", VarintParam(0x0a, 21) },
        { "max_ack_delay 2^14", VarintParam(0x0b, 1 << 14) },
        { "max_ack_delay huge", VarintParam(0x0b, VariableLengthInteger.MaxValue) },
        { "active_connection_id_limit 0", VarintParam(0x0e, 0) },
        { "active_connection_id_limit 1", VarintParam(0x0e, 1) },
        { "initial_max_streams_bidi 2^60+1", VarintParam(0x08, (1UL << 60) + 1) },
        { "initial_max_streams_uni 2^60+1", VarintParam(0x09, (1UL << 60) + 1) },
        { "odcid 21 bytes", Param(0x00, new byte[21]) },
        { "iscid 21 bytes", Param(0x0f, new byte[21]) },
        { "rscid 21 bytes", Param(0x10, new byte[21]) },
        { "reset token 15 bytes", Param(0x02, new byte[15]) },
        { "reset token 17 bytes", Param(0x02, new byte[17]) },
        { "reset token empty", Param(0x02, []) },
        { "preferred_address zero cid", PreferredAddressArray(0) },
        { "preferred_address cid 21", PreferredAddressArray(21) },
        { "preferred_address short token", Param(0x0d, PreferredAddressBytes(4, 15)) },
        { "preferred_address long token", Param(0x0d, PreferredAddressBytes(4, 17)) },
        { "preferred_address truncated", Param(0x0d, new byte[30]) },
        { "disable_active_migration with value", Param(0x0c, [0]) },
        { "grease_quic_bit with value", Param(0x2ab2, [1]) },
        { "integer with trailing byte", Param(0x04, [0x05, 0x00]) },
        { "integer truncated", Param(0x04, [0x40]) },
        { "integer empty", Param(0x01, []) },
        { "max_datagram_frame_size empty", Param(0x20, []) },
        { "version_information empty", Param(0x11, []) },
        { "version_information ragged", Param(0x11, [0, 0, 0, 1, 0, 0]) },
        { "version_information chosen 0", Param(0x11, [0, 0, 0, 0, 0, 0, 0, 1]) },
        { "version_information available 0", Param(0x11, [0, 0, 0, 1, 0, 0, 0, 0]) },
        { "length beyond data", [0x04, 0x05, 0x01] },
        { "truncated id", [0x40] },
        { "truncated length", [0x04] },
        { "preferred_address with zero-length iscid", [.. Param(0x0d, PreferredAddressBytes(4)), .. Param(0x0f, [])] },
    };

    private static byte[] PreferredAddressArray(int cidLength) => Param(0x0d, PreferredAddressBytes(cidLength));

    [Theory]
    [MemberData(nameof(InvalidValues))]
    public void InvalidValue_IsTransportParameterError(string name, byte[] data)
    {
        Assert.NotNull(name);
        DecodeError(data, sentByServer: true);
    }

    [Fact]
    public void VersionInformation_ChosenVersionOutsideAvailable_FailsOnlyFromAClient()
    {
        // RFC 9368 §4: a server treats a client's Chosen Version missing from its Available Versions as a parsing
        // failure; a server's Available Versions need not contain its Chosen Version.
        byte[] data = Param(0x11, [0, 0, 0, 1, 0x6b, 0x33, 0x43, 0xcf]);
        DecodeError(data, sentByServer: false);
        Assert.True(TransportParameters.TryDecode(data, sentByServer: true, out TransportParameters? p, out _));
        Assert.Equal(QuicVersion.Version1, p!.VersionInformation!.ChosenVersion);
        Assert.Equal([QuicVersion.Version2], p.VersionInformation.AvailableVersions);
    }

    [Theory]
    [InlineData(0x03UL, 1200UL)]
    [InlineData(0x0aUL, 20UL)]
    [InlineData(0x0bUL, 16383UL)]
    [InlineData(0x0eUL, 2UL)]
    [InlineData(0x08UL, 1UL << 60)]
    [InlineData(0x01UL, 0x3fff_ffff_ffff_ffffUL)]
    public void BoundaryValues_AreAccepted(ulong id, ulong value)
    {
        Assert.True(TransportParameters.TryDecode(VarintParam(id, value), true, out _, out _));
    }

    [Fact]
    public void NonMinimalIntegerEncoding_IsAccepted()
    {
        // Only the value's length must match the parameter length; the varint itself may be long.
        Assert.True(TransportParameters.TryDecode(Param(0x04, [0x80, 0x00, 0x00, 0x05]), false, out TransportParameters? p, out _));
        Assert.Equal(5UL, p.InitialMaxData);
    }

    [Fact]
    public void Truncation_AtEveryOffset_IsErrorNotException()
    {
        byte[] encoded = FullServerParameters().Encode();
        int failures = 0;
        for (int cut = 0; cut < encoded.Length; cut++)
        {
            if (!TransportParameters.TryDecode(encoded.AsSpan(0, cut), true, out _, out TransportError error))
            {
                Assert.Equal(TransportErrorCode.TransportParameterError, error.Code);
                failures++;
            }
        }

        // Cuts that land exactly between parameters are valid shorter lists; everything else fails.
        Assert.True(failures > encoded.Length * 3 / 4);
    }

    [Fact]
    public void Truncation_InsideEachParameter_IsError()
    {
        byte[] encoded = FullServerParameters().Encode();
        var boundaries = new HashSet<int> { 0 };
        var r = new SpanReader(encoded);
        while (!r.IsEmpty)
        {
            r.TryReadVarInt(out _);
            r.TryReadVarInt(out ulong length);
            r.TrySkip((int)length);
            boundaries.Add(r.Position);
        }

        for (int cut = 0; cut < encoded.Length; cut++)
        {
            bool ok = TransportParameters.TryDecode(encoded.AsSpan(0, cut), true, out _, out _);
            Assert.Equal(boundaries.Contains(cut), ok);
        }
    }

    [Fact]
    public void RandomMutation_NeverThrows()
    {
        var random = new Random(42);
        byte[] encoded = FullServerParameters().Encode();
        for (int i = 0; i < 20000; i++)
        {
            byte[] data = (byte[])encoded.Clone();
            int mutations = random.Next(1, 4);
            for (int m = 0; m < mutations; m++)
            {
                data[random.Next(data.Length)] = (byte)random.Next(256);
            }

            int length = random.Next(2) == 0 ? data.Length : random.Next(data.Length);
            if (!TransportParameters.TryDecode(data.AsSpan(0, length), random.Next(2) == 0, out _, out TransportError error))
            {
                Assert.Equal(TransportErrorCode.TransportParameterError, error.Code);
            }
        }
    }
}
