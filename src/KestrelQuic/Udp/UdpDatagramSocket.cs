using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace KestrelQuic.Udp;

/// <summary>
/// One bound UDP socket: allocation-free receive into caller buffers and synchronous, non-blocking batched sends
/// that use UDP generic segmentation offload (GSO, Linux UDP_SEGMENT) when the kernel accepts it.
/// </summary>
/// <remarks>
/// Sends are serialized internally (the GSO segment size is per-socket state that must not change between
/// setting it and sending). Receives may be issued from one or more loops; each needs its own buffer and
/// <see cref="SocketAddress"/>.
/// </remarks>
internal sealed class UdpDatagramSocket : IDisposable
{
    /// <summary>Kernel UDP_MAX_SEGMENTS (64 before Linux 6.x raised it; 64 is safe everywhere).</summary>
    public const int MaxSegmentsPerSend = 64;

    /// <summary>Largest GSO send: the whole buffer goes out as one IP-sized super-packet (64 KiB less headers).</summary>
    public const int MaxBytesPerSend = 65_000;

    private const int SolIp = 0;          // SOL_IP / IPPROTO_IP
    private const int IpRecvErr = 11;     // IP_RECVERR
    private const int SolIpv6 = 41;       // SOL_IPV6 / IPPROTO_IPV6
    private const int Ipv6RecvErr = 25;   // IPV6_RECVERR
    private const int IpMtuDiscover = 10;   // IP_MTU_DISCOVER
    private const int Ipv6MtuDiscover = 23; // IPV6_MTU_DISCOVER
    private const int PmtuDiscProbe = 3;    // IP_PMTUDISC_PROBE: set DF, ignore the kernel's path MTU cache
    private const int SolUdp = 17;        // SOL_UDP / IPPROTO_UDP
    private const int UdpSegment = 103;   // UDP_SEGMENT (Linux 4.18+)
    private const int UdpGro = 104;       // UDP_GRO (Linux 5.0+)

    private readonly Socket _socket;
    private readonly Lock _sendLock = new();
    private bool _gsoEnabled;             // guarded by _sendLock
    private int _currentSegmentSize;      // UDP_SEGMENT as last set on the socket; guarded by _sendLock
    private long _datagramsSent;
    private long _bytesSent;
    private long _gsoSends;
    private long _sendErrors;
    private long _sendWaits;
    private long _datagramsReceived;
    private long _bytesReceived;
    private long _receiveErrors;
    private int _lastSendError;
    private int _disposed;

    /// <summary>
    /// AppContext switch that sends every datagram with its own sendmsg, without GSO: packet captures on loopback then
    /// see whole QUIC datagrams (with GSO they see the batch before segmentation, which Wireshark cannot split).
    /// For debugging; read when a socket is bound.
    /// </summary>
    public const string DisableGsoSwitch = "KestrelQuic.DisableGso";

    private UdpDatagramSocket(Socket socket, bool gsoSupported)
    {
        _socket = socket;
        GsoSupported = gsoSupported;
        _gsoEnabled = gsoSupported && !(AppContext.TryGetSwitch(DisableGsoSwitch, out bool disabled) && disabled);
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        ReceiveBufferSize = socket.ReceiveBufferSize;
        SendBufferSize = socket.SendBufferSize;
    }

    /// <summary>The bound address, with the actual port when bound to port 0.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The address family of the socket (InterNetworkV6 for dual-mode sockets).</summary>
    public AddressFamily AddressFamily => _socket.AddressFamily;

    /// <summary>Whether the socket accepts IPv4 peers on an IPv6 socket (bound to IPv6Any).</summary>
    public bool DualMode { get; private init; }

    /// <summary>SO_RCVBUF as read back from the kernel (Linux reports twice the request, capped by rmem_max).</summary>
    public int ReceiveBufferSize { get; }

    /// <summary>SO_SNDBUF as read back from the kernel (Linux reports twice the request, capped by wmem_max).</summary>
    public int SendBufferSize { get; }

    /// <summary>Whether UDP_SEGMENT could be set at bind time.</summary>
    public bool GsoSupported { get; }

    /// <summary>Whether batches currently go out as GSO sends (false after a permanent fallback).</summary>
    public bool GsoEnabled
    {
        get
        {
            lock (_sendLock)
            {
                return _gsoEnabled;
            }
        }
    }

