using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace KestrelQuic.Http.Connections;

/// <summary>
/// A QUIC stream as a <see cref="ConnectionContext"/>: <see cref="ConnectionContext.Transport"/> reads and writes the
/// stream; completing the output sends the FIN, completing the input early sends STOP_SENDING. Features:
/// <see cref="IStreamIdFeature"/>, <see cref="IStreamDirectionFeature"/>, <see cref="IProtocolErrorCodeFeature"/> and
/// <see cref="IStreamAbortFeature"/>.
/// </summary>
internal sealed class QuicStreamContext : ConnectionContext, IStreamIdFeature, IStreamDirectionFeature, IProtocolErrorCodeFeature, IStreamAbortFeature
{
    private readonly QuicStream _stream;
    private readonly QuicConnection _connection;
    private readonly long _defaultErrorCode;
    private readonly bool _ownsConnection;
    private readonly long _closeErrorCode;
    private readonly CancellationTokenSource _closed = new();
    private long _error = -1;
    private int _disposed;

    public QuicStreamContext(QuicStream stream, QuicConnection connection, long defaultErrorCode, bool ownsConnection, long closeErrorCode)
    {
        _stream = stream;
        _connection = connection;
        _defaultErrorCode = defaultErrorCode;
        _ownsConnection = ownsConnection;
        _closeErrorCode = closeErrorCode;
        ConnectionId = $"quic-{connection.Id}:{stream.Id}";
        LocalEndPoint = connection.LocalEndPoint;
        RemoteEndPoint = connection.RemoteEndPoint;
        ConnectionClosed = _closed.Token;
        Features = new FeatureCollection();
        Features.Set<IStreamIdFeature>(this);
        Features.Set<IStreamDirectionFeature>(this);
        Features.Set<IProtocolErrorCodeFeature>(this);
        Features.Set<IStreamAbortFeature>(this);
        CanRead = stream.CanRead;
        CanWrite = stream.CanWrite;
        PipeReader input = CanRead ? PipeReader.Create(new ReadHalf(this)) : new CompletedPipeReader();
        PipeWriter output = CanWrite ? PipeWriter.Create(new WriteHalf(stream)) : new CompletedPipeWriter();
        Transport = new DuplexPipe(input, output);
        _ = Task.WhenAll(CanRead ? stream.ReadsClosed : Task.CompletedTask, CanWrite ? stream.WritesClosed : Task.CompletedTask)
            .ContinueWith(static (_, s) => ((QuicStreamContext)s!).SignalClosed(), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public override string ConnectionId { get; set; }

    public override IFeatureCollection Features { get; }

    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

    public override IDuplexPipe Transport { get; set; }

    public long StreamId => _stream.Id;

    public bool CanRead { get; }

    public bool CanWrite { get; }

    /// <summary>The code used by aborts; -1 until set (then the factory's default stream error code).</summary>
    public long Error
    {
        get => _error;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, -1);
            _error = value;
        }
    }

    private long AbortCode => _error >= 0 ? _error : _defaultErrorCode;

    public override void Abort(ConnectionAbortedException abortReason) => _stream.Abort(QuicAbortDirection.Both, AbortCode);

    public void AbortRead(long errorCode, ConnectionAbortedException abortReason) => _stream.Abort(QuicAbortDirection.Read, errorCode);

    public void AbortWrite(long errorCode, ConnectionAbortedException abortReason) => _stream.Abort(QuicAbortDirection.Write, errorCode);

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await Transport.Input.CompleteAsync().ConfigureAwait(false);
        await Transport.Output.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        if (_ownsConnection)
        {
            await _connection.CloseAsync(_closeErrorCode).ConfigureAwait(false);
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        SignalClosed();
    }

    private void SignalClosed()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>The read side; disposing it before the end sends STOP_SENDING.</summary>
    private sealed class ReadHalf(QuicStreamContext owner) : Stream
    {
        private bool _finished;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            int n = await owner._stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            _finished |= n == 0 && !buffer.IsEmpty;
            return n;
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
            if (disposing && !_finished)
            {
                owner._stream.Abort(QuicAbortDirection.Read, owner.AbortCode);
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>The write side; disposing it sends the FIN.</summary>
    private sealed class WriteHalf(QuicStream stream) : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => stream.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            stream.WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => stream.WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                stream.CompleteWrites();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>Input of a send-only stream: always at its end.</summary>
    private sealed class CompletedPipeReader : PipeReader
    {
        public override void AdvanceTo(SequencePosition consumed)
        {
        }

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
        }

        public override void CancelPendingRead()
        {
        }

        public override void Complete(Exception? exception = null)
        {
        }

        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(new ReadResult(default, false, true));

        public override bool TryRead(out ReadResult result)
        {
            result = new ReadResult(default, false, true);
            return true;
        }
    }

    /// <summary>Output of a receive-only stream: writing is an error.</summary>
    private sealed class CompletedPipeWriter : PipeWriter
    {
        public override void Advance(int bytes) => throw new InvalidOperationException("This stream is receive-only.");

        public override void CancelPendingFlush()
        {
        }

        public override void Complete(Exception? exception = null)
        {
        }

        public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(new FlushResult(false, true));

        public override Memory<byte> GetMemory(int sizeHint = 0) => throw new InvalidOperationException("This stream is receive-only.");

        public override Span<byte> GetSpan(int sizeHint = 0) => throw new InvalidOperationException("This stream is receive-only.");
    }
}
