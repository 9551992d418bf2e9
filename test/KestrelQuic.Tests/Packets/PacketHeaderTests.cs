using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Packets;

public sealed class PacketHeaderTests
{
    // RFC 9001 Appendix A.2: unprotected client Initial header (PN 2 in 4 bytes, Length 1182).
    private const string ClientInitialHeaderV1 = "c300000001088394c8f03e5157080000449e00000002";

    // RFC 9001 Appendix A.3: unprotected server Initial header (PN 1 in 2 bytes, Length 117).
    private const string ServerInitialHeaderV1 = "c1000000010008f067a5502a4262b50040750001";

    // RFC 9001 Appendix A.3: the protected server Initial packet.
    private const string ServerInitialProtectedV1 =
        "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a" +
        "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3" +
        "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84" +
        "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4" +
        "2158407dd074ee";

    // RFC 9001 Appendix A.4 / RFC 9369 Appendix A.4: Retry packets (token "token", then the 16-byte tag).
    private const string RetryV1 = "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba";
    private const string RetryV2 = "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6";

    // RFC 9369 Appendix A.2 / A.3: unprotected v2 Initial headers.
    private const string ClientInitialHeaderV2 = "d36b3343cf088394c8f03e5157080000449e00000002";
    private const string ServerInitialHeaderV2 = "d16b3343cf0008f067a5502a4262b50040750001";

    // RFC 9001 Appendix A.5: protected ChaCha20-Poly1305 short header packet (empty DCID).
    private const string ShortHeaderProtected = "4cfe4189655e5cd55c41f69080575d7999c25a5bfb";

    private static byte[] Hex(string hex) => Convert.FromHexString(hex);

    private static string ToHex(ReadOnlySpan<byte> bytes) => Convert.ToHexString(bytes).ToLowerInvariant();

    // The header followed by enough bytes for the Length field's payload (and `extra` more).
    private static byte[] WithPayload(string headerHex, int pnOffset, int length, int extra = 0)
    {
        byte[] header = Hex(headerHex);
        byte[] datagram = new byte[pnOffset + length + extra];
        header.CopyTo(datagram, 0);
        return datagram;
    }