    /// <summary>How long a send waits for socket buffer space before dropping (and counting) the datagram.</summary>
    public TimeSpan SendBlockTimeout { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The underlying socket, for options this type does not manage (e.g. IP_MTU_DISCOVER, ECN).</summary>
    internal Socket Socket => _socket;

    /// <summary>Datagrams handed to the kernel.</summary>
    public long DatagramsSent => Interlocked.Read(ref _datagramsSent);

    /// <summary>UDP payload bytes handed to the kernel.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Send calls that carried more than one datagram through GSO.</summary>
    public long GsoSends => Interlocked.Read(ref _gsoSends);

    /// <summary>Datagrams dropped because the send failed (including buffer-full waits that timed out).</summary>
    public long SendErrors => Interlocked.Read(ref _sendErrors);

    /// <summary>Times a send found the socket buffer full and had to wait.</summary>
    public long SendWaits => Interlocked.Read(ref _sendWaits);

    /// <summary>The error of the most recent failed send, or Success.</summary>
    public SocketError LastSendError => (SocketError)Volatile.Read(ref _lastSendError);

    /// <summary>Datagrams received.</summary>
    public long DatagramsReceived => Interlocked.Read(ref _datagramsReceived);

    /// <summary>UDP payload bytes received.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>Receive errors that were swallowed (ICMP-reported errors and the like).</summary>
    public long ReceiveErrors => Interlocked.Read(ref _receiveErrors);

    /// <summary>
    /// Creates and binds a UDP socket. An IPv6Any address gives a dual-mode socket that also serves IPv4 peers.
    /// </summary>
    /// <param name="localEndPoint">Address and port (0 for an ephemeral port).</param>
    /// <param name="receiveBufferSize">SO_RCVBUF request in bytes; 0 keeps the OS default.</param>
    /// <param name="sendBufferSize">SO_SNDBUF request in bytes; 0 keeps the OS default.</param>
    public static UdpDatagramSocket Bind(IPEndPoint localEndPoint, int receiveBufferSize, int sendBufferSize)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        ArgumentOutOfRangeException.ThrowIfNegative(receiveBufferSize);
        ArgumentOutOfRangeException.ThrowIfNegative(sendBufferSize);

        var socket = new Socket(localEndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            bool dualMode = localEndPoint.AddressFamily == AddressFamily.InterNetworkV6
                && localEndPoint.Address.Equals(IPAddress.IPv6Any);
            if (dualMode)
            {
                socket.DualMode = true;
            }

            if (receiveBufferSize > 0)
            {
                socket.ReceiveBufferSize = receiveBufferSize;
            }

            if (sendBufferSize > 0)
            {
                socket.SendBufferSize = sendBufferSize;
            }

            DisableIcmpErrorReporting(socket);
            SetDontFragment(socket);
            socket.Bind(localEndPoint);

            // Synchronous sends then return WouldBlock instead of parking the thread; receives stay async.
            socket.Blocking = false;
            return new UdpDatagramSocket(socket, ProbeGso(socket)) { DualMode = dualMode };
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A socket address sized for this socket's receives (reuse it for every receive of one loop).</summary>
    public SocketAddress CreateReceiveAddress() => new(_socket.AddressFamily);

    /// <summary>
    /// The destination address for <paramref name="remote"/> in this socket's family: IPv4 peers become
    /// IPv4-mapped IPv6 addresses on an IPv6 socket (allocates; cache it per peer).
    /// </summary>
    public SocketAddress CreateSocketAddress(IPEndPoint remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        if (_socket.AddressFamily == AddressFamily.InterNetworkV6 && remote.AddressFamily == AddressFamily.InterNetwork)
        {
            remote = new IPEndPoint(remote.Address.MapToIPv6(), remote.Port);
        }
        else if (_socket.AddressFamily == AddressFamily.InterNetwork && remote.Address.IsIPv4MappedToIPv6)
        {
            remote = new IPEndPoint(remote.Address.MapToIPv4(), remote.Port);
        }

        return remote.Serialize();
    }

    /// <summary>
    /// Receives one datagram into <paramref name="buffer"/> and its source into <paramref name="remoteAddress"/>
    /// (from <see cref="CreateReceiveAddress"/>). Errors that only say some earlier peer is unreachable are
    /// counted and skipped. A datagram longer than the buffer is silently truncated by the kernel, so the buffer
    /// should hold the largest acceptable datagram.
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, SocketAddress remoteAddress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteAddress);

        // A completed receive may have shrunk Size; the socket requires the full size for its family.
        remoteAddress.Size = remoteAddress.Buffer.Length;
        ValueTask<int> pending = _socket.ReceiveFromAsync(buffer, SocketFlags.None, remoteAddress, cancellationToken);
        if (pending.IsCompletedSuccessfully)
        {
            int received = pending.Result;
            CountReceived(received);
            return new ValueTask<int>(received);
        }

        return ReceiveSlowAsync(pending, buffer, remoteAddress, cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReceiveSlowAsync(
        ValueTask<int> pending, Memory<byte> buffer, SocketAddress remoteAddress, CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                int received = await pending.ConfigureAwait(false);
                CountReceived(received);
                return received;
            }
            catch (SocketException e) when (IsPeerReportedError(e.SocketErrorCode))
            {
                // An ICMP error about some earlier destination (or a truncation report): not fatal to the endpoint.
                Interlocked.Increment(ref _receiveErrors);
            }

            remoteAddress.Size = remoteAddress.Buffer.Length;
            pending = _socket.ReceiveFromAsync(buffer, SocketFlags.None, remoteAddress, cancellationToken);
        }
    }

