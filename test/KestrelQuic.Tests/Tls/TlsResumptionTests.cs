using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Tls;

namespace KestrelQuic.Tests.Tls;

public class TlsResumptionTests
{
    private static readonly byte[] s_ticketKey = Enumerable.Range(1, 32).Select(i => (byte)i).ToArray();
    private static readonly byte[] s_appData = [0xde, 0xad, 0xbe, 0xef];

    private static TlsSessionTicket IssueTicket(CipherSuite suite = CipherSuite.Aes128GcmSha256, bool earlyData = true)
    {
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.CipherSuites = [suite]),
            TestCertificates.ServerOptions(o => { o.SessionTicketKey = s_ticketKey; o.EnableEarlyData = earlyData; }));
        pair.AssertSucceeded();
        pair.Server.SendSessionTicket(s_appData);
        Assert.Equal(EncryptionLevel.OneRtt, pair.ServerHost.Pending.Peek().Level);
        pair.Pump();
        Assert.Null(pair.ClientAlert);
        TlsSessionTicket ticket = Assert.Single(pair.ClientHost.Tickets);
        Assert.Equal(suite, ticket.CipherSuite);
        Assert.Equal(earlyData ? 0xffffffffu : 0u, ticket.MaxEarlyDataSize);
        Assert.Equal("h3", ticket.ApplicationProtocol);
        Assert.Equal("localhost", ticket.ServerName);
        Assert.Equal(86400u, ticket.LifetimeSeconds);
        return ticket;
    }

    private static TlsOptions ResumingServer(Action<TlsOptions>? configure = null) =>
        TestCertificates.ServerOptions(o =>
        {
            o.SessionTicketKey = s_ticketKey;
            o.EnableEarlyData = true;
            o.AntiReplay = new EarlyDataAntiReplay();
            configure?.Invoke(o);
        });

    [Fact]
    public void Ticket_SerializeRoundTrip()
    {
        TlsSessionTicket ticket = IssueTicket();
        ticket.QuicData = [1, 2, 3];
        Assert.True(TlsSessionTicket.TryDeserialize(ticket.Serialize(), out TlsSessionTicket? copy));
        Assert.Equal(ticket.Ticket, copy!.Ticket);
        Assert.Equal(ticket.ResumptionSecret, copy.ResumptionSecret);
        Assert.Equal(ticket.CipherSuite, copy.CipherSuite);
        Assert.Equal(ticket.AgeAdd, copy.AgeAdd);
        Assert.Equal(ticket.LifetimeSeconds, copy.LifetimeSeconds);
        Assert.Equal(ticket.ReceivedAt, copy.ReceivedAt);
        Assert.Equal(ticket.MaxEarlyDataSize, copy.MaxEarlyDataSize);
        Assert.Equal(ticket.ApplicationProtocol, copy.ApplicationProtocol);
        Assert.Equal(ticket.ServerName, copy.ServerName);
        Assert.Equal(ticket.QuicData, copy.QuicData);

        byte[] bytes = ticket.Serialize();
        for (int i = 0; i < bytes.Length; i++)
        {
            Assert.False(TlsSessionTicket.TryDeserialize(bytes.AsSpan(0, i), out _));
        }
    }

    [Theory]
    [InlineData(CipherSuite.Aes128GcmSha256)]
    [InlineData(CipherSuite.Aes256GcmSha384)]
    [InlineData(CipherSuite.ChaCha20Poly1305Sha256)]
    public void Resumption_WithEarlyData_Accepted(CipherSuite suite)
    {
        Assert.True(TlsSessionTicket.TryDeserialize(IssueTicket(suite).Serialize(), out TlsSessionTicket? ticket));
        var earlyLabels = new List<string>();
        using TlsPair pair = new(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.EnableEarlyData = true; o.CipherSuites = [suite]; o.KeyLogCallback = (l, _, _) => earlyLabels.Add(l); }),
            ResumingServer());
        pair.Start();

        // The 0-RTT write secret is available right after the ClientHello.
        Assert.True(pair.ClientHost.Secrets.ContainsKey((EncryptionLevel.ZeroRtt, TrafficDirection.Write)));
        Assert.Equal(EarlyDataStatus.Offered, pair.Client.EarlyData);
        Assert.Contains("CLIENT_EARLY_TRAFFIC_SECRET", earlyLabels);
        pair.Pump();
        pair.AssertSucceeded();
        pair.AssertSecretsMatch(EncryptionLevel.ZeroRtt);
        Assert.Equal(suite, pair.ClientHost.Secrets[(EncryptionLevel.ZeroRtt, TrafficDirection.Write)].Suite);
        Assert.True(pair.Client.IsResumed);
        Assert.True(pair.Server.IsResumed);
        Assert.Equal(EarlyDataStatus.Accepted, pair.Client.EarlyData);
        Assert.Equal(EarlyDataStatus.Accepted, pair.Server.EarlyData);
        Assert.Equal(s_appData, pair.Server.ResumedTicketApplicationData);

        // No Certificate / CertificateVerify in a PSK handshake.
        Assert.Equal([(EncryptionLevel.Initial, (byte)2), (EncryptionLevel.Handshake, (byte)8), (EncryptionLevel.Handshake, (byte)20)], pair.ServerHost.SentMessageTypes());
        Assert.Null(pair.Client.PeerCertificate);
    }

    [Fact]
    public void Resumption_WithoutEarlyData_NoZeroRttSecret()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(o => o.SessionTicket = ticket), ResumingServer());
        pair.AssertSucceeded();
        Assert.True(pair.Server.IsResumed);
        Assert.Equal(EarlyDataStatus.None, pair.Client.EarlyData);
        Assert.False(pair.ClientHost.Secrets.ContainsKey((EncryptionLevel.ZeroRtt, TrafficDirection.Write)));
    }

    [Fact]
    public void EarlyData_ServerDeclines_RejectedButHandshakeCompletes()
    {
        TlsSessionTicket ticket = IssueTicket();
        byte[]? seen = null;
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.EnableEarlyData = true; }),
            ResumingServer(o => o.AcceptEarlyData = data => { seen = data.ToArray(); return false; }));
        pair.AssertSucceeded();
        Assert.Equal(s_appData, seen);
        Assert.True(pair.Client.IsResumed);
        Assert.Equal(EarlyDataStatus.Rejected, pair.Client.EarlyData);
        Assert.Equal(EarlyDataStatus.Rejected, pair.Server.EarlyData);
        Assert.False(pair.ServerHost.Secrets.ContainsKey((EncryptionLevel.ZeroRtt, TrafficDirection.Read)));
    }

    [Fact]
    public void EarlyData_ServerDisabled_Rejected()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.EnableEarlyData = true; }),
            ResumingServer(o => o.EnableEarlyData = false));
        pair.AssertSucceeded();
        Assert.Equal(EarlyDataStatus.Rejected, pair.Client.EarlyData);
        Assert.True(pair.Client.IsResumed);
    }

    [Fact]
    public void Ticket_FromAnotherServerKey_FullHandshake()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.EnableEarlyData = true; }),
            ResumingServer(o => o.SessionTicketKey = new byte[32]));
        pair.AssertSucceeded();
        Assert.False(pair.Client.IsResumed);
        Assert.False(pair.Server.IsResumed);
        Assert.Equal(EarlyDataStatus.Rejected, pair.Client.EarlyData);
        Assert.Contains((EncryptionLevel.Handshake, (byte)11), pair.ServerHost.SentMessageTypes());
    }

    [Fact]
    public void Ticket_ExpiredAtServer_FullHandshake()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.SessionTicket = ticket),
            ResumingServer(o => o.TimeProvider = new ManualTimeProvider(TestCertificates.Now.AddDays(2))));
        pair.AssertSucceeded();
        Assert.False(pair.Server.IsResumed);
    }

    [Fact]
    public void Ticket_ExpiredAtClient_NotOffered()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.TimeProvider = new ManualTimeProvider(TestCertificates.Now.AddDays(2)); }),
            ResumingServer());
        pair.AssertSucceeded();
        Assert.False(pair.Client.IsResumed);
    }

    [Fact]
    public void Ticket_TamperedBinder_DecryptError()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => o.SessionTicket = ticket),
            ResumingServer(),
            transform: (fromClient, _, data) =>
            {
                if (fromClient && data[0] == 1)
                {
                    data[^1] ^= 1; // last byte of the binder
                }

                return data;
            });
        Assert.Equal(TlsAlert.DecryptError, pair.ServerAlert);
    }

    [Fact]
    public void Resumption_AfterHelloRetryRequest_PskKeptEarlyDataRejected()
    {
        TlsSessionTicket ticket = IssueTicket();
        using TlsPair pair = TlsPair.Run(
            TestCertificates.ClientOptions(o => { o.SessionTicket = ticket; o.EnableEarlyData = true; o.Groups = [NamedGroup.X25519, NamedGroup.Secp256r1]; }),
            ResumingServer(o => o.Groups = [NamedGroup.Secp256r1]));
        pair.AssertSucceeded();
        Assert.True(pair.Client.HelloRetryRequestUsed);
        Assert.True(pair.Server.IsResumed);
        Assert.Equal(EarlyDataStatus.Rejected, pair.Client.EarlyData);
        Assert.Equal(EarlyDataStatus.Rejected, pair.Server.EarlyData);
    }

    [Fact]
    public void NewSessionTicket_WrongMaxEarlyDataSize_IllegalParameter()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), ResumingServer());
        pair.AssertSucceeded();
        pair.Server.SendSessionTicket(s_appData);
        byte[] nst = pair.ServerHost.Pending.Dequeue().Data;
        nst[^1] = 0xfe; // max_early_data_size 0xfffffffe
        Assert.Equal(TlsAlert.IllegalParameter, pair.Client.ProcessCryptoData(EncryptionLevel.OneRtt, nst));
    }

    [Fact]
    public void NewSessionTicket_AtWrongLevel_UnexpectedMessage()
    {
        using TlsPair pair = TlsPair.Run(TestCertificates.ClientOptions(), ResumingServer());
        pair.AssertSucceeded();
        pair.Server.SendSessionTicket(s_appData);
        byte[] nst = pair.ServerHost.Pending.Dequeue().Data;
        Assert.Equal(TlsAlert.UnexpectedMessage, pair.Client.ProcessCryptoData(EncryptionLevel.Handshake, nst));
    }
}
