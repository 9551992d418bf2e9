using System.Net;
using System.Security.Cryptography;

namespace KestrelQuic.Tests.Api;

/// <summary>Connection migration over real UDP sockets: the client moves to a new port, and a NAT rebinds it without its knowledge.</summary>
public sealed class LoopbackMigrationTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ClientMigratesDuringTransfer_TransferCompletesAndServerSeesNewPort()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        (QuicConnection client, QuicConnection server) = await ConnectAsync(listener, listener.LocalEndPoint);
        await using (client)
        await using (server)
        {
            IPEndPoint before = client.LocalEndPoint;
            Assert.Equal(before.Port, server.RemoteEndPoint.Port);

            await EchoWithActionAsync(client, server, 8 * 1024 * 1024, async () =>
            {
                await client.MigrateAsync().AsTask().WaitAsync(Timeout);
                Assert.NotEqual(before.Port, client.LocalEndPoint.Port);
            });

            Assert.Equal(client.LocalEndPoint.Port, server.RemoteEndPoint.Port);
            Assert.Equal(IPAddress.Loopback, server.RemoteEndPoint.Address);

            // The old socket is closed: the connection lives on the new one only.
            using var probe = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
            probe.Bind(new IPEndPoint(IPAddress.Loopback, before.Port)); // would throw (address in use) if it were still open
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 50_000);
        }
    }

    [Fact]
    public async Task IdleClientMigratesToAChosenPort_ServerFollowsAndStreamsWork()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        (QuicConnection client, QuicConnection server) = await ConnectAsync(listener, listener.LocalEndPoint);
        await using (client)
        await using (server)
        {
            int port = FreePort();
            await client.MigrateAsync(new IPEndPoint(IPAddress.Loopback, port)).AsTask().WaitAsync(Timeout);
            Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), client.LocalEndPoint);

            // No application data moved: the PING sent with the PATH_CHALLENGE made the server switch paths.
            await LoopbackLifecycleTests.WaitUntilAsync(() => server.RemoteEndPoint.Port == port);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 100_000);

            // And once more, back to an ephemeral port.
            await client.MigrateAsync().AsTask().WaitAsync(Timeout);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 100_000);
            Assert.Equal(client.LocalEndPoint.Port, server.RemoteEndPoint.Port);
        }
    }

    [Fact]
    public async Task MigrationToADeadPath_FailsAndTheConnectionStaysOnTheOldSocket()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new UdpRelay(listener.LocalEndPoint);
        (QuicConnection client, QuicConnection server) = await ConnectAsync(listener, relay.EndPoint);
        await using (client)
        await using (server)
        {
            IPEndPoint before = client.LocalEndPoint;
            relay.DropFromNewClientAddresses = true;
            QuicException e = await Assert.ThrowsAsync<QuicException>(() => client.MigrateAsync().AsTask()).WaitAsync(Timeout);
            Assert.Equal(QuicError.ConnectionTimeout, e.QuicError);
            Assert.True(Interlocked.Read(ref relay.DroppedFromNewClientAddresses) > 0);
            Assert.Equal(before, client.LocalEndPoint);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 100_000);
        }
    }

    [Fact]
    public async Task MigrateOnServerOrWhenTheServerDisabledMigration_Throws()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions(c => c.DisableActiveMigration = true));
        (QuicConnection client, QuicConnection server) = await ConnectAsync(listener, listener.LocalEndPoint);
        await using (client)
        await using (server)
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => server.MigrateAsync().AsTask());
            IPEndPoint before = client.LocalEndPoint;
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.MigrateAsync().AsTask());
            Assert.Equal(before, client.LocalEndPoint);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 1000);
        }
    }

    [Fact]
    public async Task NatRebinding_ServerFollowsTheNewSourcePort()
    {
        await using QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        await using var relay = new UdpRelay(listener.LocalEndPoint);
        (QuicConnection client, QuicConnection server) = await ConnectAsync(listener, relay.EndPoint);
        await using (client)
        await using (server)
        {
            IPEndPoint clientLocal = client.LocalEndPoint;
            Assert.Equal(relay.OutboundEndPoint, server.RemoteEndPoint);

            await EchoWithActionAsync(client, server, 8 * 1024 * 1024, () =>
            {
                relay.Rebind();
                return Task.CompletedTask;
            });

            // The client never knew; the server validated the new path and moved to it.
            Assert.Equal(clientLocal, client.LocalEndPoint);
            Assert.Equal(relay.OutboundEndPoint, server.RemoteEndPoint);
            await LoopbackLifecycleTests.AssertEchoAsync(client, server, 100_000);
        }
    }

    private static async Task<(QuicConnection Client, QuicConnection Server)> ConnectAsync(QuicListener listener, IPEndPoint remote)
    {
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicConnection client = await QuicConnection.ConnectAsync(LoopbackTests.ClientOptions(remote)).AsTask().WaitAsync(Timeout);
        QuicConnection server = await acceptTask.WaitAsync(Timeout);
        await client.PingAsync().AsTask().WaitAsync(Timeout);
        await LoopbackLifecycleTests.WaitUntilAsync(() =>
        {
            lock (client.Endpoint.Lock) return client.Handle.Core.IsHandshakeConfirmed;
        });
        return (client, server);
    }

    private static int FreePort()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }

    /// <summary>Echoes <paramref name="total"/> bytes over one stream, running <paramref name="midway"/> once a quarter is uploaded; hashes must match.</summary>
    internal static async Task EchoWithActionAsync(QuicConnection client, QuicConnection server, int total, Func<Task> midway)
    {
        const int Chunk = 32 * 1024;
        Task<byte[]> serverSide = Task.Run(async () =>
        {
            await using QuicStream s = await server.AcceptInboundStreamAsync();
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[Chunk];
            int n;
            while ((n = await s.ReadAsync(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                await s.WriteAsync(buffer.AsMemory(0, n));
            }

            s.CompleteWrites();
            return sha.GetHashAndReset();
        });

        await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
        Task<byte[]> upload = Task.Run(async () =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[Chunk];
            bool done = false;
            for (int sent = 0; sent < total; sent += Chunk)
            {
                RandomNumberGenerator.Fill(buffer);
                sha.AppendData(buffer);
                await stream.WriteAsync(buffer);
                if (!done && sent >= total / 4)
                {
                    done = true;
                    await midway();
                }
            }

            stream.CompleteWrites();
            return sha.GetHashAndReset();
        });

        using var received = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long receivedBytes = 0;
        Task download = Task.Run(async () =>
        {
            var buffer = new byte[Chunk];
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0)
            {
                received.AppendData(buffer, 0, n);
                receivedBytes += n;
            }
        });

        byte[] sentHash = await upload.WaitAsync(Timeout);
        byte[] serverHash = await serverSide.WaitAsync(Timeout);
        await download.WaitAsync(Timeout);
        Assert.Equal(total, receivedBytes);
        Assert.Equal(Convert.ToHexString(sentHash), Convert.ToHexString(serverHash));
        Assert.Equal(Convert.ToHexString(sentHash), Convert.ToHexString(received.GetHashAndReset()));
    }
}
