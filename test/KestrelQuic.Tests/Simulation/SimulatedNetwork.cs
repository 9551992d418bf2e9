using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Packets;

namespace KestrelQuic.Tests.Simulation;

/// <summary>Impairments of one direction of a simulated link. All randomness comes from the network's seed.</summary>
internal sealed class LinkConditions
{
    public double LossRate { get; set; }

    public double ReorderRate { get; set; }

    public double DuplicateRate { get; set; }

    public double CorruptRate { get; set; }

    /// <summary>One-way delay.</summary>
    public TimeSpan Delay { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Extra delay given to reordered datagrams.</summary>
    public TimeSpan ReorderDelay { get; set; } = TimeSpan.FromMilliseconds(15);

    /// <summary>Link rate in bytes per second (0 = unlimited); datagrams queue behind each other.</summary>
    public long BytesPerSecond { get; set; } = 100_000_000;

    /// <summary>Drop every datagram while true (blackhole).</summary>
    public bool Down { get; set; }
}

/// <summary>
/// A deterministic in-memory network and clock running a client and a server <see cref="QuicConnectionCore"/>
/// against each other. Time only advances to the next event, so long transfers run fast and repeatably.
/// </summary>
internal sealed class SimulatedNetwork : IDisposable
{
    public static readonly IPEndPoint ClientAddress = new(IPAddress.Parse("10.0.0.1"), 40000);
    public static readonly IPEndPoint ServerAddress = new(IPAddress.Parse("10.0.0.2"), 443);

    private readonly Random _random;
    private readonly PriorityQueue<InFlight, (long, long)> _queue = new();
    private readonly byte[] _sendBuffer = new byte[65536];
    private long _sequence;
    private long _toServerBusyUntil;
    private long _toClientBusyUntil;

    private readonly KestrelQuic.Diagnostics.IConnectionTracerFactory? _tracers;

    public SimulatedNetwork(QuicConfiguration clientConfig, QuicConfiguration serverConfig, int seed = 1, KestrelQuic.Tls.EarlyDataAntiReplay? antiReplay = null, long? startTime = null, KestrelQuic.Diagnostics.IConnectionTracerFactory? tracers = null)
    {
        _random = new Random(seed);
        _tracers = tracers;
        AntiReplay = antiReplay ?? new KestrelQuic.Tls.EarlyDataAntiReplay();
        ClientConfig = clientConfig;
        ServerConfig = serverConfig;
        Now = startTime ?? SimulationClock.Epoch + TimeSpan.FromSeconds(1).Ticks;
        Client = QuicConnectionCore.CreateClient(clientConfig, ServerAddress, Now, tracers: tracers);
    }

    /// <summary>The server's 0-RTT strike register (pass one to several networks to play one server across them).</summary>
    public KestrelQuic.Tls.EarlyDataAntiReplay AntiReplay { get; }

    public QuicConfiguration ClientConfig { get; }

    public QuicConfiguration ServerConfig { get; }

    public long Now { get; private set; }

    public QuicConnectionCore Client { get; }

    public QuicConnectionCore? Server { get; private set; }

    public LinkConditions ToServer { get; } = new();

    public LinkConditions ToClient { get; } = new();

    public IPEndPoint CurrentClientAddress { get; set; } = ClientAddress;

    public long DatagramsToServer { get; private set; }

    public long DatagramsToClient { get; private set; }

    public long BytesToServer { get; private set; }

    public long BytesToClient { get; private set; }

    /// <summary>
    /// Bytes allocated on this thread inside calls into the two connection cores (receive, poll, timeout, events,
    /// and the stream reads and writes of <see cref="StreamPump"/>): the engine's share, without the simulator's
    /// datagram copies and queues.
    /// </summary>
    public long CoreAllocatedBytes { get; private set; }

    /// <summary>Adds what this thread allocated since <paramref name="allocatedBefore"/> (a <see cref="GC.GetAllocatedBytesForCurrentThread"/> reading) to <see cref="CoreAllocatedBytes"/>.</summary>
    public void AddCoreAllocation(long allocatedBefore) => CoreAllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;

