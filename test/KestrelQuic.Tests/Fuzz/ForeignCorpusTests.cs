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
            byte[] clientHello = InitialPackets.ExtractClientHello(File.ReadAllBytes(file));
            Assert.True(ClientHelloInfo.TryParse(clientHello, out ClientHelloInfo? info), file);
            Assert.Equal("localhost", info!.ServerName);

            // The raw quic_transport_parameters extension (0x39), found by its encoding in the extensions block.
            byte[] parameters = InitialPackets.FindExtension(clientHello, 0x39)!;
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
}
