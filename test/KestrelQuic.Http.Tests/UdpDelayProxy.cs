using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// A loopback UDP relay that delays every datagram by a fixed time each way, so that a handshake takes real round
/// trips (on bare loopback it completes before a client can write anything, and 0-RTT would never be observable).
/// Order is preserved in each direction. One client at a time.
/// </summary>
internal sealed class UdpDelayProxy : IAsyncDisposable
{
    private readonly Socket _front = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly Socket _back = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
    private readonly IPEndPoint _server;
    private readonly TimeSpan _delay;
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<(long Due, byte[] Datagram)> _toServer = Channel.CreateUnbounded<(long, byte[])>();
    private readonly Channel<(long Due, byte[] Datagram)> _toClient = Channel.CreateUnbounded<(long, byte[])>();
    private readonly Task[] _loops;
    private EndPoint? _client;

    public UdpDelayProxy(IPEndPoint server, TimeSpan delay)
    {
        _server = server;
        _delay = delay;
        _front.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _back.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _loops =
        [
            Task.Run(ForwardAsync), Task.Run(BackwardAsync),
            Task.Run(() => SendInOrderAsync(_toServer.Reader, _back, () => _server)),
            Task.Run(() => SendInOrderAsync(_toClient.Reader, _front, () => _client)),
        ];
    }

    public int Port => ((IPEndPoint)_front.LocalEndPoint!).Port;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _front.Dispose();
        _back.Dispose();
        await Task.WhenAll(_loops).ContinueWith(_ => { }, TaskScheduler.Default);
        _stop.Dispose();
    }

    private async Task ForwardAsync()
    {
        byte[] buffer = new byte[65536];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result = await _front.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            _client = result.RemoteEndPoint;
            byte[] datagram = buffer.AsSpan(0, result.ReceivedBytes).ToArray();
            _toServer.Writer.TryWrite((Environment.TickCount64 + (long)_delay.TotalMilliseconds, datagram));
        }
    }

    private async Task BackwardAsync()
    {
        byte[] buffer = new byte[65536];
        EndPoint any = new IPEndPoint(IPAddress.Any, 0);
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result = await _back.ReceiveFromAsync(buffer, SocketFlags.None, any, _stop.Token);
            byte[] datagram = buffer.AsSpan(0, result.ReceivedBytes).ToArray();
            _toClient.Writer.TryWrite((Environment.TickCount64 + (long)_delay.TotalMilliseconds, datagram));
        }
    }

    private async Task SendInOrderAsync(ChannelReader<(long Due, byte[] Datagram)> queue, Socket socket, Func<EndPoint?> destination)
    {
        try
        {
            await foreach ((long due, byte[] datagram) in queue.ReadAllAsync(_stop.Token))
            {
                long wait = due - Environment.TickCount64;
                if (wait > 0)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(wait), _stop.Token);
                }

                if (destination() is EndPoint to)
                {
                    await socket.SendToAsync(datagram, SocketFlags.None, to, _stop.Token);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }
}