    /// <summary>
    /// Sends <paramref name="contiguousSegments"/> as datagrams of <paramref name="segmentSize"/> bytes each
    /// (the last one may be shorter) to one destination: one GSO send per up to 64 segments / 65,000 bytes, or
    /// one sendto per datagram without GSO. Failures are counted (<see cref="SendErrors"/>), never thrown,
    /// except for a disposed socket.
    /// </summary>
    public void Send(ReadOnlySpan<byte> contiguousSegments, int segmentSize, SocketAddress destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 1);
        if (contiguousSegments.IsEmpty)
        {
            return;
        }

        lock (_sendLock)
        {
            if (contiguousSegments.Length <= segmentSize)
            {
                SendOne(contiguousSegments, destination);
            }
            else if (_gsoEnabled && segmentSize <= MaxBytesPerSend / 2)
            {
                SendSegmented(contiguousSegments, segmentSize, destination);
            }
            else
            {
                SendEach(contiguousSegments, segmentSize, destination);
            }
        }
    }

    /// <summary>
    /// Asks the kernel to hand over trains of equal-sized datagrams from one sender as one buffer (UDP GRO); the
    /// receiver must then read the segment size from each message's control data. False where unsupported.
    /// </summary>
    internal bool TryEnableGro()
    {
        if (!OperatingSystem.IsLinux()) return false;
        Span<byte> value = stackalloc byte[sizeof(int)];
        MemoryMarshal.Write(value, 1);
        try
        {
            _socket.SetRawSocketOption(SolUdp, UdpGro, value);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Counts datagrams taken by a receive path that bypasses <see cref="ReceiveAsync"/>.</summary>
    internal void CountReceivedBatch(int datagrams, long bytes)
    {
        Interlocked.Add(ref _datagramsReceived, datagrams);
        Interlocked.Add(ref _bytesReceived, bytes);
    }

    /// <summary>Turns GSO off for good (tests use it to exercise the one-sendto-per-datagram path).</summary>
    internal void DisableGso()
    {
        lock (_sendLock)
        {
            DisableGsoLocked();
        }
    }

    /// <summary>
    /// Test hook: turns Linux IP_RECVERR / IPV6_RECVERR on, so ICMP errors surface on the next send or receive
    /// (the situation the error handling exists for; <see cref="Bind"/> turns them off).
    /// </summary>
    internal void SetIcmpErrorReporting(bool enabled)
    {
        Span<byte> value = stackalloc byte[sizeof(int)];
        MemoryMarshal.Write(value, enabled ? 1 : 0);
        _socket.SetRawSocketOption(SolIp, IpRecvErr, value);
        if (_socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            _socket.SetRawSocketOption(SolIpv6, Ipv6RecvErr, value);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _socket.Dispose();
        }
    }

    private void SendSegmented(ReadOnlySpan<byte> data, int segmentSize, SocketAddress destination)
    {
        int maxChunk = Math.Min(MaxSegmentsPerSend, MaxBytesPerSend / segmentSize) * segmentSize;
        while (!data.IsEmpty)
        {
            ReadOnlySpan<byte> chunk = data[..Math.Min(data.Length, maxChunk)];
            data = data[chunk.Length..];
            int segments = (chunk.Length + segmentSize - 1) / segmentSize;
            if (segments == 1)
            {
                SendOne(chunk, destination);
                continue;
            }

            if (!_gsoEnabled || !TrySetSegmentSize(segmentSize))
            {
                SendEach(chunk, segmentSize, destination);
                continue;
            }

            SocketError error = SendRaw(chunk, destination);
            if (error == SocketError.Success)
            {
                Interlocked.Increment(ref _gsoSends);
                CountSent(segments, chunk.Length);
            }
            else if (IsGsoRejection(error))
            {
                // Kernel or device refused the segmented send. Resend one by one; if that gets through, GSO was
                // the problem and stays off. If every datagram fails too, the datagrams or path are at fault.
                RecordSendError(error);
                TrySetSegmentSize(0);
                int sent = SendEach(chunk, segmentSize, destination);
                if (sent > 0)
                {
                    DisableGsoLocked();
                }
            }
            else
            {
                Dropped(segments, error);
            }
        }
    }

    /// <summary>One sendto per datagram; returns how many went out.</summary>
    private int SendEach(ReadOnlySpan<byte> data, int segmentSize, SocketAddress destination)
    {
        int sent = 0;
        while (!data.IsEmpty)
        {
            ReadOnlySpan<byte> datagram = data[..Math.Min(data.Length, segmentSize)];
            data = data[datagram.Length..];
            if (SendOne(datagram, destination))
            {
                sent++;
            }
        }

        return sent;
    }

    private bool SendOne(ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        // With UDP_SEGMENT set, the kernel would split anything longer than it.
        if (_currentSegmentSize != 0 && datagram.Length > _currentSegmentSize)
        {
            TrySetSegmentSize(0);
        }

        SocketError error = SendRaw(datagram, destination);
        if (error == SocketError.InvalidArgument && _currentSegmentSize != 0 && TrySetSegmentSize(0))
        {
            // A segment size left over from a batch to another route may exceed this route's MTU (EINVAL).
            error = SendRaw(datagram, destination);
        }

        if (error == SocketError.Success)
        {
            CountSent(1, datagram.Length);
            return true;
        }

        Dropped(1, error);
        return false;
    }

    /// <summary>One sendto, waiting for buffer space up to <see cref="SendBlockTimeout"/>.</summary>
    private SocketError SendRaw(ReadOnlySpan<byte> payload, SocketAddress destination)
    {
        long deadline = 0;
        bool retriedStaleError = false;
        while (true)
        {
            SocketError error;
            try
            {
                _socket.SendTo(payload, SocketFlags.None, destination);
                return SocketError.Success;
            }
            catch (SocketException e)
            {
                error = e.SocketErrorCode;
            }

            if (error == SocketError.WouldBlock)
            {
                Interlocked.Increment(ref _sendWaits);
                long now = Environment.TickCount64;
                if (deadline == 0)
                {
                    deadline = now + (long)SendBlockTimeout.TotalMilliseconds;
                }

                if (now >= deadline)
                {
                    return error;
                }

                _socket.Poll(TimeSpan.FromMilliseconds(Math.Min(deadline - now, 10)), SelectMode.SelectWrite);
                continue;
            }

            if (!retriedStaleError && IsIcmpError(error))
            {
                // A pending ICMP error about an earlier datagram is reported instead of sending this one.
                retriedStaleError = true;
                continue;
            }

            return error;
        }
    }

    private bool TrySetSegmentSize(int segmentSize)
    {
        if (_currentSegmentSize == segmentSize)
        {
            return true;
        }

        try
        {
            SetSegmentSize(_socket, segmentSize);
            _currentSegmentSize = segmentSize;
            return true;
        }
        catch (SocketException)
        {
            _gsoEnabled = false;
            return false;
        }
    }

    private void DisableGsoLocked()
    {
        _gsoEnabled = false;
        if (_currentSegmentSize != 0)
        {
            try
            {
                SetSegmentSize(_socket, 0);
                _currentSegmentSize = 0;
            }
            catch (SocketException)
            {
                // Nothing else to do: single sends retry after EINVAL anyway.
            }
        }
    }

    private static void SetSegmentSize(Socket socket, int segmentSize)
    {
        Span<byte> value = stackalloc byte[sizeof(int)];
        MemoryMarshal.Write(value, segmentSize);
        socket.SetRawSocketOption(SolUdp, UdpSegment, value);
    }

    private static bool ProbeGso(Socket socket)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            // Setting 0 (no segmentation) succeeds exactly when the kernel knows UDP_SEGMENT.
            SetSegmentSize(socket, 0);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// With IP_RECVERR off (the Linux default, made explicit here), ICMP errors are never reported on an
    /// unconnected UDP socket. With it on, each one fails the next send or receive, and its error-queue entry is
    /// charged to the receive buffer until read with MSG_ERRQUEUE, which nothing here does.
    /// </summary>
    private static void DisableIcmpErrorReporting(Socket socket)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        Span<byte> zero = stackalloc byte[sizeof(int)];
        zero.Clear();
        try
        {
            // SOL_IP applies to IPv6 sockets too (IPv4 traffic of a dual-mode socket).
            socket.SetRawSocketOption(SolIp, IpRecvErr, zero);
            if (socket.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.SetRawSocketOption(SolIpv6, Ipv6RecvErr, zero);
            }
        }
        catch (SocketException)
        {
            // Best effort: the receive and send paths tolerate these errors anyway.
        }
    }

    /// <summary>
    /// QUIC packets must not be fragmented (RFC 9000 §14): set DF, and let the engine's DPLPMTUD (§14.3) find the
    /// path MTU instead of the kernel's ICMP-driven cache, which an attacker could poison with forged ICMP.
    /// </summary>
    private static void SetDontFragment(Socket socket)
    {
        if (!OperatingSystem.IsLinux())
        {
            try
            {
                if (socket.AddressFamily == AddressFamily.InterNetwork)
                {
                    socket.DontFragment = true;
                }
            }
            catch (SocketException)
            {
                // Best effort.
            }

            return;
        }

        Span<byte> value = stackalloc byte[sizeof(int)];
        MemoryMarshal.Write(value, PmtuDiscProbe);
        try
        {
            // SOL_IP applies to the IPv4 traffic of a dual-mode socket too.
            socket.SetRawSocketOption(SolIp, IpMtuDiscover, value);
            if (socket.AddressFamily == AddressFamily.InterNetworkV6)
            {
                socket.SetRawSocketOption(SolIpv6, Ipv6MtuDiscover, value);
            }
        }
        catch (SocketException)
        {
            // Best effort: without DF, oversized probes may get fragmented and succeed; paths still work.
        }
    }

    private static bool IsGsoRejection(SocketError error) => error is
        SocketError.InvalidArgument          // EINVAL: segment too large for the route, checksum offload off, ...
        or SocketError.SocketError           // EIO (no dedicated SocketError): device cannot segment
        or SocketError.OperationNotSupported
        or SocketError.ProtocolOption
        or SocketError.MessageSize;

    /// <summary>ICMP-reported errors about some destination: they fail one call, the socket stays usable.</summary>
    private static bool IsIcmpError(SocketError error) => error is
        SocketError.ConnectionRefused        // port unreachable (Linux)
        or SocketError.ConnectionReset       // port unreachable (Windows)
        or SocketError.HostUnreachable
        or SocketError.NetworkUnreachable
        or SocketError.HostDown;

    /// <summary>Receive errors to count and skip rather than end the receive loop with.</summary>
    private static bool IsPeerReportedError(SocketError error) =>
        IsIcmpError(error)
        || error is SocketError.MessageSize  // datagram truncated (Windows)
            or SocketError.NoBufferSpaceAvailable;

    private void CountReceived(int bytes)
    {
        Interlocked.Increment(ref _datagramsReceived);
        Interlocked.Add(ref _bytesReceived, bytes);
    }

    private void CountSent(int datagrams, int bytes)
    {
        Interlocked.Add(ref _datagramsSent, datagrams);
        Interlocked.Add(ref _bytesSent, bytes);
    }

    private void Dropped(int datagrams, SocketError error)
    {
        Interlocked.Add(ref _sendErrors, datagrams);
        RecordSendError(error);
    }

    private void RecordSendError(SocketError error) => Volatile.Write(ref _lastSendError, (int)error);
}
