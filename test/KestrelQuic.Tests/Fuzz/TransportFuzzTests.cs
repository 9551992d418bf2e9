using KestrelQuic.Connection;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Frames;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tests.Tls;
using KestrelQuic.Tls;
using Xunit.Abstractions;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>
/// Mutation fuzzing of the transport's parsers of peer input (see <see cref="FuzzRunner"/> for budget, seeds and crash
/// files): packet headers, transport parameters, TLS handshake messages, and frames processed by a live connection.
/// </summary>
public sealed class TransportFuzzTests(ITestOutputHelper output)
{
    private const int ShortHeaderDcidLength = 8;

    // What a connection may close with when a peer sends it arbitrary frames in a valid 1-RTT packet.
    private static readonly HashSet<ulong> s_frameErrorCodes =
    [
        (ulong)TransportErrorCode.FlowControlError,
        (ulong)TransportErrorCode.StreamLimitError,
        (ulong)TransportErrorCode.StreamStateError,
        (ulong)TransportErrorCode.FinalSizeError,
        (ulong)TransportErrorCode.FrameEncodingError,
        (ulong)TransportErrorCode.ConnectionIdLimitError,
        (ulong)TransportErrorCode.ProtocolViolation,
        (ulong)TransportErrorCode.CryptoBufferExceeded,
    ];

    [Fact]
    public void PacketHeaders() => FuzzRunner.Run(
        new FuzzTarget
        {
            Name = "packet-header",
            Seeds = FuzzCorpus.Datagrams,
            MaxLength = 1500,
            MaxAllocatedBytesPerInput = 64 * 1024, // the parser allocates nothing; this covers labels and first-call caches
            Execute = ParseDatagram,
        },
        output,
        minimumMutations: 20_000);

    private static string ParseDatagram(byte[] datagram)
    {
        // Walk coalesced packets (RFC 9000 §12.2) like the receive path does.
        int offset = 0;
        int packets = 0;
        string first = "malformed";
        Span<uint> versions = stackalloc uint[64];
        while (offset < datagram.Length)
        {
            ReadOnlySpan<byte> rest = datagram.AsSpan(offset);
            if (!PacketHeaderParser.TryParse(rest, ShortHeaderDcidLength, out PacketHeader h))
            {
                return packets == 0 ? first : Label(first, packets, "+malformed");
            }

            if (packets++ == 0)
            {
                first = h.IsSupportedVersion || h.Type == PacketType.VersionNegotiation ? h.Type.ToString() : "unsupported-version";
            }

            Assert.InRange(h.PacketLength, 1, rest.Length);
            Assert.InRange(h.DestinationConnectionIdOffset + h.DestinationConnectionIdLength, 0, h.PacketLength);
            if (h.IsLongHeader)
            {
                Assert.InRange(h.SourceConnectionIdOffset + h.SourceConnectionIdLength, 0, h.PacketLength);
            }

            if (h.Type == PacketType.VersionNegotiation)
            {
                // Never throws; a version list that is not a multiple of 4 bytes is malformed.
                VersionNegotiationPacket.TryReadVersions(rest, h, versions, out int count);
                Assert.InRange(count, 0, versions.Length);
                break;
            }

            if (!h.IsSupportedVersion)
            {
                break;
            }

            if (h.Type == PacketType.Retry)
            {
                Assert.Equal(rest.Length, h.TokenOffset + h.TokenLength + PacketHeaderParser.RetryIntegrityTagLength);
                break;
            }

            if (h.Type == PacketType.Initial)
            {
                Assert.InRange(h.TokenOffset + h.TokenLength, 0, h.LengthFieldOffset);
            }

            Assert.InRange(h.PacketNumberOffset, 1, h.PacketLength - 1);
            if (!h.IsLongHeader)
            {
                break; // a short header packet extends to the end of the datagram
            }

            offset += h.PacketLength;
        }

        return Label(first, packets, "");
    }

    private static string Label(string first, int packets, string suffix) => packets switch
    {
        1 when suffix.Length == 0 => first,
        1 => first + suffix,
        _ => first + "+coalesced" + suffix,
    };

    [Fact]
    public void TransportParametersCodec() => FuzzRunner.Run(
        new FuzzTarget
        {
            Name = "transport-parameters",
            Seeds = FuzzCorpus.TransportParameters,
            MaxLength = 2048,
            MaxAllocatedBytesPerInput = 256 * 1024,
            Execute = DecodeTransportParameters,
        },
        output,
        minimumMutations: 20_000);

