using System.Buffers;
using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Udp;

/// <summary>
/// Collects datagrams for one destination in a pooled contiguous buffer, laid out as a GSO batch (equal-sized
/// segments, the last one possibly shorter), and hands them to <see cref="UdpDatagramSocket.Send"/> in one call.
/// Callers write packets straight into the buffer: <see cref="GetSlot"/>, write, <see cref="Commit"/>.
/// </summary>
/// <remarks>
/// The pending batch is sent when the next slot is for another destination, when the previous datagram was
/// shorter than the segment size (it ends the batch), when a longer datagram is committed after shorter ones,
/// when the batch holds 64 datagrams or the buffer has no room left, and on <see cref="Flush"/>.
/// Not thread-safe: one builder per sending loop.
/// </remarks>
internal sealed class SendBatchBuilder : IDisposable
{
    private readonly UdpDatagramSocket _socket;
    private readonly int _capacity;
    private byte[]? _buffer;
    private SocketAddress _destination;
    private int _start;           // first byte of the pending batch
    private int _end;             // one past its last committed byte
    private int _count;
    private int _segmentSize;
    private bool _closed;         // a short datagram ended the batch
    private int _slotOffset = -1; // open slot, or -1
    private int _slotSize;

    /// <param name="socket">The socket that batches are sent on.</param>
    /// <param name="maxDatagramSize">Largest datagram a slot may hold.</param>
    public SendBatchBuilder(UdpDatagramSocket socket, int maxDatagramSize)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxDatagramSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxDatagramSize, ushort.MaxValue);
        _socket = socket;
        MaxDatagramSize = maxDatagramSize;

        // One batch is one GSO send: at most 64 segments and 65,000 bytes (but always room for one datagram).
        _capacity = Math.Max(
            maxDatagramSize,
            (int)Math.Min((long)UdpDatagramSocket.MaxSegmentsPerSend * maxDatagramSize, UdpDatagramSocket.MaxBytesPerSend));
        _buffer = ArrayPool<byte>.Shared.Rent(_capacity);
        _destination = new SocketAddress(AddressFamily.InterNetworkV6, SocketAddressHelpers.MaxIPAddressSize);
    }

    /// <summary>Largest datagram a slot may hold.</summary>
    public int MaxDatagramSize { get; }

    /// <summary>Datagrams committed and not yet sent.</summary>
    public int PendingDatagrams => _count;

    /// <summary>Bytes committed and not yet sent.</summary>
    public int PendingBytes => _end - _start;

    /// <summary>Batches handed to the socket so far.</summary>
    public long BatchesSent { get; private set; }

    /// <summary>
    /// Space for the next datagram to <paramref name="destination"/>, valid until <see cref="Commit"/>,
    /// the next <see cref="GetSlot"/> (which abandons an uncommitted slot) or <see cref="Flush"/>.
    /// May first send the pending batch. The destination is copied, so the caller may reuse its object.
    /// </summary>
    public Span<byte> GetSlot(SocketAddress destination, int maxSize)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSize, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxSize, MaxDatagramSize);
        byte[] buffer = _buffer ?? throw new ObjectDisposedException(nameof(SendBatchBuilder));

        if (_count > 0
            && (_closed
                || _count == UdpDatagramSocket.MaxSegmentsPerSend
                || _capacity - _end < maxSize
                || !SocketAddressHelpers.ContentEquals(_destination, destination)))
        {
            Flush();
        }

        if (_count == 0)
        {
            SetDestination(destination);
        }

        _slotOffset = _end;
        _slotSize = maxSize;
        return buffer.AsSpan(_end, maxSize);
    }

    /// <summary>
    /// Adds the first <paramref name="length"/> bytes of the open slot as a datagram; 0 abandons the slot.
    /// </summary>
    public void Commit(int length)
    {
        if (_slotOffset < 0)
        {
            throw new InvalidOperationException("No slot is open.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, _slotSize);
        int offset = _slotOffset;
        _slotOffset = -1;
        if (length == 0)
        {
            return;
        }

        if (_count > 0 && length > _segmentSize)
        {
            // Segments before the last must all be equal, so a longer one cannot join: send the pending ones and
            // let this datagram, where it lies, start the next batch (no copy).
            SendPending();
            _start = offset;
            _count = 0;
        }

        if (_count == 0)
        {
            _segmentSize = length;
            _closed = false;
        }
        else if (length < _segmentSize)
        {
            _closed = true;
        }

        _end = offset + length;
        _count++;
    }

    /// <summary>Sends the pending batch, if any, and abandons an open slot.</summary>
    public void Flush()
    {
        _slotOffset = -1;
        if (_count > 0)
        {
            try
            {
                SendPending();
            }
            finally
            {
                _start = 0;
                _end = 0;
                _count = 0;
                _closed = false;
            }
        }
    }

    /// <summary>Returns the buffer to the pool. Pending datagrams are discarded: call <see cref="Flush"/> first.</summary>
    public void Dispose()
    {
        byte[]? buffer = _buffer;
        _buffer = null;
        _count = 0;
        _slotOffset = -1;
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void SendPending()
    {
        BatchesSent++;
        _socket.Send(_buffer.AsSpan(_start, _end - _start), _segmentSize, _destination);
    }

    private void SetDestination(SocketAddress destination)
    {
        if (destination.Size > _destination.Buffer.Length)
        {
            _destination = new SocketAddress(destination.Family, destination.Size); // not an IP address: rare
        }

        SocketAddressHelpers.CopyTo(destination, _destination);
    }
}
