using System.Buffers;

namespace KestrelQuic.Http;

/// <summary>
/// Buffers what is read from a QUIC stream for frame parsing: a pooled array that grows up to a limit (the largest
/// frame that must be seen whole). DATA payloads bypass it when the caller reads them straight into its own buffer.
/// </summary>
internal sealed class Http3StreamInput : IAsyncDisposable
{
    private readonly QuicStream _stream;
    private readonly int _maxSize;
    private byte[] _buffer;
    private int _start;
    private int _end;

    public Http3StreamInput(QuicStream stream, int initialSize, int maxSize)
    {
        _stream = stream;
        _maxSize = Math.Max(initialSize, maxSize);
        _buffer = ArrayPool<byte>.Shared.Rent(initialSize);
    }

    /// <summary>True once the peer's FIN was read.</summary>
    public bool IsCompleted { get; private set; }

    /// <summary>Bytes read and not yet consumed.</summary>
    public int BufferedLength => _end - _start;

    public ReadOnlySequence<byte> Buffered => new(_buffer, _start, _end - _start);

    public ReadOnlySpan<byte> BufferedSpan => _buffer.AsSpan(_start, _end - _start);

    /// <summary>Marks everything before <paramref name="remaining"/> (a slice of <see cref="Buffered"/>) as consumed.</summary>
    public void ConsumeTo(in ReadOnlySequence<byte> remaining) => _start = _end - (int)remaining.Length;

    public void Consume(int count) => _start += count;

    /// <summary>Copies up to <paramref name="destination"/>.Length buffered bytes out; returns how many.</summary>
    public int CopyTo(Span<byte> destination)
    {
        int n = Math.Min(destination.Length, _end - _start);
        _buffer.AsSpan(_start, n).CopyTo(destination);
        _start += n;
        return n;
    }

    /// <summary>Reads more bytes from the stream into the buffer; false at the end of the stream.</summary>
    public async ValueTask<bool> ReadMoreAsync(CancellationToken cancellationToken)
    {
        if (IsCompleted)
        {
            return false;
        }

        if (_start == _end)
        {
            _start = _end = 0;
        }
        else if (_end == _buffer.Length)
        {
            if (_start > 0)
            {
                _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
                _end -= _start;
                _start = 0;
            }
            else
            {
                if (_buffer.Length >= _maxSize)
                {
                    throw Http3Errors.Request(HttpRequestError.ResponseEnded, "A frame exceeds the size this client accepts.", (long)Http3.Http3ErrorCode.ExcessiveLoad);
                }

                byte[] larger = ArrayPool<byte>.Shared.Rent(Math.Min(_maxSize, _buffer.Length * 2));
                _buffer.AsSpan(0, _end).CopyTo(larger);
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = larger;
            }
        }

        int n = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
        if (n == 0)
        {
            IsCompleted = true;
            return false;
        }

        _end += n;
        return true;
    }

    /// <summary>Reads straight from the stream into <paramref name="destination"/> (only when nothing is buffered).</summary>
    public async ValueTask<int> ReadDirectAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (IsCompleted)
        {
            return 0;
        }

        int n = await _stream.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
        if (n == 0)
        {
            IsCompleted = true;
        }

        return n;
    }

    public ValueTask DisposeAsync()
    {
        byte[] buffer = Interlocked.Exchange(ref _buffer, []);
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return ValueTask.CompletedTask;
    }
}
