using System.Buffers.Binary;
using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>A frame decoded from an opened Initial packet (spans copied out).</summary>
internal readonly record struct OpenedFrame(FrameType Type, ulong ErrorCode, ulong Offset, byte[] Data);

/// <summary>A packet of a datagram; <see cref="Frames"/> is null unless it is an Initial that decrypted.</summary>
internal sealed record OpenedPacket(PacketType Type, uint Version, byte[] Dcid, byte[] Scid, byte[] Token, List<OpenedFrame>? Frames);

/// <summary>Builds and opens raw datagrams for endpoint tests.</summary>
internal static class EndpointPackets
{
    public const int CidLength = 8;

    /// <summary>Splits a datagram into packets and opens the Initial ones with the keys derived from <paramref name="clientDcid"/>.</summary>
    public static List<OpenedPacket> Open(byte[] datagram, byte[] clientDcid, bool sentByServer)
    {
        var packets = new List<OpenedPacket>();
        int offset = 0;
        while (offset < datagram.Length)
        {
            byte[] rest = datagram.AsSpan(offset).ToArray();
            if (!PacketHeaderParser.TryParse(rest, CidLength, out PacketHeader h)) break;
            byte[] packet = rest.AsSpan(0, h.PacketLength).ToArray();
            List<OpenedFrame>? frames = h.Type == PacketType.Initial ? TryOpenInitial(packet, in h, clientDcid, sentByServer) : null;
            packets.Add(new OpenedPacket(
                h.Type,
                h.Version,
                packet.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength).ToArray(),
                h.IsLongHeader ? packet.AsSpan(h.SourceConnectionIdOffset, h.SourceConnectionIdLength).ToArray() : [],
                h.TokenLength > 0 ? packet.AsSpan(h.TokenOffset, h.TokenLength).ToArray() : [],
                frames));
            offset += h.PacketLength;
            if (!h.IsLongHeader) break;
        }

        return packets;
    }

    /// <summary>The first packet's header of a datagram.</summary>
    public static PacketHeader Header(byte[] datagram)
    {
        Assert.True(PacketHeaderParser.TryParse(datagram, CidLength, out PacketHeader h));
        return h;
    }

    public static bool IsLongHeader(byte[] datagram, PacketType type)
        => PacketHeaderParser.TryParse(datagram, CidLength, out PacketHeader h) && h.IsLongHeader && h.Type == type;

    /// <summary>A long-header datagram of <paramref name="length"/> bytes with an arbitrary version (the rest zero-padded).</summary>
    public static byte[] LongHeader(uint version, byte[] dcid, byte[] scid, int length, byte firstByte = 0xc3)
    {
        var d = new byte[length];
        d[0] = firstByte;
        BinaryPrimitives.WriteUInt32BigEndian(d.AsSpan(1), version);
        d[5] = (byte)dcid.Length;
        dcid.CopyTo(d, 6);
        d[6 + dcid.Length] = (byte)scid.Length;
        scid.CopyTo(d, 7 + dcid.Length);
        return d;
    }

    /// <summary>An Initial of <paramref name="length"/> bytes whose header parses (token and Length fields set) but whose payload is junk.</summary>
    public static byte[] FakeInitial(uint version, byte[] dcid, byte[] scid, int length, byte[]? token = null)
    {
        token ??= [];
        byte first = (byte)(0xc0 | (PacketTypeEncoding.GetLongHeaderTypeBits(PacketType.Initial, version) << 4) | 0x03);
        byte[] d = LongHeader(version, dcid, scid, length, first);
        int pos = 7 + dcid.Length + scid.Length;
        d[pos++] = (byte)(0x40 | (token.Length >> 8));
        d[pos++] = (byte)token.Length;
        token.CopyTo(d, pos);
        pos += token.Length;
        int remaining = length - pos - 2;
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(pos), (ushort)(0x4000 | remaining));
        new Random(length).NextBytes(d.AsSpan(pos + 2));
        return d;
    }

    /// <summary>A version 1 0-RTT packet of <paramref name="length"/> bytes to <paramref name="dcid"/> whose header parses but whose payload is junk.</summary>
    public static byte[] FakeZeroRtt(byte[] dcid, int length)
    {
        byte first = (byte)(0xc0 | (PacketTypeEncoding.GetLongHeaderTypeBits(PacketType.ZeroRtt, QuicVersion.Version1) << 4) | 0x03);
        byte[] d = LongHeader(QuicVersion.Version1, dcid, new byte[8], length, first);
        int pos = 7 + dcid.Length + 8;
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(pos), (ushort)(0x4000 | (length - pos - 2)));
        new Random(length).NextBytes(d.AsSpan(pos + 2));
        return d;
    }

    /// <summary>A protected client Initial (version 1) of 1200 bytes carrying one CRYPTO frame, then padding.</summary>
    public static byte[] ClientInitial(byte[] dcid, byte[] scid, long packetNumber, ulong cryptoOffset, ReadOnlySpan<byte> cryptoData)
    {
        const int datagramLength = 1200;
        const int pnLength = 2;
        var buffer = new byte[datagramLength];
        InitialSecrets.CreateKeys(QuicVersion.Version1, dcid, out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            int headerLength = PacketHeaderWriter.WriteLongHeader(buffer, PacketType.Initial, QuicVersion.Version1, dcid, scid, default, packetNumber, pnLength, out int lengthOffset, out int pnOffset);
            var w = new SpanWriter(buffer.AsSpan(headerLength, datagramLength - headerLength - PacketAead.TagLength));
            FrameWriter.WriteCrypto(ref w, cryptoOffset, cryptoData);
            FrameWriter.WritePadding(ref w, w.Remaining);
            int payload = w.Position;
            PacketHeaderWriter.SetLength(buffer, lengthOffset, pnLength + payload + PacketAead.TagLength);
            int length = PacketProtector.Protect(client, buffer, pnOffset, pnLength, payload, packetNumber);
            Assert.Equal(datagramLength, length);
            return buffer;
        }
    }

    /// <summary>A short-header datagram of <paramref name="length"/> bytes to <paramref name="dcid"/> with random-looking contents.</summary>
    public static byte[] ShortHeader(byte[] dcid, int length, int seed = 1)
    {
        var d = new byte[length];
        new Random(seed).NextBytes(d);
        d[0] = (byte)(0x40 | (d[0] & 0x3f));
        dcid.CopyTo(d, 1);
        return d;
    }

    private static List<OpenedFrame>? TryOpenInitial(byte[] packet, in PacketHeader h, byte[] clientDcid, bool sentByServer)
    {
        InitialSecrets.CreateKeys(h.Version, clientDcid, out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            PacketProtectionKeys keys = sentByServer ? server : client;
            if (!PacketProtector.TryRemoveHeaderProtection(keys.HeaderProtection, packet, h.PacketNumberOffset, -1, out long pn, out int pnLength)) return null;
            int headerLength = h.PacketNumberOffset + pnLength;
            if (!PacketProtector.TryDecryptPayload(keys.Aead, packet, headerLength, pn, out int payloadLength)) return null;
            var frames = new List<OpenedFrame>();
            var reader = new FrameReader(packet.AsSpan(headerLength, payloadLength), PacketType.Initial);
            while (reader.TryReadFrame(out Frame f, out _) == FrameReadStatus.Frame)
            {
                frames.Add(new OpenedFrame(f.Type, f.ErrorCode, f.Offset, f.Data.ToArray()));
            }

            return frames;
        }
    }
}