    private static string DecodeTransportParameters(byte[] input)
    {
        if (input.Length == 0)
        {
            return "empty";
        }

        bool sentByServer = (input[0] & 1) != 0;
        if (!TransportParameters.TryDecode(input.AsSpan(1), sentByServer, out TransportParameters? decoded, out TransportError error))
        {
            Assert.Equal(TransportErrorCode.TransportParameterError, error.Code);
            return "error";
        }

        // What we accepted re-encodes into something we accept again with the same values.
        byte[] encoded = decoded.Encode();
        Assert.True(TransportParameters.TryDecode(encoded, sentByServer, out TransportParameters? again, out error), error.ToString());
        Assert.Equal(encoded, again.Encode());
        return "ok";
    }

    [Fact]
    public void TlsHandshakeMessages() => FuzzRunner.Run(
        new FuzzTarget
        {
            Name = "tls-messages",
            Seeds = FuzzCorpus.TlsMessages,
            MaxLength = 8192,
            Execute = RunHandshakeWithMutatedMessage,
        },
        output,
        minimumMutations: 300);

    /// <summary>Input: [0 client / 1 server] [index of the message among that side's writes] [replacement bytes].</summary>
    private static string RunHandshakeWithMutatedMessage(byte[] input)
    {
        if (input.Length < 3)
        {
            return "too-short";
        }

        bool fromClient = (input[0] & 1) == 0;
        int index = input[1];
        byte[] replacement = input[2..];
        if (fromClient && replacement[0] == (byte)HandshakeType.ClientHello)
        {
            // The server's pre-handshake peek at the ClientHello (SNI/ALPN for configuration callbacks) must not throw either.
            ClientHelloInfo.TryParse(replacement, out _);
        }

        int seen = 0;
        using var pair = new TlsPair(Tls.TestCertificates.ClientOptions(), Tls.TestCertificates.ServerOptions())
        {
            Transform = (c, _, data) => c == fromClient && seen++ == index ? replacement : data,
        };
        pair.Start();
        pair.Pump();
        TlsAlert? alert = pair.ClientAlert ?? pair.ServerAlert;
        if (alert is null)
        {
            return pair.Client.IsHandshakeComplete && pair.Server.IsHandshakeComplete ? "completed" : "stalled";
        }

        // A peer's bytes never make us fail internally; the one documented exception is a message over the size limit,
        // which the connection turns into CRYPTO_BUFFER_EXCEEDED (RFC 9000 §7.5).
        bool tooLarge = pair.Client.HandshakeMessageTooLarge || pair.Server.HandshakeMessageTooLarge;
        Assert.True(
            alert != TlsAlert.InternalError || tooLarge,
            $"internal_error: {pair.Client.FailureReason ?? pair.Server.FailureReason}");
        return tooLarge ? "message-too-large" : "alert:" + alert;
    }

    // What a server may close with when a client's ClientHello (and the transport parameters in it) is bad.
    private static readonly HashSet<ulong> s_clientHelloErrorCodes =
    [
        (ulong)TransportErrorCode.TransportParameterError,
        (ulong)TransportErrorCode.ProtocolViolation,
        (ulong)TransportErrorCode.CryptoBufferExceeded,
        (ulong)TransportErrorCode.VersionNegotiationError,
    ];