    /// <summary>Events seen so far, per side, for assertions.</summary>
    public List<ConnectionEvent> ClientEvents { get; } = new();

    public List<ConnectionEvent> ServerEvents { get; } = new();

    /// <summary>Called for every event as it is dequeued (lets tests react, e.g. read streams).</summary>
    public Action<QuicConnectionCore, ConnectionEvent>? OnEvent { get; set; }

    /// <summary>Called for each datagram before impairments; return false to drop it. The span may be modified.</summary>
    public Func<bool, byte[], bool>? Filter { get; set; }

    /// <summary>
    /// Plays the server endpoint for datagrams that find no server connection (see <see cref="DiscardServer"/>):
    /// returns a datagram to send back to the client (e.g. a stateless reset) or null.
    /// </summary>
    public Func<byte[], byte[]?>? ServerlessResponder { get; set; }

    /// <summary>Called when the server connection is created, before it processes the client's first datagram.</summary>
    public Action<QuicConnectionCore>? ServerCreated { get; set; }

    /// <summary>Runs until <paramref name="condition"/> holds or <paramref name="timeout"/> of simulated time passes. Returns whether the condition held.</summary>
    public bool RunUntil(Func<bool> condition, TimeSpan timeout)
    {
        long deadline = Now + timeout.Ticks;
        int iterations = 0;
        while (true)
        {
            Flush();
            DrainEvents();
            if (condition()) return true;

            long next = NextEventTime();
            if (next == long.MaxValue || next > deadline)
            {
                Now = Math.Max(Now, Math.Min(deadline, next));
                return condition();
            }

            Now = Math.Max(Now, next);
            Step();
            if (++iterations > 50_000_000) throw new InvalidOperationException("simulation did not converge");
        }
    }

    public bool RunUntilHandshakeComplete(TimeSpan? timeout = null)
        => RunUntil(() => Client.IsHandshakeConfirmed && Server is { IsHandshakeConfirmed: true }, timeout ?? TimeSpan.FromSeconds(30));

    /// <summary>Lets simulated time pass with the network running.</summary>
    public void RunFor(TimeSpan duration) => RunUntil(() => false, duration);

    private long NextEventTime()
    {
        long t = long.MaxValue;
        if (_queue.TryPeek(out _, out (long Time, long Seq) p)) t = p.Time;
        t = Math.Min(t, Client.NextTimeout);
        if (Server is not null) t = Math.Min(t, Server.NextTimeout);
        return t;
    }

    private void Step()
    {
        while (_queue.TryPeek(out InFlight d, out (long Time, long Seq) p) && p.Time <= Now)
        {
            _queue.Dequeue();
            Deliver(d);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        if (Client.NextTimeout <= Now) Client.HandleTimeout(Now);
        if (Server is not null && Server.NextTimeout <= Now) Server.HandleTimeout(Now);
        AddCoreAllocation(before);
    }

    private void Deliver(InFlight d)
    {
        if (d.ToServer)
        {
            if (Server is null)
            {
                if (!PacketHeaderParser.TryParse(d.Data, ServerConfig.ConnectionIdLength, out PacketHeader h) || h.Type != PacketType.Initial || d.Data.Length < 1200)
                {
                    if (ServerlessResponder?.Invoke(d.Data) is byte[] reply) Send(toServer: false, reply);
                    return;
                }

                Server = QuicConnectionCore.CreateServer(
                    ServerConfig,
                    h.Version,
                    d.Data.AsSpan(h.DestinationConnectionIdOffset, h.DestinationConnectionIdLength),
                    d.Data.AsSpan(h.SourceConnectionIdOffset, h.SourceConnectionIdLength),
                    d.From,
                    Now,
                    tracers: _tracers,
                    antiReplay: AntiReplay);
                ServerCreated?.Invoke(Server);
            }

            long before = GC.GetAllocatedBytesForCurrentThread();
            Server.ReceiveDatagram(d.Data, d.From, Now);
            AddCoreAllocation(before);
        }
        else
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Client.ReceiveDatagram(d.Data, ServerAddress, Now);
            AddCoreAllocation(before);
        }
    }

