using KestrelQuic.Frames;
using KestrelQuic.PacketProtection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>Client Initial packets built and opened with the real initial keys (RFC 9001 §5.2), for fuzzing the server's handshake.</summary>
internal static class InitialPackets
{
    /// <summary>Decrypts a client's first Initial and reassembles its CRYPTO data (the ClientHello).</summary>
    public static byte[] ExtractClientHello(byte[] datagram)
    {
        datagram = (byte[])datagram.Clone();
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h));
        Assert.Equal(PacketType.Initial, h.Type);
        InitialSecrets.CreateKeys(h.Version, datagram.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            Span<byte> packet = datagram.AsSpan(0, h.PacketLength);
            Assert.True(PacketProtector.TryRemoveHeaderProtection(client.HeaderProtection, packet, h.PacketNumberOffset, -1, out long pn, out int pnLength));
            Assert.True(PacketProtector.TryDecryptPayload(client.Aead, packet, h.PacketNumberOffset + pnLength, pn, out int payloadLength));

            // Reassemble the CRYPTO stream (a ClientHello may be split into several frames, in any order).
            var crypto = new SortedDictionary<ulong, byte[]>();
            var reader = new FrameReader(packet.Slice(h.PacketNumberOffset + pnLength, payloadLength), PacketType.Initial);
            while (reader.TryReadFrame(out Frame frame, out _) == FrameReadStatus.Frame)
            {
                if (frame.Type == FrameType.Crypto)
                {
                    crypto[frame.Offset] = frame.Data.ToArray();
                }
            }

            var stream = new List<byte>();
            foreach ((ulong offset, byte[] data) in crypto)
            {
                Assert.Equal((ulong)stream.Count, offset);
                stream.AddRange(data);
            }

            return stream.ToArray();
        }
    }

    /// <summary>The body of a ClientHello extension, or null (also for a malformed message).</summary>
    public static byte[]? FindExtension(byte[] clientHello, ushort type)
    {
        // Handshake header (4), legacy_version (2), random (32), then the variable-length fields.
        int pos = 4 + 2 + 32;
        if (!Skip(clientHello, ref pos, 1) || !Skip(clientHello, ref pos, 2) || !Skip(clientHello, ref pos, 1) || pos + 2 > clientHello.Length)
        {
            return null;
        }

        int end = Math.Min(clientHello.Length, pos + 2 + ((clientHello[pos] << 8) | clientHello[pos + 1]));
        pos += 2;
        while (pos + 4 <= end)
        {
            int extensionType = (clientHello[pos] << 8) | clientHello[pos + 1];
            int length = (clientHello[pos + 2] << 8) | clientHello[pos + 3];
            if (pos + 4 + length > end)
            {
                return null;
            }

            if (extensionType == type)
            {
                return clientHello.AsSpan(pos + 4, length).ToArray();
            }

            pos += 4 + length;
        }

        return null;
    }

    private static bool Skip(byte[] data, ref int pos, int lengthBytes)
    {
        if (pos + lengthBytes > data.Length)
        {
            return false;
        }

        int length = lengthBytes == 1 ? data[pos] : (data[pos] << 8) | data[pos + 1];
        pos += lengthBytes + length;
        return pos <= data.Length;
    }

    /// <summary>A protected client Initial (packet number 0) carrying <paramref name="cryptoData"/> at offset 0, padded to 1200 bytes.</summary>
    public static byte[] Build(uint version, byte[] dcid, byte[] scid, ReadOnlySpan<byte> cryptoData)
    {
        const int PacketNumberLength = 2;
        int cryptoFrameLength = 1 + 1 + 2 + cryptoData.Length; // type, offset 0, 2-byte length, data
        int headerLength = 1 + 4 + 1 + dcid.Length + 1 + scid.Length + 1 + 2;
        int payloadLength = Math.Max(cryptoFrameLength, 1200 - headerLength - PacketNumberLength - PacketAead.TagLength);
        byte[] packet = new byte[headerLength + PacketNumberLength + payloadLength + PacketAead.TagLength];
        int pos = 0;
        packet[pos++] = (byte)(0xc0 | (PacketTypeEncoding.GetLongHeaderTypeBits(PacketType.Initial, version) << 4) | (PacketNumberLength - 1));
        packet[pos++] = (byte)(version >> 24);
        packet[pos++] = (byte)(version >> 16);
        packet[pos++] = (byte)(version >> 8);
        packet[pos++] = (byte)version;
        packet[pos++] = (byte)dcid.Length;
        dcid.CopyTo(packet, pos);
        pos += dcid.Length;
        packet[pos++] = (byte)scid.Length;
        scid.CopyTo(packet, pos);
        pos += scid.Length;
        packet[pos++] = 0; // no token
        int length = PacketNumberLength + payloadLength + PacketAead.TagLength;
        packet[pos++] = (byte)(0x40 | (length >> 8));
        packet[pos++] = (byte)length;
        int packetNumberOffset = pos;
        pos += PacketNumberLength; // packet number 0
        packet[pos++] = 0x06;
        packet[pos++] = 0x00;
        packet[pos++] = (byte)(0x40 | (cryptoData.Length >> 8));
        packet[pos++] = (byte)cryptoData.Length;
        cryptoData.CopyTo(packet.AsSpan(pos)); // PADDING (zeros) follows

        InitialSecrets.CreateKeys(version, dcid, out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            int protectedLength = PacketProtector.Protect(client, packet, packetNumberOffset, PacketNumberLength, payloadLength, 0);
            Assert.Equal(packet.Length, protectedLength);
        }

        return packet;
    }
}