    [Fact]
    public void Parse_Rfc9001ClientInitialHeader()
    {
        byte[] datagram = WithPayload(ClientInitialHeaderV1, 18, 0x49e);
        Assert.Equal(1200, datagram.Length);
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h));
        Assert.True(h.IsLongHeader);
        Assert.True(h.IsSupportedVersion);
        Assert.True(h.FixedBit);
        Assert.Equal(PacketType.Initial, h.Type);
        Assert.Equal(QuicVersion.Version1, h.Version);
        Assert.Equal("8394c8f03e515708", ToHex(h.GetDestinationConnectionId(datagram)));
        Assert.Equal(6, h.DestinationConnectionIdOffset);
        Assert.Equal(0, h.SourceConnectionIdLength);
        Assert.Equal(0, h.TokenLength);
        Assert.True(h.GetToken(datagram).IsEmpty);
        Assert.Equal(16, h.LengthFieldOffset);
        Assert.Equal(0x049e, h.Length);
        Assert.Equal(18, h.PacketNumberOffset);
        Assert.Equal(1200, h.PacketLength);
        Assert.True(h.HasPacketNumber);
    }

    [Fact]
    public void Parse_Rfc9001ServerInitial_Protected()
    {
        byte[] datagram = Hex(ServerInitialProtectedV1);
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h));
        Assert.Equal(PacketType.Initial, h.Type);
        Assert.Equal(0, h.DestinationConnectionIdLength);
        Assert.Equal("f067a5502a4262b5", ToHex(h.GetSourceConnectionId(datagram)));
        Assert.Equal(0, h.TokenLength);
        Assert.Equal(0x75, h.Length);
        Assert.Equal(18, h.PacketNumberOffset);
        Assert.Equal(datagram.Length, h.PacketLength);
    }

    [Fact]
    public void Parse_Rfc9369ClientAndServerInitialHeaders_V2TypeBits()
    {
        byte[] client = WithPayload(ClientInitialHeaderV2, 18, 0x49e);
        Assert.True(PacketHeaderParser.TryParse(client, 8, out PacketHeader h));
        Assert.Equal(PacketType.Initial, h.Type);
        Assert.Equal(QuicVersion.Version2, h.Version);
        Assert.Equal("8394c8f03e515708", ToHex(h.GetDestinationConnectionId(client)));
        Assert.Equal(18, h.PacketNumberOffset);
        Assert.Equal(0x49e, h.Length);

        byte[] server = WithPayload(ServerInitialHeaderV2, 18, 0x75);
        Assert.True(PacketHeaderParser.TryParse(server, 8, out h));
        Assert.Equal(PacketType.Initial, h.Type);
        Assert.Equal("f067a5502a4262b5", ToHex(h.GetSourceConnectionId(server)));
        Assert.Equal(18, h.PacketNumberOffset);
    }

    [Theory]
    [InlineData(RetryV1, QuicVersion.Version1)]
    [InlineData(RetryV2, QuicVersion.Version2)]
    public void Parse_RfcRetryPackets(string hex, uint version)
    {
        byte[] packet = Hex(hex);
        Assert.True(PacketHeaderParser.TryParse(packet, 8, out PacketHeader h));
        Assert.Equal(PacketType.Retry, h.Type);
        Assert.Equal(version, h.Version);
        Assert.Equal(0, h.DestinationConnectionIdLength);
        Assert.Equal("f067a5502a4262b5", ToHex(h.GetSourceConnectionId(packet)));
        Assert.Equal("token", System.Text.Encoding.ASCII.GetString(h.GetToken(packet)));
        Assert.Equal(packet.Length, h.PacketLength);
        Assert.Equal(packet.Length - 16, h.TokenOffset + h.TokenLength);
        Assert.False(h.HasPacketNumber);
    }

    [Fact]
    public void Parse_Rfc9001ShortHeader()
    {
        byte[] packet = Hex(ShortHeaderProtected);
        Assert.True(PacketHeaderParser.TryParse(packet, 0, out PacketHeader h));
        Assert.False(h.IsLongHeader);
        Assert.Equal(PacketType.OneRtt, h.Type);
        Assert.Equal(0u, h.Version);
        Assert.True(h.FixedBit);
        Assert.False(h.SpinBit);
        Assert.Equal(1, h.PacketNumberOffset);
        Assert.Equal(packet.Length, h.PacketLength);
    }

    [Fact]
    public void Write_Rfc9001ClientInitialHeader()
    {
        byte[] buffer = new byte[64];
        int written = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, QuicVersion.Version1, Hex("8394c8f03e515708"), [], [],
            2, 4, out int lengthOffset, out int pnOffset);
        PacketHeaderWriter.SetLength(buffer, lengthOffset, 1182);
        Assert.Equal(ClientInitialHeaderV1, ToHex(buffer.AsSpan(0, written)));
        Assert.Equal(18, pnOffset);
        Assert.Equal(16, lengthOffset);
        Assert.Equal(written, PacketHeaderWriter.GetLongHeaderLength(PacketType.Initial, 8, 0, 0, 4));
    }

    [Theory]
    [InlineData(QuicVersion.Version1, ServerInitialHeaderV1)]
    [InlineData(QuicVersion.Version2, ServerInitialHeaderV2)]
    public void Write_RfcServerInitialHeaders(uint version, string expected)
    {
        byte[] buffer = new byte[64];
        int written = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, version, [], Hex("f067a5502a4262b5"), [],
            1, 2, out int lengthOffset, out int pnOffset);
        PacketHeaderWriter.SetLength(buffer, lengthOffset, 0x75);
        Assert.Equal(expected, ToHex(buffer.AsSpan(0, written)));
        Assert.Equal(18, pnOffset);
    }

    [Fact]
    public void Write_Rfc9369ClientInitialHeader()
    {
        byte[] buffer = new byte[64];
        int written = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, QuicVersion.Version2, Hex("8394c8f03e515708"), [], [],
            2, 4, out int lengthOffset, out _);
        PacketHeaderWriter.SetLength(buffer, lengthOffset, 1182);
        Assert.Equal(ClientInitialHeaderV2, ToHex(buffer.AsSpan(0, written)));
    }

    [Theory]
    [InlineData(QuicVersion.Version1, RetryV1)]
    [InlineData(QuicVersion.Version2, RetryV2)]
    public void Write_RfcRetryWithoutTag(uint version, string expected)
    {
        byte[] buffer = new byte[64];
        int written = PacketHeaderWriter.WriteRetry(buffer, version, [], Hex("f067a5502a4262b5"), "token"u8);
        Assert.Equal(expected[..^32], ToHex(buffer.AsSpan(0, written)));
        Assert.Equal(written, PacketHeaderWriter.GetRetryLength(0, 8, 5));
    }

    [Fact]
    public void Write_Rfc9001ShortHeader()
    {
        // RFC 9001 A.5: PN 654360564 encoded in 3 bytes (0x00bff4), empty DCID.
        byte[] buffer = new byte[16];
        int written = PacketHeaderWriter.WriteShortHeader(buffer, [], spinBit: false, keyPhase: false, 654360564L & 0xffffff, 3, out int pnOffset);
        Assert.Equal("4200bff4", ToHex(buffer.AsSpan(0, written)));
        Assert.Equal(1, pnOffset);
    }

    [Fact]
    public void Write_ShortHeaderBits()
    {
        byte[] buffer = new byte[32];
        byte[] dcid = Hex("0102030405060708");
        int written = PacketHeaderWriter.WriteShortHeader(buffer, dcid, spinBit: true, keyPhase: true, 0x1234, 2, out int pnOffset, fixedBit: false);
        Assert.Equal("2501020304050607081234", ToHex(buffer.AsSpan(0, written)));
        Assert.Equal(9, pnOffset);
        Assert.Equal(written, PacketHeaderWriter.GetShortHeaderLength(8, 2));

        buffer[written] = 0xaa; // one payload byte
        Assert.True(PacketHeaderParser.TryParse(buffer.AsSpan(0, written + 1), 8, out PacketHeader h));
        Assert.False(h.FixedBit);
        Assert.True(h.SpinBit);
        Assert.Equal("0102030405060708", ToHex(h.GetDestinationConnectionId(buffer)));
    }

    // RFC 9000 §17.2 and RFC 9369 §3.2 Long Packet Type bits.
    [Theory]
    [InlineData(QuicVersion.Version1, (int)PacketType.Initial, 0)]
    [InlineData(QuicVersion.Version1, (int)PacketType.ZeroRtt, 1)]
    [InlineData(QuicVersion.Version1, (int)PacketType.Handshake, 2)]
    [InlineData(QuicVersion.Version1, (int)PacketType.Retry, 3)]
    [InlineData(QuicVersion.Version2, (int)PacketType.Initial, 1)]
    [InlineData(QuicVersion.Version2, (int)PacketType.ZeroRtt, 2)]
    [InlineData(QuicVersion.Version2, (int)PacketType.Handshake, 3)]
    [InlineData(QuicVersion.Version2, (int)PacketType.Retry, 0)]
    public void LongHeaderTypeBits_V1AndV2(uint version, int typeValue, int bits)
    {
        var type = (PacketType)typeValue;
        Assert.Equal(bits, PacketTypeEncoding.GetLongHeaderTypeBits(type, version));
        Assert.Equal(type, PacketTypeEncoding.GetLongHeaderType(bits, version));

        byte[] buffer = new byte[64];
        int written = type == PacketType.Retry
            ? PacketHeaderWriter.WriteRetry(buffer, version, [1, 2], [3], [9, 9, 9]) + 16
            : WriteWithPayload(buffer, type, version);
        Assert.Equal(bits, (buffer[0] >> 4) & 3);
        Assert.True(PacketHeaderParser.TryParse(buffer.AsSpan(0, written), 8, out PacketHeader h));
        Assert.Equal(type, h.Type);
        Assert.Equal(version, h.Version);
        Assert.Equal(new byte[] { 1, 2 }, h.GetDestinationConnectionId(buffer).ToArray());
        Assert.Equal(new byte[] { 3 }, h.GetSourceConnectionId(buffer).ToArray());

        static int WriteWithPayload(byte[] buffer, PacketType type, uint version)
        {
            ReadOnlySpan<byte> token = type == PacketType.Initial ? [7, 7] : [];
            int n = PacketHeaderWriter.WriteLongHeader(buffer, type, version, [1, 2], [3], token, 5, 1, out int lengthOffset, out _);
            PacketHeaderWriter.SetLength(buffer, lengthOffset, 1 + 20);
            return n + 20;
        }
    }

    [Fact]
    public void Write_GreasedFixedBit_ParsesWithFixedBitClear()
    {
        byte[] buffer = new byte[64];
        int n = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Handshake, QuicVersion.Version1, [1], [2], [], 0, 1, out int lo, out _, fixedBit: false);
        PacketHeaderWriter.SetLength(buffer, lo, 1);
        Assert.Equal(0xa0, buffer[0]);
        Assert.True(PacketHeaderParser.TryParse(buffer.AsSpan(0, n), 8, out PacketHeader h));
        Assert.False(h.FixedBit);
        Assert.Equal(PacketType.Handshake, h.Type);
    }

    [Fact]
    public void Parse_CoalescedPackets()
    {
        byte[] buffer = new byte[256];
        int pos = 0;
        int n = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, QuicVersion.Version1, [1, 2, 3, 4], [5], [0xee], 1, 2, out int lo, out _);
        PacketHeaderWriter.SetLength(buffer, lo, 2 + 30);
        pos += n + 30;
        n = PacketHeaderWriter.WriteLongHeader(buffer.AsSpan(pos), PacketType.Handshake, QuicVersion.Version1, [1, 2, 3, 4], [5], [], 1, 2, out lo, out _);
        PacketHeaderWriter.SetLength(buffer.AsSpan(pos), lo, 2 + 40);
        pos += n + 40;
        n = PacketHeaderWriter.WriteShortHeader(buffer.AsSpan(pos), [1, 2, 3, 4], false, false, 1, 1, out _);
        pos += n + 25;

        ReadOnlySpan<byte> datagram = buffer.AsSpan(0, pos);
        PacketType[] expected = [PacketType.Initial, PacketType.Handshake, PacketType.OneRtt];
        int index = 0;
        while (!datagram.IsEmpty)
        {
            Assert.True(PacketHeaderParser.TryParse(datagram, 4, out PacketHeader h));
            Assert.Equal(expected[index++], h.Type);
            if (h.Type == PacketType.Initial) Assert.Equal(new byte[] { 0xee }, h.GetToken(datagram).ToArray());
            datagram = datagram.Slice(h.PacketLength);
        }

        Assert.Equal(3, index);
    }

    [Fact]
    public void Parse_UnknownVersion_OnlyInvariants()
    {
        // RFC 8999: unknown versions may carry connection IDs of up to 255 bytes.
        byte[] packet = [0xc5, 0x1a, 0x2a, 0x3a, 0x4a, 30, .. new byte[30], 25, .. new byte[25], 0xde, 0xad];
        packet[6] = 0x77;
        Assert.True(PacketHeaderParser.TryParse(packet, 8, out PacketHeader h));
        Assert.True(h.IsLongHeader);
        Assert.False(h.IsSupportedVersion);
        Assert.False(h.HasPacketNumber);
        Assert.Equal(0x1a2a3a4au, h.Version);
        Assert.Equal(30, h.DestinationConnectionIdLength);
        Assert.Equal(0x77, h.GetDestinationConnectionId(packet)[0]);
        Assert.Equal(25, h.SourceConnectionIdLength);
        Assert.Equal(packet.Length, h.PacketLength);
    }

    [Theory]
    [InlineData(QuicVersion.Version1)]
    [InlineData(QuicVersion.Version2)]
    public void Parse_ConnectionIdLongerThan20_InKnownVersion_Fails(uint version)
    {
        byte[] packet = new byte[100];
        packet[0] = 0xc0;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(1), version);
        packet[5] = 21;
        Assert.False(PacketHeaderParser.TryParse(packet, 8, out _));
        packet[5] = 20;
        packet[26] = 21; // SCID length
        Assert.False(PacketHeaderParser.TryParse(packet, 8, out _));
    }

    [Fact]
    public void Parse_LengthBeyondDatagram_Fails()
    {
        byte[] datagram = WithPayload(ClientInitialHeaderV1, 18, 0x49e);
        Assert.False(PacketHeaderParser.TryParse(datagram.AsSpan(0, datagram.Length - 1), 8, out _));
    }

    [Fact]
    public void Parse_ZeroLength_Fails()
    {
        byte[] buffer = new byte[64];
        int n = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Handshake, QuicVersion.Version1, [1], [2], [], 0, 1, out int lo, out _);
        PacketHeaderWriter.SetLength(buffer, lo, 0);
        Assert.False(PacketHeaderParser.TryParse(buffer, 8, out _));
        Assert.True(n > 0);
    }

    public static TheoryData<string, int> LengthBearingHeaders() => new()
    {
        { ClientInitialHeaderV1, 0x49e },
        { ServerInitialHeaderV1, 0x75 },
        { ClientInitialHeaderV2, 0x49e },
        { ServerInitialHeaderV2, 0x75 },
    };

    [Theory]
    [MemberData(nameof(LengthBearingHeaders))]
    public void Parse_EveryTruncation_Fails(string headerHex, int length)
    {
        byte[] datagram = WithPayload(headerHex, 18, length);
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out _));
        for (int cut = 0; cut < datagram.Length; cut++)
        {
            Assert.False(PacketHeaderParser.TryParse(datagram.AsSpan(0, cut), 8, out _));
        }
    }

    [Fact]
    public void Parse_EveryTruncation_InitialWithToken_Fails()
    {
        byte[] buffer = new byte[128];
        int n = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, QuicVersion.Version1, [1, 2, 3, 4, 5, 6, 7, 8], [9, 9, 9, 9],
            new byte[70], 7, 1, out int lo, out _);
        PacketHeaderWriter.SetLength(buffer, lo, 1 + 10);
        byte[] datagram = buffer.AsSpan(0, n + 10).ToArray();
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h));
        Assert.Equal(70, h.TokenLength);
        for (int cut = 0; cut < datagram.Length; cut++)
        {
            Assert.False(PacketHeaderParser.TryParse(datagram.AsSpan(0, cut), 8, out _));
        }
    }

    [Theory]
    [InlineData(RetryV1)]
    [InlineData(RetryV2)]
    public void Parse_RetryTruncatedIntoTag_Fails(string hex)
    {
        byte[] packet = Hex(hex);
        int scidEnd = 1 + 4 + 1 + 0 + 1 + 8;
        for (int cut = 0; cut < scidEnd + 16; cut++)
        {
            Assert.False(PacketHeaderParser.TryParse(packet.AsSpan(0, cut), 8, out _));
        }

        Assert.True(PacketHeaderParser.TryParse(packet.AsSpan(0, scidEnd + 16), 8, out PacketHeader h));
        Assert.Equal(0, h.TokenLength);
    }

    [Fact]
    public void Parse_ShortHeaderTruncated_Fails()
    {
        byte[] packet = [0x40, 1, 2, 3, 4, 5, 6, 7, 8, 0x01];
        for (int cut = 0; cut < packet.Length; cut++)
        {
            Assert.False(PacketHeaderParser.TryParse(packet.AsSpan(0, cut), 8, out _));
        }

        Assert.True(PacketHeaderParser.TryParse(packet, 8, out _));
    }

    [Fact]
    public void RandomGarbage_NeverThrows_AndOffsetsStayInBounds()
    {
        var random = new Random(0xbadf00d);
        int parsed = 0;
        for (int i = 0; i < 50000; i++)
        {
            byte[] bytes = new byte[random.Next(0, 80)];
            random.NextBytes(bytes);
            if (bytes.Length > 5 && random.Next(3) == 0)
            {
                // Steer towards supported versions so the type-specific paths are exercised.
                uint version = random.Next(3) switch { 0 => QuicVersion.Version1, 1 => QuicVersion.Version2, _ => 0 };
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(1), version);
                bytes[0] |= 0x80;
                if (bytes.Length > 6) bytes[5] &= 0x0f;
            }

            int dcidLength = random.Next(0, 21);
            if (!PacketHeaderParser.TryParse(bytes, dcidLength, out PacketHeader h))
            {
                continue;
            }

            parsed++;
            Assert.InRange(h.PacketLength, 1, bytes.Length);
            Assert.InRange(h.DestinationConnectionIdOffset + h.DestinationConnectionIdLength, 0, h.PacketLength);
            Assert.InRange(h.SourceConnectionIdOffset + h.SourceConnectionIdLength, 0, h.PacketLength);
            Assert.InRange(h.TokenOffset + h.TokenLength, 0, h.PacketLength);
            if (h.HasPacketNumber) Assert.InRange(h.PacketNumberOffset, 1, h.PacketLength - 1);
            _ = h.GetDestinationConnectionId(bytes);
            _ = h.GetSourceConnectionId(bytes);
            _ = h.GetToken(bytes);
            if (h.Type == PacketType.VersionNegotiation)
            {
                VersionNegotiationPacket.TryReadVersions(bytes, h, new uint[4], out _);
            }
        }

        Assert.True(parsed > 1000);
    }

    [Fact]
    public void Parse_DoesNotAllocate()
    {
        byte[] datagram = WithPayload(ClientInitialHeaderV1, 18, 0x49e);
        byte[] shortPacket = Hex(ShortHeaderProtected);
        PacketHeaderParser.TryParse(datagram, 8, out _);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            PacketHeaderParser.TryParse(datagram, 8, out _);
            PacketHeaderParser.TryParse(shortPacket, 0, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
