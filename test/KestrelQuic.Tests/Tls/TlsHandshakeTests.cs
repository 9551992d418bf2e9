using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Tls;

public class TlsHandshakeTests
{
    public static TheoryData<CipherSuite, NamedGroup> SuitesAndGroups()
    {
        var data = new TheoryData<CipherSuite, NamedGroup>();
        foreach (CipherSuite suite in new[] { CipherSuite.Aes128GcmSha256, CipherSuite.Aes256GcmSha384, CipherSuite.ChaCha20Poly1305Sha256 })
        {
            foreach (NamedGroup group in new[] { NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1 })
            {
                data.Add(suite, group);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SuitesAndGroups))]
    public void FullHandshake_EverySuiteAndGroup_SecretsMatch(CipherSuite suite, NamedGroup group)
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.CipherSuites = [suite]; o.Groups = [group]; }),
            TestCertificates.ServerOptions(o => o.Groups = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1]));
        pair.AssertSucceeded();
        Assert.Equal(suite, pair.Client.NegotiatedCipherSuite);
        Assert.Equal(group, pair.Server.NegotiatedGroup);
        Assert.False(pair.Client.HelloRetryRequestUsed);
        Assert.False(pair.Client.IsResumed);
        Assert.Equal(suite, pair.ClientHost.Secrets[(EncryptionLevel.OneRtt, TrafficDirection.Write)].Suite);
        Assert.Equal("h3", pair.Client.NegotiatedApplicationProtocol);
    }

    [Theory]
    [InlineData("ecdsa256")]
    [InlineData("ecdsa384")]
    [InlineData("rsa")]
    public void FullHandshake_EachServerKeyType_ValidatesAgainstCustomCa(string keyType)
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(),
            TestCertificates.ServerOptions(o => o.Certificate = TestCertificates.Get(keyType)));
        pair.AssertSucceeded();
        Assert.Equal(TestCertificates.Get(keyType).Leaf.Thumbprint, pair.Client.PeerCertificate!.Thumbprint);
        Assert.Single(pair.Client.PeerCertificateChain!);
    }

    [Fact]
    public void FullHandshake_Ed25519Certificate_Succeeds()
    {
        bool callbackCalled = false;
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.CertificateValidationCallback = (cert, _, errors) =>
            {
                callbackCalled = true;
                return cert.PublicKey.Oid.Value == "1.3.101.112";
            }),
            TestCertificates.ServerOptions(o => o.Certificate = TestCertificates.Ed25519));
        pair.AssertSucceeded();
        Assert.True(callbackCalled);
    }

    [Fact]
    public void FullHandshake_Ed25519NotOffered_HandshakeFailure()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.SignatureAlgorithms = [SignatureScheme.EcdsaSecp256r1Sha256]),
            TestCertificates.ServerOptions(o => o.Certificate = TestCertificates.Ed25519));
        Assert.Equal(TlsAlert.HandshakeFailure, pair.ServerAlert);
    }

    [Fact]
    public void SecretsAreInstalledInRfc9001Order()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.AssertSucceeded();
        Assert.Equal(
            [(EncryptionLevel.Handshake, TrafficDirection.Read), (EncryptionLevel.Handshake, TrafficDirection.Write), (EncryptionLevel.OneRtt, TrafficDirection.Read), (EncryptionLevel.OneRtt, TrafficDirection.Write)],
            pair.ClientHost.SecretOrder);
        Assert.Equal(
            [(EncryptionLevel.Handshake, TrafficDirection.Write), (EncryptionLevel.Handshake, TrafficDirection.Read), (EncryptionLevel.OneRtt, TrafficDirection.Write), (EncryptionLevel.OneRtt, TrafficDirection.Read)],
            pair.ServerHost.SecretOrder);

        // ClientHello at Initial; ServerHello at Initial; the rest at Handshake.
        Assert.Equal([(EncryptionLevel.Initial, (byte)1), (EncryptionLevel.Handshake, (byte)20)], pair.ClientHost.SentMessageTypes());
        Assert.Equal(
            [(EncryptionLevel.Initial, (byte)2), (EncryptionLevel.Handshake, (byte)8), (EncryptionLevel.Handshake, (byte)11), (EncryptionLevel.Handshake, (byte)15), (EncryptionLevel.Handshake, (byte)20)],
            pair.ServerHost.SentMessageTypes());
    }

    [Fact]
    public void FullHandshake_ByteByByte_Succeeds()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(), byteByByte: true);
        pair.AssertSucceeded();
    }

    [Fact]
    public void HelloRetryRequest_ServerOnlySupportsP256_RetriesAndSucceeds()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.Groups = [NamedGroup.X25519, NamedGroup.Secp256r1]),
            TestCertificates.ServerOptions(o => o.Groups = [NamedGroup.Secp256r1]));
        pair.AssertSucceeded();
        Assert.True(pair.Client.HelloRetryRequestUsed);
        Assert.True(pair.Server.HelloRetryRequestUsed);
        Assert.Equal(NamedGroup.Secp256r1, pair.Client.NegotiatedGroup);
        Assert.Equal([(EncryptionLevel.Initial, (byte)1), (EncryptionLevel.Initial, (byte)1), (EncryptionLevel.Handshake, (byte)20)], pair.ClientHost.SentMessageTypes());
    }

    [Fact]
    public void HelloRetryRequest_Sha384Suite_TranscriptUsesMessageHash()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.Groups = [NamedGroup.X25519, NamedGroup.Secp384r1]; o.CipherSuites = [CipherSuite.Aes256GcmSha384]; }),
            TestCertificates.ServerOptions(o => o.Groups = [NamedGroup.Secp384r1]));
        pair.AssertSucceeded();
        Assert.True(pair.Client.HelloRetryRequestUsed);
    }

    [Fact]
    public void SecondHelloRetryRequest_UnexpectedMessage()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(o => o.Groups = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1]), TestCertificates.ServerOptions(o => o.Groups = [NamedGroup.Secp256r1]));
        pair.Start();
        pair.Pump();
        byte[] hrr = pair.ServerHost.Sent[0].Data;

        // Feed the client the same HRR twice: its second arrival (now asking for P-384, which differs from the share) must fail.
        using TlsPair second = new(TestCertificates.ClientOptions(o => o.Groups = [NamedGroup.X25519, NamedGroup.Secp256r1, NamedGroup.Secp384r1]), TestCertificates.ServerOptions());
        second.Start();
        Assert.Null(second.Client.ProcessCryptoData(EncryptionLevel.Initial, hrr));
        byte[] hrr2 = (byte[])hrr.Clone();
        hrr2[^1] = (byte)NamedGroup.Secp384r1;
        Assert.Equal(TlsAlert.UnexpectedMessage, second.Client.ProcessCryptoData(EncryptionLevel.Initial, hrr2));
    }

    [Fact]
    public void NoCommonGroup_HandshakeFailure()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.Groups = [NamedGroup.X25519]),
            TestCertificates.ServerOptions(o => o.Groups = [NamedGroup.Secp256r1]));
        Assert.Equal(TlsAlert.HandshakeFailure, pair.ServerAlert);
    }

    [Fact]
    public void NoCommonCipherSuite_HandshakeFailure()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.CipherSuites = [CipherSuite.Aes128GcmSha256]),
            TestCertificates.ServerOptions(o => o.CipherSuites = [CipherSuite.ChaCha20Poly1305Sha256]));
        Assert.Equal(TlsAlert.HandshakeFailure, pair.ServerAlert);
    }

    [Fact]
    public void Alpn_ServerPicksFirstOfItsOwnList()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ApplicationProtocols = ["h3-29", "hq-interop", "h3"]),
            TestCertificates.ServerOptions(o => o.ApplicationProtocols = ["h3", "hq-interop"]));
        pair.AssertSucceeded();
        Assert.Equal("h3", pair.Client.NegotiatedApplicationProtocol);
    }

    [Fact]
    public void Alpn_NoOverlap_NoApplicationProtocol()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ApplicationProtocols = ["h3"]),
            TestCertificates.ServerOptions(o => o.ApplicationProtocols = ["hq-interop"]));
        Assert.Equal(TlsAlert.NoApplicationProtocol, pair.ServerAlert);
        Assert.Equal((byte)120, (byte)pair.ServerAlert!.Value);
    }

    [Fact]
    public void Sni_SelectsCertificateByServerName()
    {
        TlsCertificate exampleCert = TestCertificates.CreateLeaf("ecdsa256", "example.com");
        string? seen = null;
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ServerName = "example.com"),
            TestCertificates.ServerOptions(o => o.CertificateSelector = sni =>
            {
                seen = sni;
                return sni == "example.com" ? exampleCert : null;
            }));
        pair.AssertSucceeded();
        Assert.Equal("example.com", seen);
        Assert.Equal("example.com", pair.Server.ServerName);
        Assert.Equal(exampleCert.Leaf.Thumbprint, pair.Client.PeerCertificate!.Thumbprint);
    }

    [Fact]
    public void Sni_SelectorReturnsNull_FallsBackToDefaultCertificate()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(o => o.CertificateSelector = _ => null));
        pair.AssertSucceeded();
        Assert.Equal(TestCertificates.EcdsaP256.Leaf.Thumbprint, pair.Client.PeerCertificate!.Thumbprint);
    }

    [Fact]
    public void NoServerCertificate_HandshakeFailure()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(o => o.Certificate = null));
        Assert.Equal(TlsAlert.HandshakeFailure, pair.ServerAlert);
    }

    [Fact]
    public void Validation_UntrustedCa_UnknownCa()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.TrustedCertificateAuthorities = [TestCertificates.OtherCa]), TestCertificates.ServerOptions());
        Assert.Equal(TlsAlert.UnknownCa, pair.ClientAlert);
        Assert.False(pair.Client.IsHandshakeComplete);
    }

    [Fact]
    public void Validation_WrongHost_BadCertificate()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.ServerName = "evil.example"), TestCertificates.ServerOptions());
        Assert.Equal(TlsAlert.BadCertificate, pair.ClientAlert);
    }

    [Fact]
    public void Validation_WildcardAndIpSan_Match()
    {
        TlsCertificate wildcard = TestCertificates.CreateLeaf("ecdsa256", "*.example.com", ipAddress: "192.0.2.7");
        using (TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.ServerName = "www.example.com"), TestCertificates.ServerOptions(o => o.Certificate = wildcard)))
        {
            pair.AssertSucceeded();
        }

        using (TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.ServerName = "192.0.2.7"), TestCertificates.ServerOptions(o => o.Certificate = wildcard)))
        {
            pair.AssertSucceeded();
            Assert.Null(pair.Server.ServerName); // IP literals are not sent as SNI
        }

        using (TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.ServerName = "a.b.example.com"), TestCertificates.ServerOptions(o => o.Certificate = wildcard)))
        {
            Assert.Equal(TlsAlert.BadCertificate, pair.ClientAlert);
        }
    }

    [Fact]
    public void Validation_Expired_CertificateExpired()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.TimeProvider = new ManualTimeProvider(TestCertificates.NotAfter.AddDays(30))),
            TestCertificates.ServerOptions());
        Assert.Equal(TlsAlert.CertificateExpired, pair.ClientAlert);
    }

    [Fact]
    public void Validation_CallbackOverridesFailure()
    {
        SslPolicyErrorsHolder holder = new();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o =>
            {
                o.TrustedCertificateAuthorities = [TestCertificates.OtherCa];
                o.ServerName = "wrong.example";
                o.CertificateValidationCallback = (_, chain, errors) =>
                {
                    holder.Errors = errors;
                    holder.HadChain = chain is not null;
                    return true;
                };
            }),
            TestCertificates.ServerOptions());
        pair.AssertSucceeded();
        Assert.True(holder.HadChain);
        Assert.Equal(System.Net.Security.SslPolicyErrors.RemoteCertificateChainErrors | System.Net.Security.SslPolicyErrors.RemoteCertificateNameMismatch, holder.Errors);
    }

    [Fact]
    public void Validation_CallbackRejects_BadCertificate()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.CertificateValidationCallback = (_, _, _) => false), TestCertificates.ServerOptions());
        Assert.Equal(TlsAlert.BadCertificate, pair.ClientAlert);
    }

    [Fact]
    public void Validation_DangerousAcceptAny_Succeeds()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.TrustedCertificateAuthorities = null; o.ServerName = "nope.invalid"; o.DangerousAcceptAnyServerCertificate = true; }),
            TestCertificates.ServerOptions());
        pair.AssertSucceeded();
    }

    [Fact]
    public void ServerSendsEmptyServerNameAck_ClientAccepts()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.AssertSucceeded();
        Assert.Equal("localhost", pair.Server.ServerName);
        Assert.Equal("localhost", pair.Client.ServerName);
    }

    [Fact]
    public void KeyLog_ProducesNssLabelsWithClientRandom()
    {
        var clientLines = new List<(string Label, byte[] Random, byte[] Secret)>();
        var serverLines = new List<(string Label, byte[] Random, byte[] Secret)>();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.KeyLogCallback = (l, r, s) => clientLines.Add((l, r.ToArray(), s.ToArray()))),
            TestCertificates.ServerOptions(o => o.KeyLogCallback = (l, r, s) => serverLines.Add((l, r.ToArray(), s.ToArray()))));
        pair.AssertSucceeded();
        string[] expected = ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"];
        Assert.Equal(expected, clientLines.Select(l => l.Label).Order().ToArray());
        Assert.Equal(expected, serverLines.Select(l => l.Label).Order().ToArray());

        // The client random is the 32 bytes after legacy_version in the ClientHello.
        byte[] clientRandom = pair.ClientHost.Sent[0].Data.AsSpan(6, 32).ToArray();
        Assert.All(clientLines, l => Assert.Equal(clientRandom, l.Random));
        Assert.All(serverLines, l => Assert.Equal(clientRandom, l.Random));
        Assert.Equal(pair.ClientHost.Secrets[(EncryptionLevel.Handshake, TrafficDirection.Write)].Secret, clientLines.Single(l => l.Label == "CLIENT_HANDSHAKE_TRAFFIC_SECRET").Secret);
        Assert.Equal(pair.ClientHost.Secrets[(EncryptionLevel.OneRtt, TrafficDirection.Read)].Secret, serverLines.Single(l => l.Label == "SERVER_TRAFFIC_SECRET_0").Secret);
    }

    [Fact]
    public void MessageAtWrongLevel_UnexpectedMessage()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.Start();
        byte[] clientHello = pair.ClientHost.Pending.Dequeue().Data;
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Server.ProcessCryptoData(EncryptionLevel.Handshake, clientHello));
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Server.ProcessCryptoData(EncryptionLevel.Initial, clientHello)); // sticky
    }

    [Fact]
    public void KeyUpdate_Forbidden()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions());
        pair.AssertSucceeded();
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Client.ProcessCryptoData(EncryptionLevel.OneRtt, [24, 0, 0, 1, 0]));
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Server.ProcessCryptoData(EncryptionLevel.OneRtt, [24, 0, 0, 1, 0]));
    }

    [Fact]
    public void OversizedMessage_Flagged()
    {
        using TlsPair pair = new(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(o => o.MaxHandshakeMessageSize = 1000));
        pair.Start();
        Assert.NotNull(pair.Server.ProcessCryptoData(EncryptionLevel.Initial, [1, 0, 0x10, 0]));
        Assert.True(pair.Server.HandshakeMessageTooLarge);
    }

    [Fact]
    public void ClientCertificate_Required_Validated()
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ClientCertificate = TestCertificates.Rsa2048),
            TestCertificates.ServerOptions(o => o.ClientCertificateMode = ClientCertificateMode.Require));
        pair.AssertSucceeded();
        Assert.Equal(TestCertificates.Rsa2048.Leaf.Thumbprint, pair.Server.PeerCertificate!.Thumbprint);
        Assert.Equal([(EncryptionLevel.Initial, (byte)1), (EncryptionLevel.Handshake, (byte)11), (EncryptionLevel.Handshake, (byte)15), (EncryptionLevel.Handshake, (byte)20)], pair.ClientHost.SentMessageTypes());
    }

    [Theory]
    [InlineData("ecdsa384")]
    [InlineData("ed25519")]
    public void ClientCertificate_OtherKeyTypes(string keyType)
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ClientCertificate = TestCertificates.Get(keyType)),
            TestCertificates.ServerOptions(o =>
            {
                o.ClientCertificateMode = ClientCertificateMode.Require;
                o.CertificateValidationCallback = (c, _, errors) => keyType == "ed25519" || errors == System.Net.Security.SslPolicyErrors.None;
            }));
        pair.AssertSucceeded();
        Assert.NotNull(pair.Server.PeerCertificate);
    }

    [Fact]
    public void ClientCertificate_RequiredButMissing_CertificateRequired()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(o => o.ClientCertificateMode = ClientCertificateMode.Require));
        Assert.Equal(TlsAlert.CertificateRequired, pair.ServerAlert);
        Assert.True(pair.Client.IsHandshakeComplete); // the client only learns via the alert
    }

    [Fact]
    public void ClientCertificate_AllowedAndMissing_Succeeds()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), TestCertificates.ServerOptions(o => o.ClientCertificateMode = ClientCertificateMode.Allow));
        pair.AssertSucceeded();
        Assert.Null(pair.Server.PeerCertificate);
    }

    [Fact]
    public void ClientCertificate_Untrusted_UnknownCa()
    {
        TlsCertificate untrusted = TestCertificates.CreateLeaf("ecdsa256", "client", TestCertificates.OtherCa);
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.ClientCertificate = untrusted),
            TestCertificates.ServerOptions(o => o.ClientCertificateMode = ClientCertificateMode.Allow));
        Assert.Equal(TlsAlert.UnknownCa, pair.ServerAlert);
    }

    private sealed class SslPolicyErrorsHolder
    {
        public System.Net.Security.SslPolicyErrors Errors { get; set; }

        public bool HadChain { get; set; }
    }
}
