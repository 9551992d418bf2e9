using System.Net;

namespace KestrelQuic.Http;

/// <summary>The response body: DATA frames read lazily from the request stream as the caller reads.</summary>
internal sealed class Http3ResponseContent : HttpContent
{
    private readonly Http3ResponseStream _stream;
    private bool _consumed;

    public Http3ResponseContent(Http3ResponseStream stream) => _stream = stream;

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        await using Stream body = TakeStream();
        await body.CopyToAsync(stream, 64 * 1024, cancellationToken).ConfigureAwait(false);
    }

    protected override Task<Stream> CreateContentReadStreamAsync() => Task.FromResult(TakeStream());

    protected override Task<Stream> CreateContentReadStreamAsync(CancellationToken cancellationToken) => Task.FromResult(TakeStream());

    protected override Stream CreateContentReadStream(CancellationToken cancellationToken) => TakeStream();

    protected override bool TryComputeLength(out long length)
    {
        length = 0;
        return false;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stream.Dispose();
        }

        base.Dispose(disposing);
    }

    private Stream TakeStream()
    {
        if (_consumed)
        {
            throw new InvalidOperationException("The response content was already read.");
        }

        _consumed = true;
        return _stream;
    }
}

/// <summary>Read-only stream over the response body of one request.</summary>
internal sealed class Http3ResponseStream : Stream
{
    private readonly Http3RequestStream _request;
    private int _disposed;

    public Http3ResponseStream(Http3RequestStream request) => _request = request;

    public override bool CanRead => _disposed == 0;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return _request.ReadBodyAsync(buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _request.OnResponseDisposed();
        }

        base.Dispose(disposing);
    }
}

/// <summary>Write-only stream that frames the request body as DATA frames on the request stream.</summary>
internal sealed class Http3RequestBodyStream : Stream
{
    private readonly QuicStream _stream;
    private readonly Http3Qlog? _qlog;
    private readonly byte[] _header = new byte[Http3.Frames.Http3FrameWriter.MaxFrameHeaderLength];

    public Http3RequestBodyStream(QuicStream stream, Http3Qlog? qlog)
    {
        _stream = stream;
        _qlog = qlog;
    }

    public long BytesWritten { get; private set; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return;
        }

        int headerLength = Http3.Frames.Http3FrameWriter.WriteFrameHeader(_header, Http3.Frames.Http3FrameType.Data, buffer.Length);
        _qlog?.Frame(created: true, _stream.Id, Http3.Frames.Http3FrameType.Data, buffer.Length);
        await _stream.WriteAsync(_header.AsMemory(0, headerLength), cancellationToken).ConfigureAwait(false);
        await _stream.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        BytesWritten += buffer.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
