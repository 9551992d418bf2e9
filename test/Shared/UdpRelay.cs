using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Testing;

/// <summary>Impairments of one direction of a <see cref="UdpRelay"/>. Decisions come from the relay's seed.</summary>
internal sealed class RelayImpairments
{
    public double LossRate { get; set; }

    public double CorruptRate { get; set; }

    public double DuplicateRate { get; set; }

    /// <summary>Share of datagrams held back by <see cref="ReorderDelay"/> so that later ones overtake them.</summary>
    public double ReorderRate { get; set; }

    public TimeSpan ReorderDelay { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Delay added to every datagram.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Drop everything while set.</summary>
    public bool Blackhole { get; set; }

    /// <summary>
    /// Periodic blackhole: the link is down for <see cref="BlackholeDuration"/> at the start of every
    /// <see cref="BlackholePeriod"/>, counted from when the period is set.
    /// </summary>
    public TimeSpan BlackholePeriod
    {
        get;
        set
        {
            field = value;
            BlackholeStart = Environment.TickCount64;
        }
    }

    internal long BlackholeStart { get; private set; }

    public TimeSpan BlackholeDuration { get; set; }

    /// <summary>Called with the datagram's index in this direction (0-based) and its bytes; false drops it.</summary>
    public Func<long, byte[], bool>? Filter { get; set; }
}

/// <summary>Counters of one direction of a <see cref="UdpRelay"/>.</summary>
internal sealed class RelayCounters
{
    private long _datagramsIn, _bytesIn, _datagramsOut, _bytesOut, _dropped, _corrupted, _duplicated, _reordered;

    /// <summary>Datagrams and bytes received from the sender.</summary>
    public long DatagramsIn => Interlocked.Read(ref _datagramsIn);

    public long BytesIn => Interlocked.Read(ref _bytesIn);

    /// <summary>Datagrams and bytes forwarded to the receiver (duplicates included).</summary>
    public long DatagramsOut => Interlocked.Read(ref _datagramsOut);

    public long BytesOut => Interlocked.Read(ref _bytesOut);

    public long Dropped => Interlocked.Read(ref _dropped);

    public long Corrupted => Interlocked.Read(ref _corrupted);

    public long Duplicated => Interlocked.Read(ref _duplicated);

    public long Reordered => Interlocked.Read(ref _reordered);

    internal void In(int bytes)
    {
        Interlocked.Increment(ref _datagramsIn);
        Interlocked.Add(ref _bytesIn, bytes);
    }

    internal void Out(int bytes)
    {
        Interlocked.Increment(ref _datagramsOut);
        Interlocked.Add(ref _bytesOut, bytes);
    }

    internal void Drop() => Interlocked.Increment(ref _dropped);

    internal void Corrupt() => Interlocked.Increment(ref _corrupted);

    internal void Duplicate() => Interlocked.Increment(ref _duplicated);

    internal void Reorder() => Interlocked.Increment(ref _reordered);

    public override string ToString() =>
        $"{DatagramsIn} in ({BytesIn:N0} B), {DatagramsOut} out ({BytesOut:N0} B), dropped {Dropped}, corrupted {Corrupted}, duplicated {Duplicated}, reordered {Reordered}";
}

/// <summary>
/// A UDP relay for fault injection between a client and a server on real sockets. The client sends to
/// <see cref="LocalEndPoint"/>; the relay forwards to the server from its own socket and back. Each direction drops,
/// corrupts, duplicates, reorders, delays and blackholes datagrams with decisions drawn from a fixed seed, and counts
/// what went in and out. <see cref="Rebind"/> moves the server-facing socket to a new port (and optionally address),
/// which the server sees as a NAT rebinding of the client.
/// </summary>
internal sealed class UdpRelay : IAsyncDisposable
{
    private readonly IPEndPoint _server;
    private readonly Socket _front;
    private readonly Random _toServerRandom;
    private readonly Random _toClientRandom;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private readonly Lock _lock = new();
    private readonly Lock _orderLock = new();

    // The last in-order delayed send of each direction: a delay line keeps the order of what it carries (one timer
    // per datagram does not: their continuations race on the thread pool, and a server such as gtlsserver drops
    // 0-RTT packets that overtake the Initial).
    private Task _toServerTail = Task.CompletedTask;
    private Task _toClientTail = Task.CompletedTask;
    private Socket _back;
    private volatile IPEndPoint? _client;
    private long _toServerIndex;
    private long _toClientIndex;

    public UdpRelay(IPEndPoint server, int seed)
    {
        _server = server;
        _toServerRandom = new Random(seed);
        _toClientRandom = new Random(seed + 1);
        _front = Bind(new IPEndPoint(server.Address, 0));
        _back = Bind(new IPEndPoint(server.Address, 0));
        _loops.Add(FrontLoop());
        _loops.Add(BackLoop(_back));
    }

    /// <summary>Where the client sends.</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint)_front.LocalEndPoint!;

    /// <summary>The address the server currently sees the client at.</summary>
    public IPEndPoint ServerFacingEndPoint
    {
        get
        {
            lock (_lock)
            {
                return (IPEndPoint)_back.LocalEndPoint!;
            }
        }
    }

    public RelayImpairments ToServer { get; } = new();

    public RelayImpairments ToClient { get; } = new();

    public RelayCounters ToServerCounters { get; } = new();

    public RelayCounters ToClientCounters { get; } = new();