    /// <summary>The server loses all connection state (a crash or restart): later datagrams find no connection.</summary>
    public void DiscardServer()
    {
        Server?.Dispose();
        Server = null;
    }

    /// <summary>Polls both sides until neither has anything more to send right now.</summary>
    public void Flush()
    {
        bool any = true;
        while (any)
        {
            any = false;
            int n;
            while ((n = Poll(Client)) > 0)
            {
                Send(toServer: true, _sendBuffer.AsSpan(0, n).ToArray());
                any = true;
            }

            if (Server is not null)
            {
                while ((n = Poll(Server)) > 0)
                {
                    Send(toServer: false, _sendBuffer.AsSpan(0, n).ToArray());
                    any = true;
                }
            }

            DrainEvents();
        }
    }

    private int Poll(QuicConnectionCore connection)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        int n = connection.PollDatagram(_sendBuffer, Now, out _);
        AddCoreAllocation(before);
        return n;
    }

    private bool TryDequeueEvent(QuicConnectionCore connection, out ConnectionEvent e)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        bool any = connection.TryDequeueEvent(out e);
        AddCoreAllocation(before);
        return any;
    }

    private void Send(bool toServer, byte[] datagram)
    {
        if (toServer)
        {
            DatagramsToServer++;
            BytesToServer += datagram.Length;
        }
        else
        {
            DatagramsToClient++;
            BytesToClient += datagram.Length;
        }

        if (Filter is not null && !Filter(toServer, datagram)) return;
        LinkConditions link = toServer ? ToServer : ToClient;
        if (link.Down || _random.NextDouble() < link.LossRate) return;

        ref long busyUntil = ref (toServer ? ref _toServerBusyUntil : ref _toClientBusyUntil);
        long start = Math.Max(Now, busyUntil);
        long transmit = link.BytesPerSecond > 0 ? datagram.Length * TimeSpan.TicksPerSecond / link.BytesPerSecond : 0;
        busyUntil = start + transmit;
        long arrival = busyUntil + link.Delay.Ticks;
        if (_random.NextDouble() < link.ReorderRate) arrival += link.ReorderDelay.Ticks;

        if (_random.NextDouble() < link.CorruptRate)
        {
            datagram = (byte[])datagram.Clone();
            datagram[_random.Next(datagram.Length)] ^= (byte)(1 << _random.Next(8));
        }

        Enqueue(new InFlight(toServer, datagram, CurrentClientAddress), arrival);
        if (_random.NextDouble() < link.DuplicateRate)
        {
            Enqueue(new InFlight(toServer, (byte[])datagram.Clone(), CurrentClientAddress), arrival + TimeSpan.FromMilliseconds(1).Ticks);
        }
    }

    /// <summary>Delivers <paramref name="datagram"/> now, e.g. one a <see cref="Filter"/> held back (reordering).</summary>
    public void Deliver(bool toServer, byte[] datagram) => Enqueue(new InFlight(toServer, datagram, CurrentClientAddress), Now);

    private void Enqueue(InFlight d, long time) => _queue.Enqueue(d, (time, _sequence++));

    public void DrainEvents()
    {
        while (TryDequeueEvent(Client, out ConnectionEvent e))
        {
            ClientEvents.Add(e);
            OnEvent?.Invoke(Client, e);
        }

        while (Server is not null && TryDequeueEvent(Server, out ConnectionEvent e))
        {
            ServerEvents.Add(e);
            OnEvent?.Invoke(Server, e);
        }
    }

    public void Dispose()
    {
        Client.Dispose();
        Server?.Dispose();
    }

    private readonly record struct InFlight(bool ToServer, byte[] Data, IPEndPoint From);
}
