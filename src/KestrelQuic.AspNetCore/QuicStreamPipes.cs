using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;

namespace KestrelQuic.AspNetCore;

/// <summary>
/// Kestrel's view of a stream's receiving half: a <see cref="PipeReader"/> over the <see cref="QuicStream"/> that
/// reports completion together with the last data chunk (Kestrel then knows no body follows a HEADERS frame) and
/// turns the engine's exceptions into the connection exceptions Kestrel expects.
/// </summary>
internal sealed class QuicStreamPipeReader : PipeReader
{
    private readonly ManagedQuicStreamContext _owner;
    private readonly QuicStream _stream;
    private readonly PipeReader _inner;

    public QuicStreamPipeReader(ManagedQuicStreamContext owner, QuicStream stream)
    {
        _owner = owner;
        _stream = stream;
        _inner = Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ReadResult result;
        try
        {
            result = await _inner.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw _owner.MapException(e);
        }

        return WithFin(result);
    }

    public override bool TryRead(out ReadResult result)
    {
        try
        {
            if (!_inner.TryRead(out result)) return false;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw _owner.MapException(e);
        }

        result = WithFin(result);
        return true;
    }

    public override void AdvanceTo(SequencePosition consumed) => _inner.AdvanceTo(consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => _inner.AdvanceTo(consumed, examined);

    public override void CancelPendingRead() => _inner.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _inner.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => _inner.CompleteAsync(exception);

    // The FIN was consumed by the read that returned this data: everything is in the buffer already.
    private ReadResult WithFin(ReadResult result)
        => !result.IsCompleted && _stream.ReadsClosed.IsCompletedSuccessfully ? new ReadResult(result.Buffer, result.IsCanceled, isCompleted: true) : result;
}

/// <summary>
/// Kestrel's view of a stream's sending half: flushing hands the bytes to the engine (so data Kestrel flushed is in
/// the connection before it aborts or closes it), completing without error sends the FIN, completing with an error
/// resets the stream.
/// </summary>
internal sealed class QuicStreamPipeWriter : PipeWriter
{
    private const int SegmentSize = 32 * 1024;

    private readonly ManagedQuicStreamContext _owner;
    private readonly QuicStream _stream;
    private readonly PipeWriter _inner;
    private bool _completed;

    public QuicStreamPipeWriter(ManagedQuicStreamContext owner, QuicStream stream)
    {
        _owner = owner;
        _stream = stream;
        // Our only outbound unidirectional stream is Kestrel's control stream.
        Stream target = stream.Type == QuicStreamType.Unidirectional ? new Http3ControlStreamFilter(stream) : stream;
        // Each segment is one QuicStream write (one pass under the endpoint lock): segments of 32 KiB instead of the
        // default 4 KiB make a bulk response cost an eighth of the lock round trips.
        _inner = Create(target, new StreamPipeWriterOptions(minimumBufferSize: SegmentSize, leaveOpen: true));
    }

    public override bool CanGetUnflushedBytes => _inner.CanGetUnflushedBytes;

    public override long UnflushedBytes => _inner.UnflushedBytes;

    public override void Advance(int bytes) => _inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => _inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => _inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => _inner.CancelPendingFlush();

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _inner.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Exception mapped = _owner.MapException(e);
            // The peer reset the stream or the connection ended: like a pipe whose reader is gone, the flush reports
            // completion. Kestrel learns why from the stream's abort and closed notifications; an exception here is
            // logged by Kestrel as an unexpected error for every download a client cancels.
            if (mapped is ConnectionResetException or ConnectionAbortedException) return new FlushResult(isCanceled: false, isCompleted: true);
            throw mapped;
        }
    }

    /// <summary>Releases the buffers without sending anything more (the connection is closing).</summary>
    public void CompleteWithoutSending()
    {
        if (_completed) return;
        _completed = true;
        _inner.Complete(new ConnectionAbortedException("The connection is closing."));
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed) return;
        _completed = true;
        if (exception is null)
        {
            try
            {
                _inner.Complete();
            }
            catch (Exception)
            {
                // The stream was reset or the connection closed: nothing more can be sent anyway.
                _inner.Complete(new ConnectionAbortedException());
            }

            _owner.OnWritesCompleted();
        }
        else
        {
            _inner.Complete(exception);
            _owner.AbortWriteOnError();
        }
    }

    public override async ValueTask CompleteAsync(Exception? exception = null)
    {
        if (_completed) return;
        _completed = true;
        if (exception is null)
        {
            try
            {
                await _inner.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                await _inner.CompleteAsync(new ConnectionAbortedException()).ConfigureAwait(false);
            }

            _owner.OnWritesCompleted();
        }
        else
        {
            await _inner.CompleteAsync(exception).ConfigureAwait(false);
            _owner.AbortWriteOnError();
        }
    }
}
