using System.Security.Cryptography.X509Certificates;
using KestrelQuic.Configuration;
using KestrelQuic.Crypto;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Configuration;

public sealed class QuicConfigurationTests
{
    private static readonly Dictionary<string, (string Field, Action<QuicConfiguration> Apply)> s_invalid = new()
    {
        ["ConnectionIdLength=21"] = ("ConnectionIdLength", c => c.ConnectionIdLength = 21), // RFC 9000 §17.2: at most 20 bytes
        ["ConnectionIdLength=3"] = ("ConnectionIdLength", c => c.ConnectionIdLength = 3),
        ["ConnectionIdLength=-1"] = ("ConnectionIdLength", c => c.ConnectionIdLength = -1),
        ["MaxDatagramSize=1199"] = ("MaxDatagramSize", c => c.MaxDatagramSize = 1199), // RFC 9000 §14: at least 1200
        ["MaxDatagramSize=65528"] = ("MaxDatagramSize", c => c.MaxDatagramSize = 65528),
        ["MaxUdpPayloadSize=1199"] = ("MaxUdpPayloadSize", c => c.MaxUdpPayloadSize = 1199), // RFC 9000 §18.2
        ["PathMtuDiscoveryUpperBound=1199"] = ("PathMtuDiscoveryUpperBound", c => c.PathMtuDiscoveryUpperBound = 1199),
        ["PathMtuDiscoveryUpperBound=65528"] = ("PathMtuDiscoveryUpperBound", c => c.PathMtuDiscoveryUpperBound = 65528),
        ["MaxData=-1"] = ("MaxData", c => c.MaxData = -1),
        ["MaxData=0"] = ("MaxData", c => c.MaxData = 0),
        ["MaxData=1"] = ("MaxData", c => c.MaxData = 1),
        ["MaxStreamData=-1"] = ("MaxStreamData", c => c.MaxStreamData = -1),
        ["MaxStreamData=0"] = ("MaxStreamData", c => c.MaxStreamData = 0),
        ["MaxConnectionReceiveWindow<MaxData"] = ("MaxConnectionReceiveWindow", c => c.MaxConnectionReceiveWindow = c.MaxData - 1),
        ["MaxStreamReceiveWindow<MaxStreamData"] = ("MaxStreamReceiveWindow", c => c.MaxStreamReceiveWindow = c.MaxStreamData - 1),
        ["MaxBidirectionalStreams=-1"] = ("MaxBidirectionalStreams", c => c.MaxBidirectionalStreams = -1),
        ["MaxBidirectionalStreams=2^60+1"] = ("MaxBidirectionalStreams", c => c.MaxBidirectionalStreams = (1L << 60) + 1), // RFC 9000 §4.6
        ["MaxUnidirectionalStreams=-1"] = ("MaxUnidirectionalStreams", c => c.MaxUnidirectionalStreams = -1),
        ["MaxDatagramFrameSize=-1"] = ("MaxDatagramFrameSize", c => c.MaxDatagramFrameSize = -1),
        ["IdleTimeout=-1s"] = ("IdleTimeout", c => c.IdleTimeout = TimeSpan.FromSeconds(-1)),
        ["InitialRtt=0"] = ("InitialRtt", c => c.InitialRtt = TimeSpan.Zero),
        ["InitialRtt=61s"] = ("InitialRtt", c => c.InitialRtt = TimeSpan.FromSeconds(61)),
        ["MaxAckDelay=-1ms"] = ("MaxAckDelay", c => c.MaxAckDelay = TimeSpan.FromMilliseconds(-1)),
        ["MaxAckDelay=2^14ms"] = ("MaxAckDelay", c => c.MaxAckDelay = TimeSpan.FromMilliseconds(1 << 14)), // RFC 9000 §18.2
        ["AckDelayExponent=21"] = ("AckDelayExponent", c => c.AckDelayExponent = 21), // RFC 9000 §18.2: above 20 invalid
        ["AckDelayExponent=-1"] = ("AckDelayExponent", c => c.AckDelayExponent = -1),
        ["ActiveConnectionIdLimit=1"] = ("ActiveConnectionIdLimit", c => c.ActiveConnectionIdLimit = 1), // RFC 9000 §18.2: at least 2
        ["SupportedVersions=empty"] = ("SupportedVersions", c => c.SupportedVersions = new List<uint>()),
        ["SupportedVersions=draft-29"] = ("SupportedVersions", c => c.SupportedVersions = new List<uint> { QuicVersion.Version1, 0xff00001d }),
        ["SupportedVersions=reserved"] = ("SupportedVersions", c => c.SupportedVersions = new List<uint> { 0x1a2a3a4a }),
        ["CipherSuites=empty"] = ("CipherSuites", c => c.CipherSuites = new List<CipherSuite>()),
        ["CipherSuites=0x1304"] = ("CipherSuites", c => c.CipherSuites = new List<CipherSuite> { (CipherSuite)0x1304 }),
        ["KeyExchangeGroups=empty"] = ("KeyExchangeGroups", c => c.KeyExchangeGroups = new List<KeyExchangeGroup>()),
        ["KeyExchangeGroups=x448"] = ("KeyExchangeGroups", c => c.KeyExchangeGroups = new List<KeyExchangeGroup> { (KeyExchangeGroup)0x001e }),
        ["ApplicationProtocols=empty"] = ("ApplicationProtocols", c => c.ApplicationProtocols = new List<string>()),
        ["ApplicationProtocols=emptyString"] = ("ApplicationProtocols", c => c.ApplicationProtocols = new List<string> { "h3", string.Empty }),
        ["ApplicationProtocols=256bytes"] = ("ApplicationProtocols", c => c.ApplicationProtocols = new List<string> { new string('a', 256) }),
        ["SessionTicketKey=16bytes"] = ("SessionTicketKey", c => c.SessionTicketKey = new byte[16]),
        ["SessionTicketLifetime=0"] = ("SessionTicketLifetime", c => c.SessionTicketLifetime = TimeSpan.Zero),
        ["SessionTicketLifetime=8d"] = ("SessionTicketLifetime", c => c.SessionTicketLifetime = TimeSpan.FromDays(8)), // RFC 8446 §4.6.1
        ["Certificate=noKey"] = ("Certificate", c => c.Certificate = PublicOnly()),
        ["ClientCertificate=noKey"] = ("ClientCertificate", c => c.ClientCertificate = PublicOnly()),
        ["CongestionControl=undefined"] = ("CongestionControl", c => c.CongestionControl = (CongestionControlAlgorithm)7),
        ["Retry=undefined"] = ("Retry", c => c.Retry = (RetryMode)9),
        ["ClientCertificateMode=undefined"] = ("ClientCertificateMode", c => c.ClientCertificateMode = (ClientCertificateMode)5),
        ["RetryHandshakeThreshold=-1"] = ("RetryHandshakeThreshold", c => c.RetryHandshakeThreshold = -1),
        ["SocketReceiveBufferSize=-1"] = ("SocketReceiveBufferSize", c => c.SocketReceiveBufferSize = -1),
        ["SocketSendBufferSize=-1"] = ("SocketSendBufferSize", c => c.SocketSendBufferSize = -1),
        ["MaxCryptoBufferSize=4095"] = ("MaxCryptoBufferSize", c => c.MaxCryptoBufferSize = 4095),
    };

