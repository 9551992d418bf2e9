using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace KestrelQuic.Udp;

/// <summary>
/// Linux receive path for a dedicated thread: <c>recvmmsg</c> takes up to <see cref="Capacity"/> datagrams per
/// system call, and UDP GRO lets the kernel hand over a train of equal-sized datagrams from one sender (what a GSO
/// send produces) as one buffer plus a segment size instead of splitting it. The thread sleeps in <c>poll</c>, so a
/// datagram wakes it directly: no epoll thread and no thread-pool hop per wake-up. Not thread-safe: one per thread.
/// </summary>
internal sealed unsafe partial class UdpBatchReceiver : IDisposable
{
    /// <summary>A slot holds the largest UDP payload: with GRO one message is a whole train of segments.</summary>
    private const int SlotSize = 65_536;
    private const int SolUdp = 17;          // SOL_UDP
    private const int UdpGro = 104;         // UDP_GRO (Linux 5.0+)
    private const int MsgDontWait = 0x40;   // MSG_DONTWAIT
    private const int MsgTrunc = 0x20;      // MSG_TRUNC
    private const short PollIn = 0x1;       // POLLIN
    private const int EAgain = 11;
    private const int EIntr = 4;
    private const int ControlSize = 64;     // room for one UDP_GRO cmsg (16-byte header + int), aligned

    private readonly UdpDatagramSocket _socket;
    private readonly SafeHandle _handle;
    private readonly int _fd;
    private readonly byte* _buffers;
    private readonly byte* _control;
    private readonly MessageHeaderWithLength* _messages;
    private readonly IoVector* _vectors;
    private readonly SocketAddress[] _addresses;
    private readonly MemoryHandle[] _addressPins;
    private bool _handleReferenced;
    private bool _disposed;

