using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;

namespace KestrelQuic.Tests.Api;

/// <summary>QuicStream as an IDuplexPipe (PipeReader / PipeWriter) over real UDP sockets.</summary>
public sealed class LoopbackPipeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task EchoThroughPipes_ContentMatchesAndCompletionSendsFin()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync();
        await using (listener)
        await using (client)
        await using (server)
        {
            byte[] payload = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 123);
            Task echo = Task.Run(async () =>
            {
                await using QuicStream s = await server.AcceptInboundStreamAsync();
                IDuplexPipe pipe = s;
                // The pipe-to-pipe copy: every segment read is written and flushed, then both ends complete.
                while (true)
                {
                    ReadResult r = await pipe.Input.ReadAsync();
                    foreach (ReadOnlyMemory<byte> segment in r.Buffer) await pipe.Output.WriteAsync(segment);
                    pipe.Input.AdvanceTo(r.Buffer.End);
                    if (r.IsCompleted) break;
                }

                await pipe.Input.CompleteAsync();
                await pipe.Output.CompleteAsync();
                await s.WritesClosed;
            });

            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            Task write = Task.Run(async () =>
            {
                // Small writes through GetSpan/Advance, flushed every few KB.
                var random = new Random(5);
                for (int offset = 0; offset < payload.Length;)
                {
                    int n = Math.Min(random.Next(1, 3000), payload.Length - offset);
                    payload.AsSpan(offset, n).CopyTo(stream.Output.GetSpan(n));
                    stream.Output.Advance(n);
                    offset += n;
                    if (stream.Output.UnflushedBytes > 16 * 1024) await stream.Output.FlushAsync();
                }

                await stream.Output.CompleteAsync();
            });

            var received = new ArrayBufferWriter<byte>(payload.Length);
            while (true)
            {
                ReadResult r = await stream.Input.ReadAsync().AsTask().WaitAsync(Timeout);
                foreach (ReadOnlyMemory<byte> segment in r.Buffer) received.Write(segment.Span);
                stream.Input.AdvanceTo(r.Buffer.End);
                if (r.IsCompleted) break;
            }

            await stream.Input.CompleteAsync();
            await write.WaitAsync(Timeout);
            await echo.WaitAsync(Timeout);
            Assert.Equal(payload, received.WrittenSpan.ToArray());
            await stream.ReadsClosed.WaitAsync(Timeout);
            await stream.WritesClosed.WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task WriterCompletedWithError_PeerSeesReset_ReaderCompletedEarly_PeerSeesStopSending()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync(defaultStreamErrorCode: 0x55);
        await using (listener)
        await using (client)
        await using (server)
        {
            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Bidirectional);
            await stream.Output.WriteAsync(new byte[] { 1, 2, 3 });
            QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            await stream.Output.CompleteAsync(new InvalidOperationException("application failed"));
            QuicException reset = await Assert.ThrowsAsync<QuicException>(async () =>
            {
                var buffer = new byte[16];
                while (await inbound.ReadAsync(buffer) > 0)
                {
                }
            }).WaitAsync(Timeout);
            Assert.Equal(QuicError.StreamAborted, reset.QuicError);
            Assert.Equal(0x55, reset.ApplicationErrorCode);

            // The client stops reading before the server's FIN: the server's writes fail with the same code.
            stream.Input.Complete();
            QuicException stopped = await Assert.ThrowsAsync<QuicException>(async () =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    await inbound.WriteAsync(new byte[1000]);
                    await Task.Delay(5);
                }
            }).WaitAsync(Timeout);
            Assert.Equal(QuicError.StreamAborted, stopped.QuicError);
            Assert.Equal(0x55, stopped.ApplicationErrorCode);
        }
    }

    [Fact]
    public async Task UnidirectionalStream_HasOnlyItsHalf()
    {
        (QuicListener listener, QuicConnection client, QuicConnection server) = await ConnectAsync();
        await using (listener)
        await using (client)
        await using (server)
        {
            await using QuicStream stream = await client.OpenOutboundStreamAsync(QuicStreamType.Unidirectional);
            Assert.Throws<InvalidOperationException>(() => stream.Input);
            await stream.Output.WriteAsync(new byte[] { 9, 8, 7 });
            await stream.Output.CompleteAsync();
            QuicStream inbound = await server.AcceptInboundStreamAsync().AsTask().WaitAsync(Timeout);
            Assert.Throws<InvalidOperationException>(() => inbound.Output);
            ReadResult r;
            do
            {
                r = await inbound.Input.ReadAsync().AsTask().WaitAsync(Timeout);
                if (!r.IsCompleted) inbound.Input.AdvanceTo(r.Buffer.Start, r.Buffer.End);
            }
            while (!r.IsCompleted);
            Assert.Equal(new byte[] { 9, 8, 7 }, r.Buffer.ToArray());
            inbound.Input.AdvanceTo(r.Buffer.End);
            inbound.Input.Complete();
        }
    }

    private static async Task<(QuicListener, QuicConnection, QuicConnection)> ConnectAsync(long defaultStreamErrorCode = 0)
    {
        QuicListener listener = await QuicListener.ListenAsync(LoopbackTests.ListenerOptions());
        Task<QuicConnection> acceptTask = listener.AcceptConnectionAsync().AsTask();
        QuicClientConnectionOptions options = LoopbackTests.ClientOptions(listener.LocalEndPoint);
        options.DefaultStreamErrorCode = defaultStreamErrorCode;
        QuicConnection client = await QuicConnection.ConnectAsync(options).AsTask().WaitAsync(Timeout);
        return (listener, client, await acceptTask.WaitAsync(Timeout));
    }
}
