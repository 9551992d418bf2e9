using System.Buffers.Binary;
using System.Net;
using KestrelQuic.Testing;

namespace KestrelQuic.Interop;

/// <summary>
/// The network conditions of the interop runner's cases, built on the tests' <see cref="UdpRelay"/>: a relay between
/// the client and the server with the case's impairments in both directions.
/// </summary>
internal static class Links
{
    private const int Seed = 9000;

    /// <summary>True when the case needs a relay between the peers.</summary>
    public static bool NeedsRelay(string testCase) => testCase is "handshakeloss" or "transferloss" or "handshakecorruption"
        or "transfercorruption" or "blackhole" or "longrtt" or "rebind-port" or "rebind-addr" or "amplificationlimit" or "zerortt";

    /// <summary>A relay in front of <paramref name="server"/> with the case's impairments.</summary>
    public static UdpRelay Create(string testCase, IPEndPoint server, int lane = 0)
    {
        var relay = new UdpRelay(server, Seed + (lane * 2));
        switch (testCase)
        {
            case "handshakeloss":
                // 30% loss in bursts of up to 3 datagrams (the interop runner's drop-rate=30, burst=3), each direction on its own.
                relay.ToServer.Filter = new BurstLoss(0.3, 3, Seed + lane).Keep;
                relay.ToClient.Filter = new BurstLoss(0.3, 3, Seed + lane + 100).Keep;
                break;
            case "transferloss":
                relay.ToServer.LossRate = relay.ToClient.LossRate = 0.02;
                break;
            case "handshakecorruption":
                relay.ToServer.CorruptRate = relay.ToClient.CorruptRate = 0.3;
                break;
            case "transfercorruption":
                relay.ToServer.CorruptRate = relay.ToClient.CorruptRate = 0.02;
                break;
            case "zerortt":
                // A round trip of 40 ms: the request is written long before the server's handshake reply arrives.
                relay.ToServer.Delay = relay.ToClient.Delay = TimeSpan.FromMilliseconds(20);
                break;
            case "longrtt":
                relay.ToServer.Delay = relay.ToClient.Delay = TimeSpan.FromMilliseconds(750);
                break;
        }

        return relay;
    }

    /// <summary>
    /// The interop runner's drop-rate model (quic-network-simulator's DropRateErrorModel): each datagram is dropped
    /// with probability <paramref name="rate"/>, but never more than <paramref name="maxBurst"/> in a row. Bursts are
    /// counted in datagrams, so an unbounded burst model would swallow every sparse handshake retransmission for
    /// tens of seconds, a loss pattern no endpoint can get through.
    /// </summary>
    private sealed class BurstLoss(double rate, int maxBurst, int seed)
    {
        private readonly Random _random = new(seed);
        private int _droppedInARow;

        public bool Keep(long index, byte[] datagram)
        {
            lock (_random)
            {
                if (_droppedInARow < maxBurst && _random.NextDouble() < rate)
                {
                    _droppedInARow++;
                    return false;
                }

                _droppedInARow = 0;
                return true;
            }
        }
    }
}

/// <summary>
/// blackhole: once <paramref name="startAfterBytes"/> bytes went towards the client, the link goes down in both
/// directions for 2 s of every 7 s.
/// </summary>
internal sealed class Blackhole
{
    private static readonly long Period = 7_000, Down = 2_000;
    private readonly long _startAfterBytes;
    private long _toClientBytes;
    private long _start = -1;
    private int _outages;
    private long _dropped;

    public Blackhole(UdpRelay relay, long startAfterBytes)
    {
        _startAfterBytes = startAfterBytes;
        relay.ToServer.Filter = (_, _) => !IsDown();
        relay.ToClient.Filter = (_, d) =>
        {
            if (Interlocked.Add(ref _toClientBytes, d.Length) >= _startAfterBytes && Interlocked.Read(ref _start) < 0)
            {
                Interlocked.CompareExchange(ref _start, Environment.TickCount64, -1);
            }

            return !IsDown();
        };
    }

    public long Dropped => Interlocked.Read(ref _dropped);

    public int Outages => Volatile.Read(ref _outages);

    private bool IsDown()
    {
        long start = Interlocked.Read(ref _start);
        if (start < 0) return false;
        long elapsed = Environment.TickCount64 - start;
        bool down = elapsed % Period < Down;
        if (down)
        {
            int outage = (int)(elapsed / Period) + 1;
            if (outage > Volatile.Read(ref _outages)) Volatile.Write(ref _outages, outage);
            Interlocked.Increment(ref _dropped);
        }

        return down;
    }
}