    public static TheoryData<string> InvalidCases => new(s_invalid.Keys);

    private static QuicConfiguration ValidConfig() => new() { ApplicationProtocols = { "h3" } };

    private static X509Certificate2 PublicOnly() => X509CertificateLoader.LoadCertificate(TestCertificates.Localhost.RawData);

    [Fact]
    public void Defaults_WithAnAlpn_AreValid()
    {
        Assert.Empty(ValidConfig().Validate());
        ValidConfig().ThrowIfInvalid();
    }

    [Fact]
    public void Defaults_MatchDocumentation()
    {
        var c = new QuicConfiguration();
        Assert.Equal(8, c.ConnectionIdLength);
        Assert.Equal(1200, c.MaxDatagramSize);
        Assert.Equal(TimeSpan.FromSeconds(30), c.IdleTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(333), c.InitialRtt); // RFC 9002 kInitialRtt
        Assert.Equal(TimeSpan.FromMilliseconds(25), c.MaxAckDelay); // RFC 9000 §18.2 default
        Assert.Equal(3, c.AckDelayExponent);
        Assert.Equal(CongestionControlAlgorithm.Cubic, c.CongestionControl);
        Assert.Equal(new uint[] { QuicVersion.Version1, QuicVersion.Version2 }, c.SupportedVersions);
        Assert.Null(c.MaxDatagramFrameSize);
        Assert.False(c.EnableEarlyData);
        Assert.False(c.DangerousAcceptAnyServerCertificate);
    }

