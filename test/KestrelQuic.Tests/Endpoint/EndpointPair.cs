using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Endpoint;
using KestrelQuic.Tests.Simulation;

namespace KestrelQuic.Tests.Endpoint;

/// <summary>One datagram as it travelled (or would have travelled) between two simulated endpoints.</summary>
internal sealed class SimDatagram(IPEndPoint from, IPEndPoint to, byte[] data, long sentAt)
{
    public IPEndPoint From { get; } = from;

    public IPEndPoint To { get; } = to;

    /// <summary>The bytes delivered; a filter may modify them in place or replace them.</summary>
    public byte[] Data { get; set; } = data;

    public long SentAt { get; } = sentAt;
}

/// <summary>
/// A deterministic in-memory network of <see cref="QuicEndpointCore"/> instances, each bound to an address, with a
/// fake clock: a server at <see cref="ServerAddress"/>, a client at <see cref="ClientAddress"/> and optionally more
/// clients. Datagrams take <see cref="Delay"/> to arrive; time only advances to the next arrival or timer.
/// </summary>
internal sealed class EndpointPair : IDisposable
{
    public static readonly IPEndPoint ClientAddress = new(IPAddress.Parse("10.0.0.1"), 40000);
    public static readonly IPEndPoint ServerAddress = new(IPAddress.Parse("10.0.0.2"), 443);

    /// <summary>Initial clock value (ticks), far from zero so that token timestamps are positive.</summary>
    public const long StartTime = SimulationClock.Epoch;

    /// <summary>A fixed static key, so tests can recompute reset tokens and restart a server with the same key.</summary>
    public static readonly byte[] StaticKey = Enumerable.Range(1, 32).Select(i => (byte)(i * 7)).ToArray();

    private readonly Dictionary<IPEndPoint, QuicEndpointCore> _endpoints = new();
    private readonly Dictionary<QuicEndpointCore, IPEndPoint> _addresses = new();
    private readonly PriorityQueue<SimDatagram, (long Time, long Seq)> _inFlight = new();
    private readonly Dictionary<(EndpointConnection, ulong), Outgoing> _outgoing = new();
    private readonly byte[] _sendBuffer = new byte[65536];
    private readonly byte[] _readBuffer = new byte[65536];
    private long _sequence;

    public EndpointPair(EndpointSettings? serverSettings = null, EndpointSettings? clientSettings = null)
    {
        Now = StartTime;
        Server = AddEndpoint(ServerAddress, serverSettings ?? ServerSettings());
        Client = AddEndpoint(ClientAddress, clientSettings ?? new EndpointSettings());
    }

    public long Now { get; set; }

    public QuicEndpointCore Server { get; private set; }

    public QuicEndpointCore Client { get; }

