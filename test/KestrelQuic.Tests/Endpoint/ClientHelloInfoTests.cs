using System.Buffers.Binary;
using System.Text;
using KestrelQuic.Endpoint;
using KestrelQuic.Frames;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Endpoint;

public sealed class ClientHelloInfoTests
{
    /// <summary>The ClientHello our client really sends, taken out of its first Initial packet.</summary>
    private static byte[] RealClientHello(Action<KestrelQuic.Configuration.QuicConfiguration>? configure = null)
    {
        using var client = new QuicEndpointCore(new EndpointSettings());
        EndpointConnection c = client.Connect(SimulationHelpers.ClientConfig(configure), EndpointPair.ServerAddress, EndpointPair.StartTime);
        (byte[] datagram, _) = EndpointPair.PollAll(client, EndpointPair.StartTime)[0];
        OpenedPacket initial = EndpointPackets.Open(datagram, c.Core.OriginalDestinationConnectionId, sentByServer: false)[0];
        OpenedFrame crypto = Assert.Single(initial.Frames!, f => f.Type == FrameType.Crypto);
        Assert.Equal(0UL, crypto.Offset);
        int length = 4 + (crypto.Data[1] << 16 | crypto.Data[2] << 8 | crypto.Data[3]);
        Assert.Equal(length, crypto.Data.Length);
        return crypto.Data;
    }

    private static byte[] Vector(int lengthBytes, byte[] content)
    {
        var v = new byte[lengthBytes + content.Length];
        if (lengthBytes == 1) v[0] = (byte)content.Length;
        else BinaryPrimitives.WriteUInt16BigEndian(v, (ushort)content.Length);
        content.CopyTo(v, lengthBytes);
        return v;
    }

    private static byte[] Extension(ushort type, byte[] body) => [(byte)(type >> 8), (byte)type, .. Vector(2, body)];

    private static byte[] Sni(params (byte Type, string Name)[] names)
        => Vector(2, names.SelectMany(n => (byte[])[n.Type, .. Vector(2, Encoding.ASCII.GetBytes(n.Name))]).ToArray());

    private static byte[] Alpn(params string[] protocols)
        => Vector(2, protocols.SelectMany(p => Vector(1, Encoding.ASCII.GetBytes(p))).ToArray());

    /// <summary>A minimal ClientHello handshake message with the given extensions (RFC 8446 §4.1.2).</summary>
    private static byte[] Hello(params byte[][] extensions)
    {
        byte[] body =
        [
            0x03, 0x03,
            .. new byte[32],
            .. Vector(1, []),
            .. Vector(2, [0x13, 0x01]),
            .. Vector(1, [0]),
            .. Vector(2, extensions.SelectMany(e => e).ToArray()),
        ];
        return [1, (byte)(body.Length >> 16), (byte)(body.Length >> 8), (byte)body.Length, .. body];
    }

    [Fact]
    public void RealClientHello_YieldsServerNameAndProtocols()
    {
        byte[] hello = RealClientHello(c => c.ApplicationProtocols = ["h3", SimulationHelpers.Alpn]);
        Assert.True(ClientHelloInfo.TryParse(hello, out ClientHelloInfo? info));
        Assert.Equal("localhost", info!.ServerName);
        Assert.Equal(["h3", SimulationHelpers.Alpn], info.ApplicationProtocols);
    }

    [Fact]
    public void TruncatedClientHello_IsRejectedAtEveryLength()
    {
        byte[] hello = RealClientHello();
        for (int length = 0; length < hello.Length; length++)
        {
            Assert.False(ClientHelloInfo.TryParse(hello.AsSpan(0, length), out ClientHelloInfo? info), $"length {length}");
            Assert.Null(info);

            // Also with the message header corrected to the cut length, so the inner vectors are what is truncated.
            if (length >= 4)
            {
                byte[] cut = hello.AsSpan(0, length).ToArray();
                cut[1] = (byte)((length - 4) >> 16);
                cut[2] = (byte)((length - 4) >> 8);
                cut[3] = (byte)(length - 4);
                Assert.False(ClientHelloInfo.TryParse(cut, out _), $"relabelled length {length}");
            }
        }

        Assert.False(ClientHelloInfo.TryParse([.. hello, 0], out _));
        Assert.True(ClientHelloInfo.TryParse(hello, out _));
    }

    [Fact]
    public void MutatedClientHello_NeverThrows()
    {
        byte[] hello = RealClientHello();
        var random = new Random(11);
        int parsed = 0;
        for (int i = 0; i < 5000; i++)
        {
            byte[] m = (byte[])hello.Clone();
            for (int k = random.Next(1, 4); k > 0; k--) m[random.Next(m.Length)] = (byte)random.Next(256);
            if (ClientHelloInfo.TryParse(m, out ClientHelloInfo? info))
            {
                parsed++;
                Assert.NotNull(info);
            }
        }

        // Most single-byte changes hit the random, key shares or other opaque fields and still parse.
        Assert.InRange(parsed, 1, 4999);
    }

    [Fact]
    public void SyntheticClientHellos_AreParsedByTheirExtensions()
    {
        Assert.True(ClientHelloInfo.TryParse(Hello(), out ClientHelloInfo? none));
        Assert.Null(none!.ServerName);
        Assert.Empty(none.ApplicationProtocols);

        Assert.True(ClientHelloInfo.TryParse(Hello(Extension(0, Sni((0, "example.com"), (0, "second.example"))), Extension(16, Alpn("a", "bb"))), out ClientHelloInfo? info));
        Assert.Equal("example.com", info!.ServerName);
        Assert.Equal(["a", "bb"], info.ApplicationProtocols);

        // Name types other than host_name (0) are skipped; unknown extensions are ignored.
        Assert.True(ClientHelloInfo.TryParse(Hello(Extension(0x1234, [1, 2, 3]), Extension(0, Sni((7, "odd"), (0, "host.example")))), out info));
        Assert.Equal("host.example", info!.ServerName);

        // An empty protocol name is invalid (RFC 7301 §3.1).
        Assert.False(ClientHelloInfo.TryParse(Hello(Extension(16, Alpn("ok", ""))), out _));
        // Inner lengths that overrun their extension.
        Assert.False(ClientHelloInfo.TryParse(Hello(Extension(16, [0, 9, 2, (byte)'h', (byte)'3'])), out _));
        Assert.False(ClientHelloInfo.TryParse(Hello(Extension(0, [0, 5, 0, 0, 9, (byte)'a'])), out _));
        // Not a ClientHello.
        byte[] serverHello = Hello();
        serverHello[0] = 2;
        Assert.False(ClientHelloInfo.TryParse(serverHello, out _));
    }
}