    [Fact]
    public void Defaults_WithoutAlpn_ReportOnlyTheMissingAlpn()
    {
        // QUIC requires ALPN (RFC 9001 §8.1) for clients and servers alike: the empty default list must be filled in.
        IReadOnlyList<string> errors = new QuicConfiguration().Validate();
        string error = Assert.Single(errors);
        Assert.StartsWith("ApplicationProtocols", error);
    }

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void InvalidValue_ReportsExactlyOneErrorNamingTheField(string name)
    {
        (string field, Action<QuicConfiguration> apply) = s_invalid[name];
        QuicConfiguration c = ValidConfig();
        apply(c);

        IReadOnlyList<string> errors = c.Validate();
        string error = Assert.Single(errors);
        Assert.StartsWith(field + " ", error);

        ArgumentException ex = Assert.Throws<ArgumentException>(c.ThrowIfInvalid);
        Assert.Contains(error, ex.Message);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(20)]
    public void ConnectionIdLength_BoundsAreValid(int length)
    {
        QuicConfiguration c = ValidConfig();
        c.ConnectionIdLength = length;
        Assert.Empty(c.Validate());
    }

    [Fact]
    public void BoundaryValues_AreValid()
    {
        QuicConfiguration c = ValidConfig();
        c.MaxDatagramSize = 65527;
        c.MaxUdpPayloadSize = 1200;
        c.IdleTimeout = TimeSpan.Zero; // disables the idle timeout
        c.MaxAckDelay = TimeSpan.FromMilliseconds((1 << 14) - 1);
        c.AckDelayExponent = 20;
        c.ActiveConnectionIdLimit = 2;
        c.MaxBidirectionalStreams = 0;
        c.MaxUnidirectionalStreams = 1L << 60;
        c.MaxDatagramFrameSize = 0;
        c.MaxData = 2; // the smallest windows that still reopen (an update is due when less than half is left)
        c.MaxStreamData = 2;
        c.SupportedVersions = new List<uint> { QuicVersion.Version2 };
        c.SessionTicketKey = new byte[32];
        c.SessionTicketLifetime = TimeSpan.FromDays(7);
        c.Certificate = TestCertificates.Localhost;
        c.ApplicationProtocols = new List<string> { new string('a', 255) };
        Assert.Empty(c.Validate());
    }

    [Fact]
    public void SeveralProblems_AreAllReported()
    {
        QuicConfiguration c = ValidConfig();
        c.ConnectionIdLength = 21;
        c.MaxDatagramSize = 1000;
        c.AckDelayExponent = 99;
        IReadOnlyList<string> errors = c.Validate();
        Assert.Equal(3, errors.Count);
        Assert.Contains(errors, e => e.StartsWith("ConnectionIdLength ", StringComparison.Ordinal) && e.Contains("21", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("MaxDatagramSize ", StringComparison.Ordinal) && e.Contains("1000", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("AckDelayExponent ", StringComparison.Ordinal) && e.Contains("99", StringComparison.Ordinal));
    }

    [Fact]
    public void Clone_IsIndependentOfTheOriginal()
    {
        QuicConfiguration original = ValidConfig();
        original.MaxData = 1_000_000;
        original.ServerName = "example.org";

        QuicConfiguration copy = original.Clone();
        Assert.Equal(1_000_000, copy.MaxData);
        Assert.Equal("example.org", copy.ServerName);
        Assert.Equal(original.ApplicationProtocols, copy.ApplicationProtocols);
        Assert.Equal(original.SupportedVersions, copy.SupportedVersions);
        Assert.Equal(original.CipherSuites, copy.CipherSuites);
        Assert.Equal(original.KeyExchangeGroups, copy.KeyExchangeGroups);

        copy.MaxData = 5;
        copy.ServerName = "other.example";
        copy.ApplicationProtocols.Add("h3-29");
        copy.SupportedVersions.Remove(QuicVersion.Version2);
        copy.CipherSuites.Clear();
        copy.KeyExchangeGroups.Add(KeyExchangeGroup.Secp384r1);
        copy.Certificate = TestCertificates.Localhost;

        Assert.Equal(1_000_000, original.MaxData);
        Assert.Equal("example.org", original.ServerName);
        Assert.Equal(new[] { "h3" }, original.ApplicationProtocols);
        Assert.Equal(new uint[] { QuicVersion.Version1, QuicVersion.Version2 }, original.SupportedVersions);
        Assert.Equal(3, original.CipherSuites.Count);
        Assert.Equal(new[] { KeyExchangeGroup.X25519, KeyExchangeGroup.Secp256r1 }, original.KeyExchangeGroups);
        Assert.Null(original.Certificate);
        Assert.Empty(original.Validate());
    }

    [Fact]
    public void CreateClient_RejectsInvalidConfiguration()
    {
        QuicConfiguration c = SimulationHelpers.ClientConfig(x => x.ConnectionIdLength = 21);
        ArgumentException ex = Assert.Throws<ArgumentException>(() => KestrelQuic.Connection.QuicConnectionCore.CreateClient(c, null, 0));
        Assert.Contains("ConnectionIdLength", ex.Message);
    }
}
