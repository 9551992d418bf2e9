using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.PacketProtection;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>
/// The corpus holds first flights captured from ngtcp2's gtlsclient (GnuTLS) on a real socket
/// (Fuzz/Corpus/packet-header/ngtcp2-client-*.bin). Their ClientHello and transport parameters are also corpus entries
/// of the TLS and transport-parameter targets; this test checks that those files are what the capture produced, so a
/// foreign implementation's encodings stay in the fuzz seeds.
/// </summary>
public sealed class ForeignCorpusTests
{
    [Fact]
    public void NgtcpInitials_DecryptToClientHelloAndTransportParameters_InTheCorpus()
    {
        string[] files = Directory.GetFiles(FuzzRunner.CorpusDirectory("packet-header"), "ngtcp2-client-*.bin");
        Assert.NotEmpty(files);
        List<byte[]> tlsCorpus = FuzzRunner.LoadCorpus("tls-messages");
        List<byte[]> parameterCorpus = FuzzRunner.LoadCorpus("transport-parameters");
        foreach (string file in files)
        {
            byte[] clientHello = ExtractClientHello(File.ReadAllBytes(file));
            Assert.True(ClientHelloInfo.TryParse(clientHello, out ClientHelloInfo? info), file);
            Assert.Equal("localhost", info!.ServerName);

            // The raw quic_transport_parameters extension (0x39), found by its encoding in the extensions block.
            byte[] parameters = FindExtension(clientHello, 0x39);
            Assert.True(TransportParameters.TryDecode(parameters, sentByServer: false, out _, out TransportError error), error.ToString());

            byte[] tlsEntry = [0, 0, .. clientHello];
            byte[] parameterEntry = [0, .. parameters];
            if (Environment.GetEnvironmentVariable("KESTRELQUIC_FUZZ_EXPORT_CORPUS") is { Length: > 0 } dir)
            {
                FuzzCorpus.Export(Path.Combine(dir, "tls-messages"), [tlsEntry], "ngtcp2");
                FuzzCorpus.Export(Path.Combine(dir, "transport-parameters"), [parameterEntry], "ngtcp2");
            }

            Assert.Contains(tlsCorpus, c => c.AsSpan().SequenceEqual(tlsEntry));
            Assert.Contains(parameterCorpus, c => c.AsSpan().SequenceEqual(parameterEntry));
        }
    }

    private static byte[] ExtractClientHello(byte[] datagram)
    {
        Assert.True(PacketHeaderParser.TryParse(datagram, 8, out PacketHeader h));
        Assert.Equal(PacketType.Initial, h.Type);
        InitialSecrets.CreateKeys(h.Version, datagram.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength), out PacketProtectionKeys client, out PacketProtectionKeys server);
        using (client)
        using (server)
        {
            Span<byte> packet = datagram.AsSpan(0, h.PacketLength);
            Assert.True(PacketProtector.TryRemoveHeaderProtection(client.HeaderProtection, packet, h.PacketNumberOffset, -1, out long pn, out int pnLength));
            Assert.True(PacketProtector.TryDecryptPayload(client.Aead, packet, h.PacketNumberOffset + pnLength, pn, out int payloadLength));

            // Reassemble the CRYPTO stream (ngtcp2 may split the ClientHello into several frames, in any order).
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

    private static byte[] FindExtension(byte[] clientHello, ushort type)
    {
        // Handshake header (4), legacy_version (2), random (32), then the variable-length fields.
        int pos = 4 + 2 + 32;
        pos += 1 + clientHello[pos];
        pos += 2 + ((clientHello[pos] << 8) | clientHello[pos + 1]);
        pos += 1 + clientHello[pos];
        int end = pos + 2 + ((clientHello[pos] << 8) | clientHello[pos + 1]);
        pos += 2;
        while (pos < end)
        {
            int extensionType = (clientHello[pos] << 8) | clientHello[pos + 1];
            int length = (clientHello[pos + 2] << 8) | clientHello[pos + 3];
            if (extensionType == type)
            {
                return clientHello.AsSpan(pos + 4, length).ToArray();
            }

            pos += 4 + length;
        }

        throw new InvalidOperationException($"extension {type} not found");
    }
}
