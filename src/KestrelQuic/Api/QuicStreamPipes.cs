using System.IO.Pipelines;

namespace KestrelQuic;

/// <summary>
/// The receiving half of a <see cref="QuicStream"/> as a <see cref="PipeReader"/>. Completing it before the peer's FIN
/// (or with an exception) stops the peer with STOP_SENDING and the connection's default stream error code.
/// </summary>
internal sealed class QuicStreamPipeReader : PipeReader
{
    private readonly QuicStream _stream;
    private readonly PipeReader _inner;

    public QuicStreamPipeReader(QuicStream stream)
    {
        _stream = stream;
        _inner = Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
    }

    public override void AdvanceTo(SequencePosition consumed) => _inner.AdvanceTo(consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => _inner.AdvanceTo(consumed, examined);

    public override void CancelPendingRead() => _inner.CancelPendingRead();

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) => _inner.ReadAsync(cancellationToken);

    public override bool TryRead(out ReadResult result) => _inner.TryRead(out result);

    public override void Complete(Exception? exception = null)
    {
        _inner.Complete(exception);
        if (!_stream.ReadsClosed.IsCompleted) _stream.Abort(QuicAbortDirection.Read, _stream.Connection.DefaultStreamErrorCode);
    }
}

/// <summary>
/// The sending half of a <see cref="QuicStream"/> as a <see cref="PipeWriter"/>. Completing it sends what is buffered
/// and the FIN; completing it with an exception resets the stream (RESET_STREAM with the connection's default stream
/// error code) and drops what was buffered.
/// </summary>
internal sealed class QuicStreamPipeWriter : PipeWriter
{
    private readonly QuicStream _stream;
    private readonly PipeWriter _inner;

    public QuicStreamPipeWriter(QuicStream stream)
    {
        _stream = stream;
        _inner = Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
    }

    public override bool CanGetUnflushedBytes => _inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => _inner.UnflushedBytes;

    public override void Advance(int bytes) => _inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => _inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => _inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => _inner.CancelPendingFlush();

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => _inner.FlushAsync(cancellationToken);

    public override void Complete(Exception? exception = null)
    {
        if (exception is not null) _stream.Abort(QuicAbortDirection.Write, _stream.Connection.DefaultStreamErrorCode);
        _inner.Complete(exception); // without an exception: writes what is buffered (an exception skips that)
        if (exception is null) _stream.CompleteWrites();
    }

    public override async ValueTask CompleteAsync(Exception? exception = null)
    {
        if (exception is not null) _stream.Abort(QuicAbortDirection.Write, _stream.Connection.DefaultStreamErrorCode);
        await _inner.CompleteAsync(exception).ConfigureAwait(false);
        if (exception is null) _stream.CompleteWrites();
    }
}
