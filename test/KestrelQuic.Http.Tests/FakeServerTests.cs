using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using KestrelQuic.Http3;

namespace KestrelQuic.Http.Tests;

/// <summary>The handler against a scripted HTTP/3 server on our own QuicListener: bodies, GOAWAY, resets, malformed responses.</summary>
public sealed class FakeServerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Post20MB_StreamedBothWays_EchoVerified()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            // Answer before the body has arrived, then echo it as it comes: both directions stream at once.
            await request.SendHeadersAsync(200);
            await request.ReadBodyAsync(chunk => request.SendDataAsync(chunk));
            request.Stream.CompleteWrites();
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));
        const long size = 20L * 1024 * 1024;
        var source = new PatternStream(size);
        using var content = new StreamContent(source, 64 * 1024);

        using HttpResponseMessage response = await client.PostAsync(new Uri(server.BaseUri, "/echo"), content).WaitAsync(Timeout);
        byte[] received = await SHA256.HashDataAsync(await response.Content.ReadAsStreamAsync()).AsTask().WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(PatternStream.Sha256(size), received);
    }

    [Fact]
    public async Task RequestHeaders_LowerCased_PseudoHeadersFirst_NoConnectionSpecificFields()
    {
        List<(string Name, string Value)>? seen = null;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            seen = request.Headers;
            await request.RespondAsync(200, "ok");
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));
        using var message = new HttpRequestMessage(HttpMethod.Get, new Uri(server.BaseUri, "/a/b?c=d"));
        message.Headers.Add("X-Custom", "Value");
        message.Headers.Connection.Add("keep-alive");
        message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "secret");

        using HttpResponseMessage response = await client.SendAsync(message).WaitAsync(Timeout);

        Assert.Equal("ok", await response.Content.ReadAsStringAsync());
        Assert.NotNull(seen);
        Assert.Equal([":method", ":scheme", ":authority", ":path"], seen!.Take(4).Select(h => h.Name));
        Assert.Contains((":path", "/a/b?c=d"), seen);
        Assert.Contains((":authority", $"localhost:{server.BaseUri.Port}"), seen);
        Assert.Contains(("x-custom", "Value"), seen);
        Assert.Contains(("authorization", "Bearer secret"), seen);
        Assert.DoesNotContain(seen, h => h.Name is "connection" or "host");
    }

    [Fact]
    public async Task GoAway_RequestsBeyondId_RetriedOnNewConnection_OthersComplete()
    {
        var firstConnectionRequests = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int onFirst = 0;
        FakeH3Connection? first = null;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            if (Interlocked.CompareExchange(ref first, request.Connection, null) is null || first == request.Connection)
            {
                if (Interlocked.Increment(ref onFirst) == 4)
                {
                    firstConnectionRequests.TrySetResult();
                }

                await firstConnectionRequests.Task;
                if (request.Stream.Id == 0)
                {
                    // Streams 8 and above will not be processed here.
                    await request.Connection.SendGoAwayAsync(8);
                }

                if (request.Stream.Id < 8)
                {
                    await Task.Delay(50);
                    await request.RespondAsync(200, "first");
                }

                return;
            }

            await request.RespondAsync(200, "second");
        });
        using var handler = new ManagedHttp3Handler(FakeH3Server.ClientOptions());
        using var client = new HttpClient(handler);

        string[] bodies = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => client.GetStringAsync(new Uri(server.BaseUri, "/x")))).WaitAsync(Timeout);

        Assert.Equal(2, bodies.Count(b => b == "first"));
        Assert.Equal(2, bodies.Count(b => b == "second"));
        Assert.Equal(2, server.ConnectionCount);
        Assert.Equal(2, handler.ConnectionsOpened);
    }

    [Fact]
    public async Task RequestRejected_IsRetried()
    {
        int attempts = 0;
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            if (Interlocked.Increment(ref attempts) == 1)
            {
                request.Stream.Abort(QuicAbortDirection.Both, (long)Http3ErrorCode.RequestRejected);
                return;
            }

            await request.RespondAsync(200, "second try");
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        Assert.Equal("second try", await client.GetStringAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout));
        Assert.Equal(2, attempts);
    }

    [Fact]
    public async Task StreamReset_InternalError_HttpRequestExceptionCarriesCode_InnerQuicException()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request =>
        {
            request.Stream.Abort(QuicAbortDirection.Both, (long)Http3ErrorCode.InternalError);
            return Task.CompletedTask;
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, "/"))).WaitAsync(Timeout);

        Assert.True(ManagedHttp3Handler.TryGetHttp3ErrorCode(e, out long code));
        Assert.Equal((long)Http3ErrorCode.InternalError, code);
        Assert.Equal(HttpRequestError.HttpProtocolError, e.HttpRequestError);
        QuicException inner = Assert.IsType<QuicException>(e.InnerException);
        Assert.Equal(QuicError.StreamAborted, inner.QuicError);
        Assert.Contains("H3_INTERNAL_ERROR", e.Message);
    }

    [Fact]
    public async Task DataBeforeHeaders_ClosesConnectionWithFrameUnexpected()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.SendDataAsync("oops"u8.ToArray(), fin: true));
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, "/"))).WaitAsync(Timeout);

        Assert.True(ManagedHttp3Handler.TryGetHttp3ErrorCode(e, out long code));
        Assert.Equal((long)Http3ErrorCode.FrameUnexpected, code);
        QuicCloseReason reason = await server.Connections[0].Quic.Closed.WaitAsync(Timeout);
        Assert.True(reason.IsApplicationError);
        Assert.Equal((ulong)Http3ErrorCode.FrameUnexpected, reason.ErrorCode);
    }

    [Fact]
    public async Task ResponseWithoutStatus_IsMessageError()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.Stream.WriteAsync(request.EncodeHeaders([("content-type", "text/plain")]), completeWrites: true);
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        HttpRequestException e = await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri(server.BaseUri, "/"))).WaitAsync(Timeout);

        Assert.True(ManagedHttp3Handler.TryGetHttp3ErrorCode(e, out long code));
        Assert.Equal((long)Http3ErrorCode.MessageError, code);
    }

    [Fact]
    public async Task InterimResponse103_IsSkipped()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.SendHeadersAsync(103, ("link", "</style.css>; rel=preload"));
            await request.RespondAsync(200, "final");
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("final", await response.Content.ReadAsStringAsync());
        Assert.False(response.Headers.Contains("link"));
    }

    [Fact]
    public async Task BodyShorterThanContentLength_ReadFailsWithMessageError()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.SendHeadersAsync(200, ("content-length", "10"));
            await request.SendDataAsync("12345"u8.ToArray(), fin: true);
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "/"), HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        Stream body = await response.Content.ReadAsStreamAsync();
        HttpIOException e = await Assert.ThrowsAsync<HttpIOException>(() => body.CopyToAsync(Stream.Null)).WaitAsync(Timeout);

        Assert.True(ManagedHttp3Handler.TryGetHttp3ErrorCode(e, out long code));
        Assert.Equal((long)Http3ErrorCode.MessageError, code);
    }

    [Fact]
    public async Task CancelMidUpload_ServerSeesRequestCancelled()
    {
        var serverSaw = new TaskCompletionSource<long?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bodyStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            try
            {
                await request.ReadBodyAsync(_ =>
                {
                    bodyStarted.TrySetResult();
                    return Task.CompletedTask;
                });
                serverSaw.TrySetResult(null);
            }
            catch (QuicException e)
            {
                serverSaw.TrySetResult(e.ApplicationErrorCode);
            }
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));
        using var cts = new CancellationTokenSource();
        using var content = new StreamContent(new PatternStream(long.MaxValue, delayPerRead: TimeSpan.FromMilliseconds(5)));

        Task<HttpResponseMessage> send = client.PostAsync(new Uri(server.BaseUri, "/upload"), content, cts.Token);
        await bodyStarted.Task.WaitAsync(Timeout);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send).WaitAsync(Timeout);
        Assert.Equal((long)Http3ErrorCode.RequestCancelled, await serverSaw.Task.WaitAsync(Timeout));
    }

    [Fact]
    public async Task CancelMidDownload_ServerSeesStopSendingWithRequestCancelled()
    {
        var serverSaw = new TaskCompletionSource<long?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.SendHeadersAsync(200);
            byte[] chunk = new byte[64 * 1024];
            try
            {
                // An endless body: only the client's STOP_SENDING ends it.
                while (true)
                {
                    await request.SendDataAsync(chunk);
                }
            }
            catch (QuicException e)
            {
                serverSaw.TrySetResult(e.QuicError == QuicError.StreamAborted ? e.ApplicationErrorCode : null);
            }
        });
        using var handler = new ManagedHttp3Handler(FakeH3Server.ClientOptions());
        using var client = new HttpClient(handler);
        using var cts = new CancellationTokenSource();

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "/endless"), HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        Stream body = await response.Content.ReadAsStreamAsync();
        byte[] buffer = new byte[64 * 1024];
        long read = 0;
        while (read < 512 * 1024)
        {
            read += await body.ReadAsync(buffer).AsTask().WaitAsync(Timeout);
        }

        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            while (await body.ReadAsync(buffer, cts.Token) > 0)
            {
            }
        }).WaitAsync(Timeout);

        Assert.Equal((long)Http3ErrorCode.RequestCancelled, await serverSaw.Task.WaitAsync(Timeout));

        // Only the stream ended: the connection takes the next request.
        server.Handler = request => request.RespondAsync(200, "next");
        Assert.Equal("next", await client.GetStringAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout));
        Assert.Equal(1, handler.ConnectionsOpened);
    }

    [Fact]
    public async Task Settings_AdvertiseQpackLimitsAndFieldSectionSize_FromTheOptions()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "ok"));
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions(o =>
        {
            o.QpackMaxTableCapacity = 1234;
            o.QpackBlockedStreams = 7;
            o.MaxResponseHeadersLength = 3;
        })));

        using HttpResponseMessage response = await client.GetAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout);

        Assert.Equal("ok", await response.Content.ReadAsStringAsync());
        KestrelQuic.Http3.Frames.Http3Settings settings = await Assert.Single(server.Connections).ClientSettings.Task.WaitAsync(Timeout);
        Assert.Equal(1234, settings.QpackMaxTableCapacity);
        Assert.Equal(7, settings.QpackBlockedStreams);
        Assert.Equal(3 * 1024, settings.MaxFieldSectionSize);
    }

    [Fact]
    public async Task ExpectContinue_BodySentOnlyAfter100()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            Assert.Contains(("expect", "100-continue"), request.Headers);
            await request.SendHeadersAsync(100);
            long length = 0;
            await request.ReadBodyAsync(chunk =>
            {
                length += chunk.Length;
                return Task.CompletedTask;
            });
            await request.RespondAsync(200, length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        });

        // With a one-minute timeout the body can only leave because of the 100.
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions(o => o.Expect100ContinueTimeout = TimeSpan.FromMinutes(1))));
        using var message = new HttpRequestMessage(HttpMethod.Put, new Uri(server.BaseUri, "/upload")) { Content = new ByteArrayContent(new byte[100_000]) };
        message.Headers.ExpectContinue = true;

        using HttpResponseMessage response = await client.SendAsync(message).WaitAsync(Timeout);

        Assert.Equal("100000", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ExpectContinue_FinalErrorFirst_BodyNeverSent()
    {
        var bodyFrames = new TaskCompletionSource<(long Bytes, long? ResetCode)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            await request.RespondAsync(417, "no");
            long bytes = 0;
            try
            {
                await request.ReadBodyAsync(chunk =>
                {
                    bytes += chunk.Length;
                    return Task.CompletedTask;
                });
                bodyFrames.TrySetResult((bytes, null));
            }
            catch (QuicException e)
            {
                bodyFrames.TrySetResult((bytes, e.ApplicationErrorCode));
            }
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions(o => o.Expect100ContinueTimeout = TimeSpan.FromMinutes(1))));
        var content = new RecordingContent();
        using var message = new HttpRequestMessage(HttpMethod.Put, new Uri(server.BaseUri, "/upload")) { Content = content };
        message.Headers.ExpectContinue = true;

        using HttpResponseMessage response = await client.SendAsync(message).WaitAsync(Timeout);

        Assert.Equal(HttpStatusCode.ExpectationFailed, response.StatusCode);
        (long received, long? reset) = await bodyFrames.Task.WaitAsync(Timeout);
        Assert.Equal(0, received);
        Assert.Equal((long)Http3ErrorCode.RequestCancelled, reset);
        Assert.False(content.Serialized);
    }

    [Fact]
    public async Task ReservedFramesAndUnknownStreamTypes_AreIgnored()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(async request =>
        {
            // A reserved stream type (0x1f * 3 + 0x21) the client must ignore, with some content.
            await using (QuicStream unknown = await request.Connection.Quic.OpenOutboundStreamAsync(QuicStreamType.Unidirectional))
            {
                await unknown.WriteAsync(new byte[] { 0x40, 0x7e, 1, 2, 3 }, completeWrites: true);
            }

            var grease = new System.Buffers.ArrayBufferWriter<byte>();
            KestrelQuic.Http3.Frames.Http3FrameWriter.WriteReservedFrame(grease, 2, "ignore me"u8);
            await request.Stream.WriteAsync(grease.WrittenMemory);
            await request.SendHeadersAsync(200);
            await request.Stream.WriteAsync(grease.WrittenMemory);
            await request.SendDataAsync("body"u8.ToArray());
            await request.Stream.WriteAsync(grease.WrittenMemory, completeWrites: true);
        });
        using var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));

        Assert.Equal("body", await client.GetStringAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout));
    }

    [Fact]
    public async Task HandlerDispose_ClosesConnectionsWithNoError()
    {
        await using FakeH3Server server = await FakeH3Server.StartAsync(request => request.RespondAsync(200, "ok"));
        var client = new HttpClient(new ManagedHttp3Handler(FakeH3Server.ClientOptions()));
        Assert.Equal("ok", await client.GetStringAsync(new Uri(server.BaseUri, "/")).WaitAsync(Timeout));
        Assert.Equal((long)Http3StreamTypeControl, await server.Connections[0].ClientControlStreamType.Task.WaitAsync(Timeout));

        client.Dispose();

        QuicCloseReason reason = await server.Connections[0].Quic.Closed.WaitAsync(Timeout);
        Assert.True(reason.IsApplicationError);
        Assert.Equal((ulong)Http3ErrorCode.NoError, reason.ErrorCode);
    }

    private const long Http3StreamTypeControl = 0;

    private sealed class RecordingContent : HttpContent
    {
        public bool Serialized { get; private set; }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            Serialized = true;
            return stream.WriteAsync(new byte[1000], 0, 1000);
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 1000;
            return true;
        }
    }

    /// <summary>A deterministic, non-seekable byte stream of a given length (no buffering of the whole body).</summary>
    private sealed class PatternStream(long length, TimeSpan delayPerRead = default) : Stream
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public static byte[] Sha256(long length)
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            byte[] buffer = new byte[64 * 1024];
            for (long position = 0; position < length; position += buffer.Length)
            {
                int n = (int)Math.Min(buffer.Length, length - position);
                Fill(buffer.AsSpan(0, n), position);
                hash.AppendData(buffer, 0, n);
            }

            return hash.GetHashAndReset();
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (delayPerRead > TimeSpan.Zero)
            {
                await Task.Delay(delayPerRead, cancellationToken);
            }

            return Read(buffer.Span);
        }

        public override int Read(Span<byte> buffer)
        {
            int n = (int)Math.Min(buffer.Length, length - _position);
            Fill(buffer[..n], _position);
            _position += n;
            return n;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        private static void Fill(Span<byte> destination, long position)
        {
            for (int i = 0; i < destination.Length; i++)
            {
                long p = position + i;
                destination[i] = (byte)((p * 31) ^ (p >> 11));
            }
        }
    }
}
