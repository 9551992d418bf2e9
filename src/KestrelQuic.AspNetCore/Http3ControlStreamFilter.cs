namespace KestrelQuic.AspNetCore;

/// <summary>
/// The write side of Kestrel's HTTP/3 control stream, correcting one frame on its way out. Kestrel 10 starts a
/// graceful shutdown with GOAWAY(2^62-1), the value RFC 9114 §5.2 gives for CLIENTS; from a server the ID must be a
/// client-initiated bidirectional stream ID, and clients (nghttp3, Chromium) close the connection with H3_ID_ERROR,
/// losing the requests the GOAWAY meant to let finish. The filter follows the frame boundaries and sends the server
/// value, 2^62-4, instead. Other streams (a type other than the control stream's 0x00) pass through untouched.
/// </summary>
internal sealed class Http3ControlStreamFilter : Stream
{
    private const ulong GoAwayFrameType = 0x07;

    private readonly Stream _inner;
    private Part _part = Part.StreamType;
    private int _varintRemaining = -1;
    private ulong _varint;
    private ulong _frameType;
    private ulong _payloadRemaining;
    private ulong _payloadLength;
    private bool _payloadAllOnes;
    private bool _passThrough;

    public Http3ControlStreamFilter(Stream inner) => _inner = inner;

    private enum Part
    {
        StreamType,
        FrameType,
        FrameLength,
        Payload,
    }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_passThrough) return _inner.WriteAsync(buffer, cancellationToken);
        byte[]? patched = null;
        ReadOnlySpan<byte> span = buffer.Span;
        for (int i = 0; i < span.Length && !_passThrough; i++)
        {
            if (Consume(span[i]))
            {
                patched ??= buffer.ToArray();
                patched[i] = 0xfc; // 0x3fffffffffffffff -> 0x3ffffffffffffffc
            }
        }

        return _inner.WriteAsync(patched is null ? buffer : patched, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(ReadOnlySpan<byte> buffer) => WriteAsync(buffer.ToArray()).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Advances the parser by one byte; true when this byte is the last of a GOAWAY(2^62-1) payload.</summary>
    private bool Consume(byte b)
    {
        if (_part == Part.Payload)
        {
            _payloadRemaining--;
            bool goAway = _frameType == GoAwayFrameType && _payloadLength == 8;
            _payloadAllOnes &= b == 0xff;
            bool patch = goAway && _payloadRemaining == 0 && _payloadAllOnes;
            if (_payloadRemaining == 0) _part = Part.FrameType;
            return patch;
        }

        if (_varintRemaining < 0)
        {
            _varintRemaining = (1 << (b >> 6)) - 1;
            _varint = (ulong)(b & 0x3f);
        }
        else
        {
            _varint = (_varint << 8) | b;
            _varintRemaining--;
        }

        if (_varintRemaining > 0) return false;
        _varintRemaining = -1;
        switch (_part)
        {
            case Part.StreamType:
                _passThrough = _varint != 0x00; // not an HTTP/3 control stream
                _part = Part.FrameType;
                break;
            case Part.FrameType:
                _frameType = _varint;
                _part = Part.FrameLength;
                break;
            default:
                _payloadLength = _payloadRemaining = _varint;
                _payloadAllOnes = true;
                _part = _varint == 0 ? Part.FrameType : Part.Payload;
                break;
        }

        return false;
    }
}
