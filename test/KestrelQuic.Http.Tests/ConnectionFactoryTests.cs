using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using KestrelQuic.Configuration;
using KestrelQuic.Http.Connections;
using KestrelQuic.Tests.Shared;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Http.Tests;

/// <summary>IMultiplexedConnectionFactory / IConnectionFactory over loopback against our QuicListener.</summary>
public sealed class ConnectionFactoryTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private static readonly Lazy<X509Certificate2> s_certificate = new(CreateCertificate);

    [Fact]
    public async Task Multiplexed_BidirectionalEcho_UnidirectionalToServer_AndServerInitiatedStream()
    {
        await using QuicListener listener = await ListenAsync();
        Task server = Task.Run(async () =>
        {
            await using QuicConnection connection = await listener.AcceptConnectionAsync();

            // 1. Echo the client's bidirectional stream.
            await using (QuicStream echo = await connection.AcceptInboundStreamAsync())
            {
                byte[] all = await ReadAllAsync(echo);
                await echo.WriteAsync(all, completeWrites: true);
                await echo.WritesClosed;
            }

            // 2. Read the client's unidirectional stream, answer on a stream of our own.
            byte[] uni;
            await using (QuicStream inbound = await connection.AcceptInboundStreamAsync())
            {
                Assert.Equal(QuicStreamType.Unidirectional, inbound.Type);
                uni = await ReadAllAsync(inbound);
            }

            await using QuicStream outbound = await connection.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            await outbound.WriteAsync(uni.Reverse().ToArray(), completeWrites: true);

            // The client closes once it has read everything (possibly before acknowledging it).
            QuicCloseReason reason = await connection.Closed;
            Assert.True(reason.ClosedByPeer);
        });

        var factory = new QuicMultiplexedConnectionFactory(new QuicConnectionFactoryOptions { Configuration = ClientConfig() });
        var features = new FeatureCollection();
        features.Set(new SslClientAuthenticationOptions { ApplicationProtocols = [new SslApplicationProtocol("kq-test")], TargetHost = "localhost" });
        await using MultiplexedConnectionContext connection = await factory.ConnectAsync(listener.LocalEndPoint, features).AsTask().WaitAsync(Timeout);
        Assert.NotNull(connection.Features.Get<IProtocolErrorCodeFeature>());
        Assert.Equal(-1, connection.Features.Get<IProtocolErrorCodeFeature>()!.Error);

        byte[] payload = RandomNumberGenerator.GetBytes(300_000);
        await using (ConnectionContext stream = await connection.ConnectAsync().AsTask().WaitAsync(Timeout))
        {
            Assert.Equal(0, stream.Features.Get<IStreamIdFeature>()!.StreamId);
            Assert.True(stream.Features.Get<IStreamDirectionFeature>()!.CanRead);
            await stream.Transport.Output.WriteAsync(payload);
            await stream.Transport.Output.CompleteAsync();
            Assert.Equal(payload, await ReadAllAsync(stream.Transport.Input).WaitAsync(Timeout));
        }

        var uniFeatures = new FeatureCollection();
        uniFeatures.Set<IStreamDirectionFeature>(new WriteOnly());
        await using (ConnectionContext uni = await connection.ConnectAsync(uniFeatures).AsTask().WaitAsync(Timeout))
        {
            Assert.False(uni.Features.Get<IStreamDirectionFeature>()!.CanRead);
            await uni.Transport.Output.WriteAsync("hello"u8.ToArray());
            await uni.Transport.Output.CompleteAsync();
        }

        ConnectionContext? accepted = await connection.AcceptAsync().AsTask().WaitAsync(Timeout);
        Assert.NotNull(accepted);
        await using (accepted)
        {
            Assert.Equal("olleh", Encoding.ASCII.GetString(await ReadAllAsync(accepted.Transport.Input).WaitAsync(Timeout)));
        }

        connection.Abort();
        await server.WaitAsync(Timeout);
        Assert.Null(await connection.AcceptAsync().AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public async Task SingleStream_ConnectionFactory_Echo_DisposeClosesConnection()
    {
        await using QuicListener listener = await ListenAsync();
        Task<QuicCloseReason> server = Task.Run(async () =>
        {
            await using QuicConnection connection = await listener.AcceptConnectionAsync();
            await using (QuicStream echo = await connection.AcceptInboundStreamAsync())
            {
                byte[] all = await ReadAllAsync(echo);
                await echo.WriteAsync(all, completeWrites: true);
            }

            // The client closes once it has read the echo (possibly before acknowledging it).
            return await connection.Closed;
        });

        using var logs = new ListLoggerProvider();
        using ILoggerFactory loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        var factory = new QuicConnectionFactory(new QuicConnectionFactoryOptions
        {
            Configuration = ClientConfig(c => c.ApplicationProtocols = ["kq-test"]),
            DefaultCloseErrorCode = 7,
            LoggerFactory = loggerFactory,
        });
        byte[] payload = RandomNumberGenerator.GetBytes(100_000);
        await using (ConnectionContext context = await factory.ConnectAsync(listener.LocalEndPoint).AsTask().WaitAsync(Timeout))
        {
            await context.Transport.Output.WriteAsync(payload);
            await context.Transport.Output.CompleteAsync();
            Assert.Equal(payload, await ReadAllAsync(context.Transport.Input).WaitAsync(Timeout));
        }

        QuicCloseReason reason = await server.WaitAsync(Timeout);
        Assert.True(reason.IsApplicationError);
        Assert.Equal(7UL, reason.ErrorCode);
        Assert.Contains("ALPN kq-test", await logs.WaitForAsync("KestrelQuic|ConnectionConnected|", Timeout), StringComparison.Ordinal);
    }

    private static async Task<QuicListener> ListenAsync() => await QuicListener.ListenAsync(new QuicListenerOptions
    {
        ListenEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
        Configuration = new QuicConfiguration { ApplicationProtocols = ["kq-test"], Certificate = s_certificate.Value },
    });

    private static QuicConfiguration ClientConfig(Action<QuicConfiguration>? configure = null)
    {
        var config = new QuicConfiguration { UseSystemTrust = false, TrustedCertificateAuthorities = [s_certificate.Value], ServerName = "localhost" };
        configure?.Invoke(config);
        return config;
    }

    private static async Task<byte[]> ReadAllAsync(Stream stream)
    {
        var memory = new MemoryStream();
        await stream.CopyToAsync(memory);
        return memory.ToArray();
    }

    private static async Task<byte[]> ReadAllAsync(PipeReader reader)
    {
        var memory = new MemoryStream();
        while (true)
        {
            ReadResult result = await reader.ReadAsync();
            foreach (ReadOnlyMemory<byte> segment in result.Buffer)
            {
                memory.Write(segment.Span);
            }

            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return memory.ToArray();
            }
        }
    }

    private static X509Certificate2 CreateCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        using X509Certificate2 cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
    }

    private sealed class WriteOnly : IStreamDirectionFeature
    {
        public bool CanRead => false;

        public bool CanWrite => true;
    }
}