/// <summary>
/// rebind-port / rebind-addr: each time another share of the transfer went towards the client, the next client
/// datagram leaves the relay from a new port (and address), as when a NAT's mapping changes: the server learns the
/// new address from that datagram, and what it still sends to the old one is lost.
/// </summary>
internal sealed class Rebinder
{
    private readonly long _every;
    private long _toClientBytes;
    private long _next;
    private int _due;
    private int _rebinds;

    public Rebinder(UdpRelay relay, long everyBytes, bool newAddress)
    {
        _every = everyBytes;
        _next = everyBytes;
        relay.ToClient.Filter = (index, d) =>
        {
            long total = Interlocked.Add(ref _toClientBytes, d.Length);
            long next = Interlocked.Read(ref _next);
            if (total >= next && Interlocked.CompareExchange(ref _next, next + _every, next) == next) Interlocked.Exchange(ref _due, 1);
            return true;
        };
        relay.ToServer.Filter = (index, d) =>
        {
            // On the relay's client-side receive loop, before this datagram is sent: it goes out of the new socket.
            if (Interlocked.Exchange(ref _due, 0) == 1)
            {
                int n = Interlocked.Increment(ref _rebinds);
                relay.Rebind(newAddress ? new IPAddress([127, 0, 0, (byte)(1 + n)]) : null);
            }

            return true;
        };
    }

    public int Rebinds => Volatile.Read(ref _rebinds);
}

/// <summary>
/// amplificationlimit: drops the client's datagrams after its first until <paramref name="dropClientDatagrams"/> are
/// gone (so the server sits at its limit), and measures, for every datagram the server sends before it has received
/// a Handshake or 1-RTT packet from the client (address validation, RFC 9000 §8.1), the ratio of the bytes it sent to
/// the bytes it received.
/// </summary>
internal sealed class AmplificationMeter
{
    private readonly Lock _lock = new();
    private long _received;
    private long _sent;
    private bool _validated;

    public AmplificationMeter(UdpRelay relay, int dropClientDatagrams)
    {
        relay.ToServer.Filter = (index, d) =>
        {
            if (index >= 1 && index <= dropClientDatagrams) return false;
            lock (_lock)
            {
                _received += d.Length;
                if (!_validated && CarriesHandshakeOrOneRtt(d)) _validated = true;
            }

            return true;
        };
        relay.ToClient.Filter = (_, d) =>
        {
            lock (_lock)
            {
                if (!_validated)
                {
                    _sent += d.Length;
                    BytesBeforeValidation = _sent;
                    if (_received > 0) MaxRatio = Math.Max(MaxRatio, (double)_sent / _received);
                    else MaxRatio = double.PositiveInfinity;
                }
            }

            return true;
        };
    }

    /// <summary>The largest sent/received ratio seen before validation.</summary>
    public double MaxRatio { get; private set; }

    public long BytesBeforeValidation { get; private set; }

    public long BytesReceivedBeforeValidation
    {
        get
        {
            lock (_lock)
            {
                return _received;
            }
        }
    }

    public bool Validated
    {
        get
        {
            lock (_lock)
            {
                return _validated;
            }
        }
    }

    /// <summary>Walks the coalesced packets of a datagram (RFC 9000 §12.2) looking for a Handshake or short-header packet.</summary>
    private static bool CarriesHandshakeOrOneRtt(ReadOnlySpan<byte> datagram)
    {
        while (datagram.Length > 0)
        {
            byte first = datagram[0];
            if ((first & 0x80) == 0) return true; // short header: 1-RTT
            if (datagram.Length < 7) return false;
            uint version = BinaryPrimitives.ReadUInt32BigEndian(datagram[1..]);
            int type = (first >> 4) & 0x3;
            bool v2 = version == 0x6b3343cf;
            bool initial = v2 ? type == 1 : type == 0;
            bool handshake = v2 ? type == 3 : type == 2;
            if (handshake) return true;
            int offset = 5;
            int dcil = datagram[offset++];
            offset += dcil;
            if (offset >= datagram.Length) return false;
            int scil = datagram[offset++];
            offset += scil;
            if (initial)
            {
                if (!TryReadVarInt(datagram, ref offset, out long tokenLength)) return false;
                offset += (int)tokenLength;
            }

            if (!TryReadVarInt(datagram, ref offset, out long length) || offset + length > datagram.Length) return false;
            datagram = datagram[(offset + (int)length)..];
        }

        return false;
    }

    private static bool TryReadVarInt(ReadOnlySpan<byte> data, ref int offset, out long value)
    {
        value = 0;
        if (offset >= data.Length) return false;
        int length = 1 << (data[offset] >> 6);
        if (offset + length > data.Length) return false;
        value = data[offset] & 0x3f;
        for (int i = 1; i < length; i++) value = (value << 8) | data[offset + i];
        offset += length;
        return true;
    }
}