    /// <summary>
    /// NAT rebinding: later client datagrams reach the server from a new socket (a new port, on
    /// <paramref name="address"/> when given). Datagrams the server sends to the old address are lost, as behind a NAT.
    /// </summary>
    public IPEndPoint Rebind(IPAddress? address = null)
    {
        Socket next = Bind(new IPEndPoint(address ?? _server.Address, 0));
        Socket old;
        lock (_lock)
        {
            old = _back;
            _back = next;
            _loops.Add(BackLoop(next));
        }

        old.Dispose();
        return (IPEndPoint)next.LocalEndPoint!;
    }

    private static Socket Bind(IPEndPoint local)
    {
        var socket = new Socket(local.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.ReceiveBufferSize = 4 << 20;
        socket.SendBufferSize = 4 << 20;
        socket.Bind(local);
        return socket;
    }

    private async Task FrontLoop()
    {
        byte[] buffer = new byte[65536];
        EndPoint any = new IPEndPoint(_server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await _front.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested || e is ObjectDisposedException) return;
                continue; // ICMP port unreachable and the like
            }

            _client = (IPEndPoint)result.RemoteEndPoint;
            byte[] datagram = buffer.AsSpan(0, result.ReceivedBytes).ToArray();
            Forward(toServer: true, datagram);
        }
    }

    private async Task BackLoop(Socket socket)
    {
        byte[] buffer = new byte[65536];
        EndPoint any = new IPEndPoint(_server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested || e is ObjectDisposedException) return;
                continue;
            }

            lock (_lock)
            {
                if (socket != _back)
                {
                    return; // rebound: the old port is gone
                }
            }

            Forward(toServer: false, buffer.AsSpan(0, result.ReceivedBytes).ToArray());
        }
    }

    private void Forward(bool toServer, byte[] datagram)
    {
        RelayImpairments link = toServer ? ToServer : ToClient;
        RelayCounters counters = toServer ? ToServerCounters : ToClientCounters;
        Random random = toServer ? _toServerRandom : _toClientRandom;
        counters.In(datagram.Length);
        long index;
        double loss, corrupt, duplicate, reorder;
        int corruptAt, corruptBit;

        // Draw every decision for every datagram so that one impairment's setting does not shift another's sequence.
        // The lock matters only while a rebind briefly has two server-facing receive loops.
        lock (random)
        {
            index = toServer ? _toServerIndex++ : _toClientIndex++;
            loss = random.NextDouble();
            corrupt = random.NextDouble();
            duplicate = random.NextDouble();
            reorder = random.NextDouble();
            corruptAt = random.Next(datagram.Length);
            corruptBit = random.Next(8);
        }

        if (link.Blackhole || InBlackholeWindow(link) || loss < link.LossRate || link.Filter?.Invoke(index, datagram) == false)
        {
            counters.Drop();
            return;
        }

        if (corrupt < link.CorruptRate)
        {
            datagram[corruptAt] ^= (byte)(1 << corruptBit);
            counters.Corrupt();
        }

        TimeSpan delay = link.Delay;
        if (reorder < link.ReorderRate)
        {
            delay += link.ReorderDelay;
            counters.Reorder();
        }

        // Datagrams held back on purpose (reordering, duplicates) may be overtaken; the others keep their order.
        Send(toServer, datagram, delay, counters, keepOrder: delay == link.Delay);
        if (duplicate < link.DuplicateRate)
        {
            counters.Duplicate();
            Send(toServer, datagram, delay + TimeSpan.FromMilliseconds(1), counters, keepOrder: false);
        }
    }

    private bool InBlackholeWindow(RelayImpairments link)
    {
        if (link.BlackholePeriod <= TimeSpan.Zero)
        {
            return false;
        }

        long elapsed = Environment.TickCount64 - link.BlackholeStart;
        return elapsed % (long)link.BlackholePeriod.TotalMilliseconds < link.BlackholeDuration.TotalMilliseconds;
    }

    private void Send(bool toServer, byte[] datagram, TimeSpan delay, RelayCounters counters, bool keepOrder)
    {
        if (delay <= TimeSpan.Zero)
        {
            SendNow(toServer, datagram, counters);
            return;
        }

        Task due = Task.Delay(delay, _stop.Token);
        if (!keepOrder)
        {
            _ = due.ContinueWith(_ => SendNow(toServer, datagram, counters), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            return;
        }

        // After the previous in-order datagram of this direction: its delay started earlier, so this adds no wait
        // beyond timer jitter.
        lock (_orderLock)
        {
            ref Task tail = ref toServer ? ref _toServerTail : ref _toClientTail;
            tail = Task.WhenAll(tail, due).ContinueWith(_ => SendNow(toServer, datagram, counters), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        }
    }

    private void SendNow(bool toServer, byte[] datagram, RelayCounters counters)
    {
        try
        {
            if (toServer)
            {
                Socket back;
                lock (_lock)
                {
                    back = _back;
                }

                back.SendTo(datagram, _server);
            }
            else if (_client is IPEndPoint client)
            {
                _front.SendTo(datagram, client);
            }
            else
            {
                return;
            }

            counters.Out(datagram.Length);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The relay is a lossy link: a failed send is a lost datagram.
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _front.Dispose();
        lock (_lock)
        {
            _back.Dispose();
        }

        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException or TimeoutException)
        {
        }

        _stop.Dispose();
    }
}
