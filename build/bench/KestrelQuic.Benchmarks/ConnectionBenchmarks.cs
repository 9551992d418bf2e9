using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using BenchmarkDotNet.Attributes;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;

namespace KestrelQuic.Benchmarks;

/// <summary>
/// The whole packet path of two connected cores (P5): application bytes → STREAM frames → sealed datagram →
/// received, opened, reassembled → read by the application, with ACKs flowing back. One operation is one datagram.
/// </summary>
[MemoryDiagnoser]
public class ConnectionBenchmarks
{
    private const int DatagramsPerRound = 16;
    private static readonly IPEndPoint s_clientAddress = new(IPAddress.Loopback, 40000);
    private static readonly IPEndPoint s_serverAddress = new(IPAddress.Loopback, 443);
    private readonly byte[] _datagram = new byte[1500];
    private readonly byte[] _appData = new byte[DatagramsPerRound * 1200];
    private readonly byte[] _readBuffer = new byte[64 * 1024];
    private QuicConnectionCore _client = null!;
    private QuicConnectionCore _server = null!;
    private ulong _streamId;
    private long _now;

    [GlobalSetup]
    public void Setup()
    {
        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        var serverConfig = new QuicConfiguration { ApplicationProtocols = { "bench" }, Certificate = certificate, MaxStreamData = 16 << 20, MaxData = 16 << 20, PathMtuDiscoveryUpperBound = 0 };
        var clientConfig = new QuicConfiguration { ApplicationProtocols = { "bench" }, ServerName = "localhost", DangerousAcceptAnyServerCertificate = true, MaxStreamData = 16 << 20, MaxData = 16 << 20, PathMtuDiscoveryUpperBound = 0 };

        _now = TimeSpan.FromSeconds(1).Ticks;
        _client = QuicConnectionCore.CreateClient(clientConfig, s_serverAddress, _now);
        int n = _client.PollDatagram(_datagram, _now, out _);
        if (!Packets.PacketHeaderParser.TryParse(_datagram.AsSpan(0, n), 8, out Packets.PacketHeader h)) throw new InvalidOperationException("bad Initial");
        _server = QuicConnectionCore.CreateServer(serverConfig, h.Version,
            _datagram.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength),
            _datagram.AsSpan(h.SourceConnectionIdOffset, h.SourceConnectionIdLength), s_clientAddress, _now);
        _server.ReceiveDatagram(_datagram.AsSpan(0, n), s_clientAddress, _now);
        for (int i = 0; i < 100 && !(_client.IsHandshakeConfirmed && _server.IsHandshakeConfirmed); i++)
        {
            _now += TimeSpan.TicksPerMillisecond;
            Exchange();
        }

        if (!_client.IsHandshakeConfirmed || !_server.TryOpenStream(bidirectional: false, out _streamId)) throw new InvalidOperationException("handshake failed");
        for (int i = 0; i < 500; i++) Round(); // windows, pools and buffers reach their steady size
    }

    /// <summary>One datagram of stream data from server to client, ACKs included, per operation.</summary>
    [Benchmark(OperationsPerInvoke = DatagramsPerRound)]
    public long StreamToDatagramToStream() => Round();

    private long Round()
    {
        _now += TimeSpan.TicksPerMillisecond;
        int offset = 0;
        while (offset < _appData.Length)
        {
            int written = _server.WriteStream(_streamId, _appData.AsSpan(offset));
            if (written == 0) break;
            offset += written;
        }

        long read = 0;
        for (int i = 0; i < DatagramsPerRound; i++)
        {
            int len = _server.PollDatagram(_datagram, _now, out _);
            if (len == 0) break;
            _client.ReceiveDatagram(_datagram.AsSpan(0, len), s_serverAddress, _now);
        }

        while (_client.ReadStream(_streamId, _readBuffer, out _) is int n and > 0) read += n;
        Exchange();
        return read;
    }

    private void Exchange()
    {
        int len;
        while ((len = _client.PollDatagram(_datagram, _now, out _)) > 0) _server.ReceiveDatagram(_datagram.AsSpan(0, len), s_clientAddress, _now);
        while ((len = _server.PollDatagram(_datagram, _now, out _)) > 0) _client.ReceiveDatagram(_datagram.AsSpan(0, len), s_serverAddress, _now);
        while (_client.TryDequeueEvent(out _)) { }
        while (_server.TryDequeueEvent(out _)) { }
        if (_client.NextTimeout <= _now) _client.HandleTimeout(_now);
        if (_server.NextTimeout <= _now) _server.HandleTimeout(_now);
    }
}
