using KestrelQuic.Connection;
using KestrelQuic.Packets;
using KestrelQuic.Protocol;
using KestrelQuic.Tests.Simulation;
using KestrelQuic.Tests.Tls;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Fuzz;

/// <summary>
/// Valid inputs captured live from our own stack (a simulated connection and a TLS handshake), used as seeds next to
/// the committed corpus files (which also hold inputs captured from ngtcp2 and regression cases).
/// KESTRELQUIC_FUZZ_EXPORT_CORPUS writes them as files (see FuzzRunner).
/// </summary>
internal static class FuzzCorpus
{
    private static readonly Lazy<Captured> s_captured = new(Capture);

    /// <summary>Whole UDP datagrams of both directions: coalesced Initial/Handshake, 1-RTT, plus a Version Negotiation and a Retry packet.</summary>
    public static IReadOnlyList<byte[]> Datagrams => s_captured.Value.Datagrams;

    /// <summary>[0 = from client, 1 = from server] + [index of the message among those the side sent] + the message (one CRYPTO write).</summary>
    public static IReadOnlyList<byte[]> TlsMessages => s_captured.Value.TlsMessages;

    /// <summary>[1 if sent by the server else 0] + an encoded quic_transport_parameters extension.</summary>
    public static IReadOnlyList<byte[]> TransportParameters => s_captured.Value.TransportParameters;

    private sealed record Captured(List<byte[]> Datagrams, List<byte[]> TlsMessages, List<byte[]> TransportParameters);

    private static Captured Capture()
    {
        var datagrams = new List<byte[]>();
        var parameters = new List<byte[]>();
        using (var net = new SimulatedNetwork(
            SimulationHelpers.ClientConfig(c => c.MaxDatagramFrameSize = 1200),
            SimulationHelpers.ServerConfig(c => c.MaxDatagramFrameSize = 1200)))
        {
            var pump = new StreamPump(net);
            net.Filter = (_, d) =>
            {
                if (datagrams.Count < 40)
                {
                    datagrams.Add((byte[])d.Clone());
                }

                return true;
            };
            Assert.True(net.RunUntilHandshakeComplete());
            Assert.True(net.Client.TryOpenStream(true, out ulong id));
            pump.Send(net.Client, id, SimulationHelpers.Payload(3000, 5));
            Assert.True(net.RunUntil(() => pump.Finished.Contains((net.Server!, id)), TimeSpan.FromSeconds(5)));
            parameters.Add([0, .. net.Client.LocalTransportParameters.Encode()]);
            parameters.Add([1, .. net.Server!.LocalTransportParameters.Encode()]);
        }

        byte[] dcid = [1, 2, 3, 4, 5, 6, 7, 8];
        byte[] scid = [9, 10, 11, 12];
        byte[] vn = new byte[VersionNegotiationPacket.GetLength(dcid.Length, scid.Length, 3)];
        VersionNegotiationPacket.Write(vn, dcid, scid, [QuicVersion.Version1, QuicVersion.Version2, 0x1a2a3a4a], 0x35);
        datagrams.Add(vn);

        // Retry (RFC 9000 §17.2.5): header, token, integrity tag (not checked by the header parser).
        datagrams.Add([0xf0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 8, .. dcid, .. "retry-token"u8, .. new byte[16]]);

        var messages = new List<byte[]>();
        using (var pair = TlsPair.Run(Tls.TestCertificates.ClientOptions(), Tls.TestCertificates.ServerOptions()))
        {
            pair.AssertSucceeded();
            for (int i = 0; i < pair.ClientHost.Sent.Count; i++)
            {
                messages.Add([0, (byte)i, .. pair.ClientHost.Sent[i].Data]);
            }

            for (int i = 0; i < pair.ServerHost.Sent.Count; i++)
            {
                messages.Add([1, (byte)i, .. pair.ServerHost.Sent[i].Data]);
            }
        }

        var captured = new Captured(datagrams, messages, parameters);
        return captured;
    }

    public static void Export(string dir, IEnumerable<byte[]> inputs, string prefix = "sim") => FuzzRunner.Export(dir, inputs, prefix);
}