    private UdpBatchReceiver(UdpDatagramSocket socket, int capacity, bool gro)
    {
        _socket = socket;
        Capacity = capacity;
        GroEnabled = gro;
        _handle = socket.Socket.SafeHandle;
        _handle.DangerousAddRef(ref _handleReferenced); // the descriptor cannot be closed (and reused) under us
        _fd = (int)_handle.DangerousGetHandle();
        _buffers = (byte*)NativeMemory.AlignedAlloc((nuint)(capacity * SlotSize), 64);
        _control = (byte*)NativeMemory.AllocZeroed((nuint)(capacity * ControlSize));
        _messages = (MessageHeaderWithLength*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(MessageHeaderWithLength)));
        _vectors = (IoVector*)NativeMemory.AllocZeroed((nuint)(capacity * sizeof(IoVector)));
        _addresses = new SocketAddress[capacity];
        _addressPins = new MemoryHandle[capacity];
        for (int i = 0; i < capacity; i++)
        {
            _addresses[i] = socket.CreateReceiveAddress();
            _addressPins[i] = _addresses[i].Buffer.Pin();
            _vectors[i] = new IoVector { Base = _buffers + ((long)i * SlotSize), Length = SlotSize };
        }
    }

    /// <summary>Datagrams (or GRO trains) one <see cref="Receive"/> can return.</summary>
    public int Capacity { get; }

    /// <summary>Whether the kernel accepted UDP_GRO on this socket.</summary>
    public bool GroEnabled { get; }

    /// <summary>
    /// A receiver for <paramref name="socket"/>, or null where this path is not available (not Linux, or
    /// <c>recvmmsg</c> missing): the caller then keeps the portable asynchronous receive loop.
    /// </summary>
    public static UdpBatchReceiver? TryCreate(UdpDatagramSocket socket, int capacity)
    {
        if (!OperatingSystem.IsLinux() || (!RuntimeInformation.ProcessArchitecture.Equals(Architecture.X64) && !RuntimeInformation.ProcessArchitecture.Equals(Architecture.Arm64)))
        {
            return null; // the structure layouts below are the LP64 ones
        }

        bool gro = socket.TryEnableGro();
        try
        {
            return new UdpBatchReceiver(socket, capacity, gro);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException or ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>
    /// Takes what the socket has queued, without waiting: the number of messages (0 when nothing is queued), or -1
    /// once the socket is closed. Each message is a datagram or, with GRO, a train of segments (see <see cref="GetMessage"/>).
    /// </summary>
    public int Receive()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (int i = 0; i < Capacity; i++)
        {
            ref MessageHeaderWithLength m = ref _messages[i];
            m.Header.Name = _addressPins[i].Pointer;
            m.Header.NameLength = (uint)_addresses[i].Buffer.Length;
            m.Header.Vectors = _vectors + i;
            m.Header.VectorCount = 1;
            m.Header.Control = GroEnabled ? _control + ((long)i * ControlSize) : null;
            m.Header.ControlLength = GroEnabled ? (nuint)ControlSize : 0;
            m.Header.Flags = 0;
            m.Length = 0;
        }

        while (true)
        {
            int n = recvmmsg(_fd, _messages, (uint)Capacity, MsgDontWait, null);
            if (n >= 0)
            {
                // recvmmsg returns 0 only after a shutdown (a UDP socket has no end of stream).
                return n == 0 ? -1 : n;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno == EAgain) return 0;
            if (errno == EIntr) continue;
            return IsTransient(errno) ? 0 : -1;
        }
    }

    /// <summary>
    /// Message <paramref name="index"/> of the last <see cref="Receive"/>: its bytes, sender and segment size (the
    /// length of every datagram in it but the last, which may be shorter). False for a truncated message (dropped).
    /// </summary>
    public bool GetMessage(int index, out Span<byte> data, out SocketAddress source, out int segmentSize)
    {
        ref MessageHeaderWithLength m = ref _messages[index];
        int length = (int)m.Length;
        data = new Span<byte>(_buffers + ((long)index * SlotSize), length);
        source = _addresses[index];
        source.Size = (int)m.Header.NameLength;
        segmentSize = length;
        if ((m.Header.Flags & MsgTrunc) != 0) return false;
        if (GroEnabled && m.Header.ControlLength >= (nuint)sizeof(ControlMessageHeader))
        {
            var cmsg = (ControlMessageHeader*)m.Header.Control;
            if (cmsg->Level == SolUdp && cmsg->Type == UdpGro && cmsg->Length >= (nuint)(sizeof(ControlMessageHeader) + sizeof(int)))
            {
                int gso = *(int*)(cmsg + 1);
                if (gso > 0 && gso < length) segmentSize = gso;
            }
        }

        return true;
    }

    /// <summary>Sleeps until the socket is readable or <paramref name="timeoutMilliseconds"/> pass.</summary>
    public void WaitReadable(int timeoutMilliseconds)
    {
        var fds = new PollDescriptor { Fd = _fd, Events = PollIn };
        _ = poll(&fds, 1, timeoutMilliseconds);
    }

    /// <summary>Wakes a thread in <see cref="WaitReadable"/> or <see cref="Receive"/> for good (before disposing the socket).</summary>
    public static void Shutdown(UdpDatagramSocket socket)
    {
        try
        {
            socket.Socket.Shutdown(SocketShutdown.Receive); // ENOTCONN on UDP, but pollers get POLLHUP
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (MemoryHandle pin in _addressPins) pin.Dispose();
        NativeMemory.AlignedFree(_buffers);
        NativeMemory.Free(_control);
        NativeMemory.Free(_messages);
        NativeMemory.Free(_vectors);
        if (_handleReferenced) _handle.DangerousRelease();
    }

    // ECONNREFUSED and friends (ICMP reports, off by default), ENOBUFS, ENOMEM: the socket stays usable.
    private static bool IsTransient(int errno) => errno is 111 or 113 or 101 or 112 or 105 or 12 or 90;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int recvmmsg(int fd, MessageHeaderWithLength* messages, uint count, int flags, void* timeout);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(PollDescriptor* fds, nuint count, int timeout);

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vectors;
        public nuint VectorCount;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeaderWithLength
    {
        public MessageHeader Header;
        public uint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ControlMessageHeader
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short Revents;
    }
}