    [Fact]
    public void ClientHelloInInitialReceivedByServerConnection()
    {
        // Our client's first Initial from a simulated connection, and ngtcp2's.
        List<byte[]> seeds = [InitialPackets.ExtractClientHello(FuzzCorpus.Datagrams[0])];
        foreach (string file in Directory.GetFiles(FuzzRunner.CorpusDirectory("packet-header"), "ngtcp2-client-0.bin"))
        {
            seeds.Add(InitialPackets.ExtractClientHello(File.ReadAllBytes(file)));
        }

        var config = SimulationHelpers.ServerConfig(c => c.ApplicationProtocols.Add("h3"));
        byte[] buffer = new byte[65536];
        FuzzRunner.Run(
            new FuzzTarget
            {
                Name = "client-hello",
                Seeds = seeds,
                MaxLength = 1100, // one Initial
                Execute = clientHello =>
                {
                    // The SCID must match the initial_source_connection_id parameter, or every input fails that check.
                    byte[] scid = [0x5c, 0x1d];
                    if (InitialPackets.FindExtension(clientHello, 0x39) is { } tp &&
                        TransportParameters.TryDecode(tp, sentByServer: false, out TransportParameters? p, out _) &&
                        p.InitialSourceConnectionId is { Length: <= 20 } iscid)
                    {
                        scid = iscid;
                    }

                    byte[] dcid = [1, 2, 3, 4, 5, 6, 7, 8];
                    long now = SimulationClock.Epoch + TimeSpan.FromSeconds(1).Ticks;
                    using QuicConnectionCore server = QuicConnectionCore.CreateServer(config, QuicVersion.Version1, dcid, scid, SimulatedNetwork.ClientAddress, now);
                    server.ReceiveDatagram(InitialPackets.Build(QuicVersion.Version1, dcid, scid, clientHello), SimulatedNetwork.ClientAddress, now);
                    long sent = 0;
                    int n;
                    while ((n = server.PollDatagram(buffer, now, out _)) > 0)
                    {
                        sent += n;
                    }

                    // Anti-amplification holds whatever the ClientHello says (RFC 9000 §8.1).
                    Assert.InRange(sent, 0, 3 * 1200);
                    if (server.CloseReason is not { } reason)
                    {
                        return server.Tls.NegotiatedCipherSuite is not null ? "server flight sent" : "waiting";
                    }

                    Assert.False(reason.IsApplicationError, reason.ToString());
                    Assert.True(
                        s_clientHelloErrorCodes.Contains(reason.ErrorCode) || reason.ErrorCode is > 0x100 and <= 0x1ff && reason.ErrorCode != 0x100 + (ulong)TlsAlert.InternalError,
                        $"illegal close code for a bad ClientHello: {reason}");
                    return "closed:" + (reason.ErrorCode >= 0x100 ? "CRYPTO_ERROR " + (TlsAlert)(reason.ErrorCode - 0x100) : ((TransportErrorCode)reason.ErrorCode).ToString());
                },
            },
            output);
    }

    [Fact]
    public void FramesReceivedByServer() => FuzzRunner.Run(FrameTarget("frames-to-server", toServer: true), output);

    [Fact]
    public void FramesReceivedByClient() => FuzzRunner.Run(FrameTarget("frames-to-client", toServer: false), output);

    /// <summary>
    /// Frame payloads go into real, correctly protected 1-RTT packets of an established connection (the sender's
    /// packet is built from the raw bytes), so they reach the receiver's frame decoders after decryption. The
    /// connection is reused until one side closes. Invariants: no exception, and the receiver either keeps going or
    /// closes with a transport error code legal for bad frames.
    /// </summary>
    private static FuzzTarget FrameTarget(string name, bool toServer)
    {
        SimulatedNetwork? net = null;
        int uses = 0;
        List<byte[]> seeds = FrameSamples.All().Select(s => s.Bytes).ToList();
        seeds.AddRange(MalformedFrameTests.ValidFrames.Select(row => Convert.FromHexString((string)row[1])));

        // A few multi-frame payloads (several STREAM frames, ACK + data) give splice and duplication material.
        seeds.Add([.. seeds[0], .. seeds[^1], .. seeds[seeds.Count / 2]]);
        return new FuzzTarget
        {
            Name = name,
            Seeds = seeds,
            MaxLength = 1000, // one 1-RTT packet
            Execute = input =>
            {
                if (net is null || net.Client.CloseReason is not null || net.Server?.CloseReason is not null || uses >= 64)
                {
                    net?.Dispose();
                    net = new SimulatedNetwork(
                        SimulationHelpers.ClientConfig(c => c.MaxDatagramFrameSize = 1200),
                        SimulationHelpers.ServerConfig(c => c.MaxDatagramFrameSize = 1200));
                    Assert.True(net.RunUntilHandshakeComplete());
                    uses = 0;
                }

                uses++;
                QuicConnectionCore sender = toServer ? net.Client : net.Server!;
                QuicConnectionCore receiver = toServer ? net.Server! : net.Client;

                // Leading PADDING gives header protection its sample even for 1-byte inputs.
                sender.InjectRawFrames([0, 0, 0, .. input]);
                sender.Ping();
                net.RunUntil(() => receiver.CloseReason is not null, TimeSpan.FromMilliseconds(200));
                if (receiver.CloseReason is not { } reason)
                {
                    return "accepted";
                }

                if (reason.ClosedByPeer)
                {
                    return "sender closed"; // a CONNECTION_CLOSE made up by the mutation, or the sender objected to a reply
                }

                Assert.False(reason.IsApplicationError, reason.ToString());
                bool legal = s_frameErrorCodes.Contains(reason.ErrorCode) || reason.ErrorCode is >= 0x100 and <= 0x1ff;
                Assert.True(legal, $"illegal close code for bad frames: {reason}");
                return "closed:" + (reason.ErrorCode >= 0x100 ? "CRYPTO_ERROR" : ((TransportErrorCode)reason.ErrorCode).ToString());
            },
        };
    }
}
