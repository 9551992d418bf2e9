using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace KestrelQuic.Tests.Api;

/// <summary>
/// A one-client UDP relay between a client and a server on loopback, standing in for a NAT or a slow network: it
/// can hold the server's datagrams back (so the client cannot finish its handshake until released) and change the
/// source port it uses towards the server (NAT rebinding), without either peer's cooperation.
/// </summary>
internal sealed class UdpRelay : IAsyncDisposable
{
    private readonly Socket _front;
    private readonly List<Socket> _backs = new();
    private readonly List<Task> _loops = new();
    private readonly ConcurrentQueue<byte[]> _held = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private volatile Socket _back;
    private volatile IPEndPoint? _client;
    private bool _holding;

    public UdpRelay(IPEndPoint server)
    {
        Server = server;
        _front = Bind();
        _back = Bind();
        _backs.Add(_back);
        _loops.Add(Task.Run(FrontLoopAsync));
        _loops.Add(Task.Run(() => BackLoopAsync(_back)));
    }

    /// <summary>Where client datagrams go (can be changed to point at another server).</summary>
    public IPEndPoint Server { get; set; }

    /// <summary>The address clients connect to.</summary>
    public IPEndPoint EndPoint => (IPEndPoint)_front.LocalEndPoint!;

    /// <summary>The address the server currently sees the client at.</summary>
    public IPEndPoint OutboundEndPoint => (IPEndPoint)_back.LocalEndPoint!;

    public long ClientToServer;

    public long ServerToClient;

    /// <summary>While set, copies of the client's datagrams are kept in <see cref="Recorded"/> (for replay attacks).</summary>
    public bool RecordClientDatagrams { get; set; }

    public ConcurrentQueue<byte[]> Recorded { get; } = new();

    /// <summary>When set, datagrams from any client address but the first one seen are dropped (a path that does not work).</summary>
    public bool DropFromNewClientAddresses { get; set; }

    public long DroppedFromNewClientAddresses;

    /// <summary>Keeps server datagrams back until <see cref="Release"/>.</summary>
    public void HoldServerToClient()
    {
        lock (_gate) _holding = true;
    }

    /// <summary>Forwards the held datagrams and stops holding.</summary>
    public void Release()
    {
        lock (_gate)
        {
            _holding = false;
            while (_held.TryDequeue(out byte[]? d)) SendToClient(d);
        }
    }

    /// <summary>NAT rebinding: later client datagrams reach the server from a new port. The old port still forwards replies.</summary>
    public void Rebind()
    {
        Socket back = Bind();
        lock (_gate)
        {
            _backs.Add(back);
            _loops.Add(Task.Run(() => BackLoopAsync(back)));
        }

        _back = back;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _front.Dispose();
        lock (_gate)
        {
            foreach (Socket s in _backs) s.Dispose();
        }

        try
        {
            await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }

        _stop.Dispose();
    }

    private static Socket Bind()
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        s.ReceiveBufferSize = 4 * 1024 * 1024;
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return s;
    }

    private async Task FrontLoopAsync()
    {
        var buffer = new byte[65536];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult r;
            try
            {
                r = await _front.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }

            var from = (IPEndPoint)r.RemoteEndPoint;
            if (DropFromNewClientAddresses && _client is not null && !from.Equals(_client))
            {
                Interlocked.Increment(ref DroppedFromNewClientAddresses);
                continue;
            }

            _client = from;
            if (RecordClientDatagrams) Recorded.Enqueue(buffer.AsSpan(0, r.ReceivedBytes).ToArray());
            Interlocked.Increment(ref ClientToServer);
            try
            {
                _back.SendTo(buffer.AsSpan(0, r.ReceivedBytes), SocketFlags.None, Server);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }
    }

    private async Task BackLoopAsync(Socket back)
    {
        var buffer = new byte[65536];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult r;
            try
            {
                r = await back.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }

            byte[] datagram = buffer.AsSpan(0, r.ReceivedBytes).ToArray();
            lock (_gate)
            {
                if (_holding)
                {
                    _held.Enqueue(datagram);
                    continue;
                }

                SendToClient(datagram);
            }
        }
    }

    private void SendToClient(byte[] datagram)
    {
        if (_client is not { } client) return;
        Interlocked.Increment(ref ServerToClient);
        try
        {
            _front.SendTo(datagram, SocketFlags.None, client);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }
}
