using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Tls;

public class TlsMalformedInputTests
{
    /// <summary>Runs a handshake where one message (by sender and type) is rewritten.</summary>
    private static TlsPair RunWith(bool fromClient, byte messageType, Func<byte[], byte[]> rewrite, Action<TlsOptions>? client = null, Action<TlsOptions>? server = null)
    {
        bool done = false;
        return TlsPair.Run(
            TestCertificates.ClientOptions(client),
            TestCertificates.ServerOptions(server),
            transform: (c, _, data) =>
            {
                if (!done && c == fromClient && data[0] == messageType)
                {
                    done = true;
                    return rewrite(data);
                }

                return data;
            });
    }

    /// <summary>Cuts the body to <paramref name="bodyLength"/> bytes and fixes the handshake header length.</summary>
    private static byte[] Truncate(byte[] message, int bodyLength)
    {
        byte[] result = message.AsSpan(0, 4 + bodyLength).ToArray();
        result[1] = (byte)(bodyLength >> 16);
        result[2] = (byte)(bodyLength >> 8);
        result[3] = (byte)bodyLength;
        return result;
    }

    private static void AssertCleanAlert(TlsPair pair)
    {
        TlsAlert? alert = pair.ClientAlert ?? pair.ServerAlert;
        Assert.NotNull(alert);
        Assert.True(alert != TlsAlert.InternalError, $"internal error: {pair.Client.FailureReason ?? pair.Server.FailureReason}");
    }

    [Theory]
    [InlineData(true, 1)] // ClientHello
    [InlineData(false, 2)] // ServerHello
    [InlineData(false, 8)] // EncryptedExtensions
    [InlineData(false, 11)] // Certificate
    [InlineData(false, 15)] // CertificateVerify
    [InlineData(false, 20)] // server Finished
    [InlineData(true, 20)] // client Finished
    public void EveryTruncation_ProducesAlert(bool fromClient, byte messageType)
    {
        int bodyLength;
        using (TlsPair reference = RunWith(fromClient, messageType, m => m))
        {
            reference.AssertSucceeded();
            byte[] message = (fromClient ? reference.ClientHost : reference.ServerHost).Sent.First(s => s.Data[0] == messageType).Data;
            bodyLength = message.Length - 4;
        }

        for (int length = 0; length < bodyLength; length++)
        {
            int l = length;
            using TlsPair pair = RunWith(fromClient, messageType, m => Truncate(m, Math.Min(l, m.Length - 5))); // ECDSA signatures vary in length
            Assert.True(pair.ClientAlert is not null || pair.ServerAlert is not null, $"{messageType} truncated to {l}: no alert; client complete {pair.Client.IsHandshakeComplete}");
            AssertCleanAlert(pair);
            TlsAlert alert = (pair.ClientAlert ?? pair.ServerAlert)!.Value;

            // Structural truncation is decode_error; a shorter Finished, or a truncated signature / certificate that still parses, fails its check.
            Assert.True(
                alert is TlsAlert.DecodeError or TlsAlert.ProtocolVersion or TlsAlert.DecryptError or TlsAlert.BadCertificate or TlsAlert.IllegalParameter,
                $"{messageType} truncated to {l}: {alert} {pair.Client.FailureReason ?? pair.Server.FailureReason}");
        }
    }

    [Fact]
    public void RandomMutations_NeverThrow_AlwaysAlertOrStall()
    {
        var random = new Random(9001);
        byte[] targets = [1, 2, 8, 11, 15, 20];
        for (int iteration = 0; iteration < 300; iteration++)
        {
            byte type = targets[random.Next(targets.Length)];
            bool fromClient = type == 1 || (type == 20 && random.Next(2) == 0);
            int flips = 1 + random.Next(3);
            int seed = random.Next();
            using TlsPair pair = RunWith(fromClient, type, m =>
            {
                var r = new Random(seed);
                byte[] copy = (byte[])m.Clone();
                for (int i = 0; i < flips; i++)
                {
                    copy[r.Next(copy.Length)] ^= (byte)(1 + r.Next(255));
                }

                return copy;
            });

            TlsAlert? alert = pair.ClientAlert ?? pair.ServerAlert;
            if (alert == TlsAlert.InternalError)
            {
                Assert.True(pair.Client.HandshakeMessageTooLarge || pair.Server.HandshakeMessageTooLarge, pair.Client.FailureReason ?? pair.Server.FailureReason);
            }

            // A mutated transcript can never yield two completed endpoints.
            Assert.False(pair.Client.IsHandshakeComplete && pair.Server.IsHandshakeComplete && alert is null, $"iteration {iteration} type {type}");
        }
    }