    /// <summary>One-way delay of every datagram.</summary>
    public TimeSpan Delay { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Called for every datagram when it is sent; return false to drop it. May modify <see cref="SimDatagram.Data"/>.</summary>
    public Func<SimDatagram, bool>? Filter { get; set; }

    /// <summary>Every datagram sent (unmodified copies), in order.</summary>
    public List<SimDatagram> Sent { get; } = new();

    /// <summary>Datagrams addressed to nobody (no endpoint at the destination).</summary>
    public int Undeliverable { get; private set; }

    public List<(QuicEndpointCore Endpoint, EndpointEvent Event, long Time)> EndpointEvents { get; } = new();

    public List<(EndpointConnection Connection, ConnectionEvent Event, long Time)> ConnectionEvents { get; } = new();

    /// <summary>Called for every connection event as it is drained.</summary>
    public Action<QuicEndpointCore, EndpointConnection, ConnectionEvent>? OnConnectionEvent { get; set; }

    /// <summary>Connections accepted by any endpoint, in order.</summary>
    public List<EndpointConnection> Accepted { get; } = new();

    /// <summary>Bytes read from each stream.</summary>
    public Dictionary<(EndpointConnection, ulong), MemoryStream> Received { get; } = new();

    /// <summary>Streams whose FIN was read.</summary>
    public HashSet<(EndpointConnection, ulong)> Finished { get; } = new();

    /// <summary>When each endpoint last had a datagram delivered to it.</summary>
    public Dictionary<QuicEndpointCore, long> LastDelivery { get; } = new();

    /// <summary>Which endpoint owns each connection.</summary>
    public Dictionary<EndpointConnection, QuicEndpointCore> Owner { get; } = new();

    public static EndpointSettings ServerSettings(Action<QuicConfiguration>? configure = null) => new()
    {
        ServerConfiguration = SimulationHelpers.ServerConfig(configure),
        StaticKey = StaticKey,
    };

    public QuicEndpointCore AddEndpoint(IPEndPoint address, EndpointSettings settings)
    {
        var endpoint = new QuicEndpointCore(settings);
        _endpoints.Add(address, endpoint);
        _addresses.Add(endpoint, address);
        return endpoint;
    }

    /// <summary>Puts a new endpoint at the server's address (a restarted server); the old one is disposed.</summary>
    public QuicEndpointCore ReplaceServer(EndpointSettings settings)
    {
        QuicEndpointCore old = Server;
        _endpoints.Remove(ServerAddress);
        _addresses.Remove(old);
        old.Dispose();
        Server = AddEndpoint(ServerAddress, settings);
        return Server;
    }

    /// <summary>Datagrams sent to <paramref name="to"/> that have not arrived yet (dropped ones excluded).</summary>
    public int InFlightTo(IPEndPoint to) => _inFlight.UnorderedItems.Count(i => i.Element.To.Equals(to));

    /// <summary>Datagrams dropped by <see cref="Filter"/>.</summary>
    public int Filtered { get; private set; }

    public IPEndPoint AddressOf(QuicEndpointCore endpoint) => _addresses[endpoint];

    public EndpointConnection Connect(QuicConfiguration? config = null, byte[]? token = null, QuicEndpointCore? from = null)
    {
        QuicEndpointCore endpoint = from ?? Client;
        EndpointConnection connection = endpoint.Connect(config ?? SimulationHelpers.ClientConfig(), ServerAddress, Now, token);
        Owner[connection] = endpoint;
        return connection;
    }

    /// <summary>Queues <paramref name="data"/> on a stream; it is written as the send buffer and flow control allow.</summary>
    public void SendStream(EndpointConnection connection, ulong streamId, byte[] data, bool fin = true)
    {
        var o = new Outgoing(data, fin);
        _outgoing[(connection, streamId)] = o;
        Pump(connection, streamId, o);
        Owner[connection].OnApplicationOperation(connection, Now);
    }

    public byte[] ReceivedBytes(EndpointConnection connection, ulong streamId)
        => Received.TryGetValue((connection, streamId), out MemoryStream? ms) ? ms.ToArray() : Array.Empty<byte>();

    /// <summary>Events of one connection, in order.</summary>
    public List<ConnectionEvent> EventsOf(EndpointConnection connection)
        => ConnectionEvents.Where(e => e.Connection == connection).Select(e => e.Event).ToList();

    public List<EndpointEvent> EndpointEventsOf(QuicEndpointCore endpoint)
        => EndpointEvents.Where(e => e.Endpoint == endpoint).Select(e => e.Event).ToList();

    /// <summary>Runs until <paramref name="condition"/> holds or <paramref name="timeout"/> of simulated time passes.</summary>
    public bool RunUntil(Func<bool> condition, TimeSpan timeout)
    {
        long deadline = Now + timeout.Ticks;
        int stuck = 0;
        long last = Now;
        long iterations = 0;
        while (true)
        {
            if (++iterations > 1_000_000)
            {
                throw new InvalidOperationException($"too many iterations at {Now - StartTime}: server {Server.NextTimeout - Now} client {Client.NextTimeout - Now} inflight {_inFlight.Count} " +
                    string.Join(",", _endpoints.Values.SelectMany(e => e.Connections).Select(c => $"{c.Core.IsServer}:{c.Core.State}:{c.Core.NextTimeout - Now}")));
            }

            Flush();
            if (condition()) return true;
            long next = NextEventTime();
            if (next > deadline)
            {
                Now = Math.Max(Now, deadline);
                return condition();
            }

            Now = Math.Max(Now, next);
            stuck = Now == last ? stuck + 1 : 0;
            last = Now;
            if (stuck > 10_000) throw new InvalidOperationException($"simulation makes no progress at {Now - StartTime}");
            Step();
        }
    }

    /// <summary>Runs until <paramref name="client"/> and its server connection both have a confirmed handshake.</summary>
    public bool RunUntilEstablished(EndpointConnection client, TimeSpan? timeout = null)
        => RunUntil(() => client.Core.IsHandshakeConfirmed && ServerSideOf(client) is { Core.IsHandshakeConfirmed: true }, timeout ?? TimeSpan.FromSeconds(10));

    /// <summary>The accepted connection serving <paramref name="client"/> (matched by the client's original DCID), or null.</summary>
    public EndpointConnection? ServerSideOf(EndpointConnection client)
        => Accepted.LastOrDefault(a => a.Core.OriginalDestinationConnectionId.AsSpan().SequenceEqual(client.Core.OriginalDestinationConnectionId));

    /// <summary>Datagrams sent by the endpoint at <paramref name="from"/>, in order.</summary>
    public List<SimDatagram> SentFrom(IPEndPoint from) => Sent.Where(d => d.From.Equals(from)).ToList();

    /// <summary>Lets simulated time pass with the network running.</summary>
    public void RunFor(TimeSpan duration) => RunUntil(() => false, duration);

    /// <summary>Hands a datagram to the endpoint at <paramref name="to"/> right now, bypassing the network.</summary>
    public void DeliverNow(IPEndPoint from, IPEndPoint to, byte[] data)
    {
        QuicEndpointCore endpoint = _endpoints[to];
        LastDelivery[endpoint] = Now;
        endpoint.ReceiveDatagram((byte[])data.Clone(), from, Now);
    }

    /// <summary>Polls every endpoint until none has anything to send, draining events in between.</summary>
    public void Flush()
    {
        bool any = true;
        int rounds = 0;
        while (any)
        {
            if (++rounds > 100_000) throw new InvalidOperationException($"flush does not converge at {Now - StartTime}");
            any = false;
            foreach ((IPEndPoint address, QuicEndpointCore endpoint) in _endpoints.ToList())
            {
                any |= DrainEvents(endpoint);
                int n;
                while ((n = endpoint.PollDatagram(_sendBuffer, Now, out EndPoint? destination)) > 0)
                {
                    any = true;
                    Send(address, (IPEndPoint)destination!, _sendBuffer.AsSpan(0, n).ToArray());
                }

                any |= DrainEvents(endpoint);
            }
        }
    }

    /// <summary>Collects what <paramref name="endpoint"/> wants to send now without delivering it (for endpoint-level unit tests).</summary>
    public static List<(byte[] Data, EndPoint Destination)> PollAll(QuicEndpointCore endpoint, long now)
    {
        var result = new List<(byte[], EndPoint)>();
        var buffer = new byte[65536];
        int n;
        while ((n = endpoint.PollDatagram(buffer, now, out EndPoint? destination)) > 0)
        {
            result.Add((buffer.AsSpan(0, n).ToArray(), destination!));
        }

        return result;
    }

    public void Dispose()
    {
        foreach (QuicEndpointCore endpoint in _endpoints.Values) endpoint.Dispose();
    }

    private long NextEventTime()
    {
        long t = _inFlight.TryPeek(out _, out (long Time, long Seq) p) ? p.Time : long.MaxValue;
        foreach (QuicEndpointCore endpoint in _endpoints.Values) t = Math.Min(t, endpoint.NextTimeout);
        return t;
    }

    private void Step()
    {
        while (_inFlight.TryPeek(out SimDatagram? d, out (long Time, long Seq) p) && p.Time <= Now)
        {
            _inFlight.Dequeue();
            if (_endpoints.TryGetValue(d.To, out QuicEndpointCore? endpoint))
            {
                LastDelivery[endpoint] = Now;
                endpoint.ReceiveDatagram(d.Data, d.From, Now);
            }
            else
            {
                Undeliverable++;
            }
        }

        foreach (QuicEndpointCore endpoint in _endpoints.Values.ToList())
        {
            if (endpoint.NextTimeout <= Now) endpoint.HandleTimeout(Now);
        }
    }

    private void Send(IPEndPoint from, IPEndPoint to, byte[] data)
    {
        Sent.Add(new SimDatagram(from, to, (byte[])data.Clone(), Now));
        var d = new SimDatagram(from, to, data, Now);
        if (Filter is not null && !Filter(d))
        {
            Filtered++;
            return;
        }

        _inFlight.Enqueue(d, (Now + Delay.Ticks, _sequence++));
    }

    private bool DrainEvents(QuicEndpointCore endpoint)
    {
        bool any = false;
        while (endpoint.TryDequeueEvent(out EndpointEvent e))
        {
            any = true;
            EndpointEvents.Add((endpoint, e, Now));
            if (e.Kind == EndpointEventKind.ConnectionAccepted)
            {
                Accepted.Add(e.Connection);
                Owner[e.Connection] = endpoint;
            }
        }

        while (endpoint.TryDequeueActive(out EndpointConnection c))
        {
            any = true;
            while (c.Core.TryDequeueEvent(out ConnectionEvent e))
            {
                ConnectionEvents.Add((c, e, Now));
                HandleStreamEvent(c, e);
                OnConnectionEvent?.Invoke(endpoint, c, e);
            }

            endpoint.OnApplicationOperation(c, Now);
        }

        return any;
    }

    private void HandleStreamEvent(EndpointConnection c, ConnectionEvent e)
    {
        switch (e.Kind)
        {
            case ConnectionEventKind.StreamOpened:
                Received.TryAdd((c, e.StreamId), new MemoryStream());
                break;
            case ConnectionEventKind.StreamReadable:
                Received.TryAdd((c, e.StreamId), new MemoryStream());
                Read(c, e.StreamId);
                break;
            case ConnectionEventKind.StreamWritable:
            case ConnectionEventKind.StreamClosed:
                if (_outgoing.TryGetValue((c, e.StreamId), out Outgoing? o)) Pump(c, e.StreamId, o);
                break;
        }
    }

    private void Read(EndpointConnection c, ulong id)
    {
        MemoryStream ms = Received[(c, id)];
        while (true)
        {
            int n = c.Core.ReadStream(id, _readBuffer, out bool fin);
            ms.Write(_readBuffer, 0, n);
            if (fin) Finished.Add((c, id));
            if (n == 0) break;
        }
    }

    private static void Pump(EndpointConnection c, ulong id, Outgoing o)
    {
        while (o.Offset < o.Data.Length)
        {
            int n = c.Core.WriteStream(id, o.Data.AsSpan(o.Offset), fin: false);
            if (n == 0) break;
            o.Offset += n;
        }

        if (o.Offset == o.Data.Length && o.Fin && !o.FinSent)
        {
            c.Core.FinishStream(id);
            o.FinSent = true;
        }
    }

    private sealed class Outgoing(byte[] data, bool fin)
    {
        public byte[] Data { get; } = data;

        public bool Fin { get; } = fin;

        public int Offset { get; set; }

        public bool FinSent { get; set; }
    }
}
