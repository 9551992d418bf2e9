// A raw QUIC echo server (ALPN "echo"): every bidirectional stream a client opens is sent back to it byte for byte.
//
//   dotnet run --project samples/EchoServer -- [--port 4433] [--address ::]
//
// It creates an ephemeral self-signed certificate for "localhost" and prints its SHA-256 fingerprint, so a client
// can pin it (EchoClient --pin FINGERPRINT) instead of skipping validation (--insecure).

using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using KestrelQuic;
using KestrelQuic.Configuration;

int port = 4433;
IPAddress address = IPAddress.IPv6Any; // dual-stack: IPv4 and IPv6 clients
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--port" when i + 1 < args.Length:
            port = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture);
            break;
        case "--address" when i + 1 < args.Length:
            address = IPAddress.Parse(args[++i]);
            break;
        default:
            Console.Error.WriteLine("usage: EchoServer [--port 4433] [--address ::]");
            return 2;
    }
}

using X509Certificate2 certificate = CreateSelfSignedCertificate("localhost");
await using QuicListener listener = await QuicListener.ListenAsync(new QuicListenerOptions
{
    ListenEndPoint = new IPEndPoint(address, port),
    Configuration = new QuicConfiguration
    {
        ApplicationProtocols = { "echo" },
        Certificate = certificate,
        MaxBidirectionalStreams = 1000,
    },
});

Console.WriteLine($"echo server listening on {listener.LocalEndPoint} (ALPN \"echo\")");
Console.WriteLine($"certificate SHA-256 fingerprint: {certificate.GetCertHashString(HashAlgorithmName.SHA256)}");
Console.WriteLine("press Ctrl+C to stop");

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

try
{
    while (true)
    {
        QuicConnection connection = await listener.AcceptConnectionAsync(stop.Token);
        _ = ServeConnectionAsync(connection);
    }
}
catch (OperationCanceledException)
{
}

return 0;

static async Task ServeConnectionAsync(QuicConnection connection)
{
    await using (connection)
    {
        Console.WriteLine($"[{connection.Id}] connected from {connection.RemoteEndPoint} ({connection.NegotiatedCipherSuite}, resumed: {connection.IsResumed})");
        try
        {
            while (true)
            {
                QuicStream stream = await connection.AcceptInboundStreamAsync();
                _ = EchoStreamAsync(connection, stream);
            }
        }
        catch (QuicException e)
        {
            // The client closed the connection (or it timed out): that is how every connection ends.
            Console.WriteLine($"[{connection.Id}] closed: {e.Message}");
        }
    }
}

static async Task EchoStreamAsync(QuicConnection connection, QuicStream stream)
{
    await using (stream)
    {
        try
        {
            if (stream.Type != QuicStreamType.Bidirectional)
            {
                await stream.CopyToAsync(Stream.Null); // nothing to answer on: read and drop
                return;
            }

            var buffer = new byte[64 * 1024];
            long total = 0;
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0)
            {
                await stream.WriteAsync(buffer.AsMemory(0, n));
                total += n;
            }

            stream.CompleteWrites(); // FIN after the last echoed byte
            Console.WriteLine($"[{connection.Id}] stream {stream.Id}: echoed {total:N0} bytes");
        }
        catch (QuicException e)
        {
            Console.WriteLine($"[{connection.Id}] stream {stream.Id}: {e.Message}");
        }
    }
}

static X509Certificate2 CreateSelfSignedCertificate(string name)
{
    using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
    var san = new SubjectAlternativeNameBuilder();
    san.AddDnsName(name);
    san.AddIpAddress(IPAddress.Loopback);
    san.AddIpAddress(IPAddress.IPv6Loopback);
    request.CertificateExtensions.Add(san.Build());
    using X509Certificate2 certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(14));
    // A PKCS#12 round trip gives a certificate whose private key works on every platform.
    return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
}