    [Fact]
    public void RandomGarbage_ToFreshEndpoints_NeverThrows()
    {
        var random = new Random(42);
        for (int i = 0; i < 500; i++)
        {
            byte[] garbage = new byte[random.Next(1, 200)];
            bool frame = garbage.Length >= 4 && random.Next(2) == 0;
            random.NextBytes(garbage);
            if (frame)
            {
                garbage[0] = (byte)random.Next(1, 25);
                garbage[1] = 0;
                garbage[2] = 0;
                garbage[3] = (byte)(garbage.Length - 4);
            }

            using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
            pair.Start();
            _ = pair.Server.ProcessCryptoData((EncryptionLevel)random.Next(4), garbage);
            _ = pair.Client.ProcessCryptoData((EncryptionLevel)random.Next(4), garbage);
        }
    }

    private static byte[] Replace(byte[] data, byte[] find, byte[] replacement)
    {
        int index = data.AsSpan().IndexOf(find);
        Assert.True(index >= 0);
        byte[] copy = (byte[])data.Clone();
        replacement.CopyTo(copy, index);
        return copy;
    }

    // quic_transport_parameters (0x0039) with the client's 3-byte value 01 02 03 / the server's 2-byte 0a 0b.
    private static readonly byte[] s_clientTpExtension = [0x00, 0x39, 0x00, 0x03, 0x01, 0x02, 0x03];
    private static readonly byte[] s_serverTpExtension = [0x00, 0x39, 0x00, 0x02, 0x0a, 0x0b];

    [Fact]
    public void ClientHello_MissingTransportParameters_MissingExtension()
    {
        using TlsPair pair = RunWith(true, 1, m => Replace(m, s_clientTpExtension, [0x7a, 0x7a]));
        Assert.Equal(TlsAlert.MissingExtension, pair.ServerAlert);
        Assert.Equal(0x6d, (int)pair.ServerAlert!.Value);
    }

    [Fact]
    public void ClientHello_DuplicateExtension_IllegalParameter()
    {
        // Rename psk_key_exchange_modes (0x002d) into a second quic_transport_parameters.
        using TlsPair pair = RunWith(true, 1, m => Replace(m, [0x00, 0x2d, 0x00, 0x02, 0x01, 0x01], [0x00, 0x39]));
        Assert.Equal(TlsAlert.IllegalParameter, pair.ServerAlert);
    }

    /// <summary>Rebuilds an EncryptedExtensions message without the extensions of the given type.</summary>
    private static byte[] RemoveExtension(byte[] message, ushort type)
    {
        var kept = new List<byte>();
        int offset = 6;
        while (offset < message.Length)
        {
            int t = (message[offset] << 8) | message[offset + 1];
            int length = (message[offset + 2] << 8) | message[offset + 3];
            if (t != type)
            {
                kept.AddRange(message.AsSpan(offset, 4 + length).ToArray());
            }

            offset += 4 + length;
        }

        int body = kept.Count + 2;
        return [message[0], (byte)(body >> 16), (byte)(body >> 8), (byte)body, (byte)(kept.Count >> 8), (byte)kept.Count, .. kept];
    }

    [Fact]
    public void EncryptedExtensions_MissingTransportParameters_MissingExtension()
    {
        using TlsPair pair = RunWith(false, 8, m => RemoveExtension(m, 0x39));
        Assert.Equal(TlsAlert.MissingExtension, pair.ClientAlert);
        using TlsPair pair2 = RunWith(false, 8, m => RemoveExtension(m, 0x10));
        Assert.Equal(TlsAlert.NoApplicationProtocol, pair2.ClientAlert);
    }

    [Fact]
    public void EncryptedExtensions_DuplicateTransportParameters_IllegalParameter()
    {
        // Turn the ALPN extension (0x0010, "h3") into a second quic_transport_parameters.
        using TlsPair pair = RunWith(false, 8, m => Replace(m, [0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, 0x68, 0x33], [0x00, 0x39]));
        Assert.Equal(TlsAlert.IllegalParameter, pair.ClientAlert);
    }

    [Fact]
    public void EncryptedExtensions_UnsolicitedExtension_UnsupportedExtension()
    {
        using TlsPair pair = RunWith(false, 8, m => Replace(m, s_serverTpExtension, [0x7a, 0x7a]));
        Assert.Equal(TlsAlert.UnsupportedExtension, pair.ClientAlert);

        // key_share is recognised but not allowed in EncryptedExtensions.
        using TlsPair pair2 = RunWith(false, 8, m => Replace(m, s_serverTpExtension, [0x00, 0x33]));
        Assert.Equal(TlsAlert.IllegalParameter, pair2.ClientAlert);
    }

    [Fact]
    public void ServerHello_KnownButForbiddenExtension_IllegalParameter()
    {
        // supported_versions (0x002b) renamed to early_data (0x002a): now missing supported_versions too, but the extension check comes first.
        using TlsPair pair = RunWith(false, 2, m => Replace(m, [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04], [0x00, 0x2a]));
        Assert.Equal(TlsAlert.IllegalParameter, pair.ClientAlert);
        using TlsPair pair2 = RunWith(false, 2, m => Replace(m, [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04], [0x7a, 0x7a]));
        Assert.Equal(TlsAlert.UnsupportedExtension, pair2.ClientAlert);
    }

    [Fact]
    public void ClientHello_NonEmptySessionId_IllegalParameter()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.Start();
        byte[] ch = pair.ClientHost.Pending.Dequeue().Data;

        // Insert a 1-byte legacy_session_id and fix the message length.
        byte[] modified = [.. ch.AsSpan(0, 38), 1, 0x55, .. ch.AsSpan(39)];
        int length = modified.Length - 4;
        modified[1] = (byte)(length >> 16);
        modified[2] = (byte)(length >> 8);
        modified[3] = (byte)length;
        Assert.Equal(TlsAlert.IllegalParameter, pair.Server.ProcessCryptoData(EncryptionLevel.Initial, modified));
    }

    [Fact]
    public void ServerHello_UnofferedCipherSuite_IllegalParameter()
    {
        using TlsPair pair = RunWith(false, 2, m =>
        {
            byte[] copy = (byte[])m.Clone();
            copy[4 + 2 + 32 + 1 + 1] = 0x02; // 0x1301 → 0x1302 (client offers only AES-128)
            return copy;
        }, client: o => o.CipherSuites = [KestrelQuic.Crypto.CipherSuite.Aes128GcmSha256]);
        Assert.Equal(TlsAlert.IllegalParameter, pair.ClientAlert);
    }

    [Fact]
    public void CertificateVerify_BadSignature_DecryptError()
    {
        using TlsPair pair = RunWith(false, 15, m =>
        {
            byte[] copy = (byte[])m.Clone();
            copy[^5] ^= 0x01;
            return copy;
        });
        Assert.True(pair.ClientAlert is TlsAlert.DecryptError, $"{pair.ClientAlert}: {pair.Client.FailureReason}");
    }

    [Fact]
    public void Finished_Bad_DecryptError()
    {
        using TlsPair pair = RunWith(false, 20, m =>
        {
            byte[] copy = (byte[])m.Clone();
            copy[^1] ^= 0x80;
            return copy;
        });
        Assert.Equal(TlsAlert.DecryptError, pair.ClientAlert);
        using TlsPair pair2 = RunWith(true, 20, m =>
        {
            byte[] copy = (byte[])m.Clone();
            copy[4] ^= 0x80;
            return copy;
        });
        Assert.Equal(TlsAlert.DecryptError, pair2.ServerAlert);
    }

    [Fact]
    public void MessagesOutOfOrder_UnexpectedMessage()
    {
        using TlsPair reference = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        reference.AssertSucceeded();
        List<(EncryptionLevel Level, byte[] Data)> flight = reference.ServerHost.Sent;

        // Fresh client: Certificate before EncryptedExtensions.
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.Start();
        Assert.Null(pair.Client.ProcessCryptoData(EncryptionLevel.Initial, flight[0].Data)); // ServerHello
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Client.ProcessCryptoData(EncryptionLevel.Handshake, flight[2].Data));

        // A second ServerHello.
        using TlsPair pair2 = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair2.Start();
        Assert.Null(pair2.Client.ProcessCryptoData(EncryptionLevel.Initial, flight[0].Data));
        Assert.Equal(TlsAlert.UnexpectedMessage, pair2.Client.ProcessCryptoData(EncryptionLevel.Initial, flight[0].Data));

        // EndOfEarlyData is never used in QUIC.
        using TlsPair pair3 = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair3.Start();
        Assert.Equal(TlsAlert.UnexpectedMessage, pair3.Server.ProcessCryptoData(EncryptionLevel.Initial, [5, 0, 0, 0]));
    }

    [Fact]
    public void PartialMessageThenOtherLevel_UnexpectedMessage()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.Start();
        byte[] ch = pair.ClientHost.Pending.Dequeue().Data;
        Assert.Null(pair.Server.ProcessCryptoData(EncryptionLevel.Initial, ch.AsSpan(0, 10)));
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Server.ProcessCryptoData(EncryptionLevel.Handshake, ch.AsSpan(10)));
    }

    [Fact]
    public void WholeServerFlightInOneCall_Works()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.Start();
        (EncryptionLevel _, byte[] ch) = pair.ClientHost.Pending.Dequeue();
        Assert.Null(pair.Server.ProcessCryptoData(EncryptionLevel.Initial, ch));
        var initial = new List<byte>();
        var handshake = new List<byte>();
        while (pair.ServerHost.Pending.Count > 0)
        {
            (EncryptionLevel level, byte[] data) = pair.ServerHost.Pending.Dequeue();
            (level == EncryptionLevel.Initial ? initial : handshake).AddRange(data);
        }

        Assert.Null(pair.Client.ProcessCryptoData(EncryptionLevel.Initial, initial.ToArray()));
        Assert.Null(pair.Client.ProcessCryptoData(EncryptionLevel.Handshake, handshake.ToArray()));
        Assert.True(pair.Client.IsHandshakeComplete);
        pair.Pump();
        pair.AssertSucceeded();
    }
}
