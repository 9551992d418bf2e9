using KestrelQuic.Configuration;
using KestrelQuic.Connection;

namespace KestrelQuic.Tests.Simulation;

internal static class SimulationHelpers
{
    public const string Alpn = "kq-test";

    public static QuicConfiguration ServerConfig(Action<QuicConfiguration>? configure = null)
    {
        var c = new QuicConfiguration
        {
            ApplicationProtocols = { Alpn },
            Certificate = TestCertificates.Localhost,
        };
        configure?.Invoke(c);
        return c;
    }

    public static QuicConfiguration ClientConfig(Action<QuicConfiguration>? configure = null)
    {
        var c = new QuicConfiguration
        {
            ApplicationProtocols = { Alpn },
            ServerName = "localhost",
            UseSystemTrust = false,
            TrustedCertificateAuthorities = new System.Security.Cryptography.X509Certificates.X509Certificate2Collection(TestCertificates.Localhost),
        };
        configure?.Invoke(c);
        return c;
    }

    /// <summary>Deterministic test payload.</summary>
    public static byte[] Payload(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}

/// <summary>
/// Drives stream I/O on both sides of a <see cref="SimulatedNetwork"/>: queues outgoing data, writes it as the
/// send buffers allow, and collects every received byte per stream.
/// </summary>
internal sealed class StreamPump
{
    private readonly SimulatedNetwork _net;
    private readonly Dictionary<(QuicConnectionCore, ulong), Outgoing> _outgoing = new();
    private readonly byte[] _readBuffer = new byte[64 * 1024];

    public StreamPump(SimulatedNetwork net)
    {
        _net = net;
        net.OnEvent = OnEvent;
    }

    public Dictionary<(QuicConnectionCore, ulong), MemoryStream> Received { get; } = new();

    public HashSet<(QuicConnectionCore, ulong)> Finished { get; } = new();

    /// <summary>Set to pause reading on a side (to exercise flow control).</summary>
    public Func<QuicConnectionCore, bool> ReadEnabled { get; set; } = _ => true;

    public void Send(QuicConnectionCore connection, ulong streamId, byte[] data, bool fin = true)
    {
        var o = new Outgoing(data, fin);
        _outgoing[(connection, streamId)] = o;
        Pump(connection, streamId, o);
    }

    public byte[] ReceivedBytes(QuicConnectionCore connection, ulong streamId)
        => Received.TryGetValue((connection, streamId), out MemoryStream? ms) ? ms.ToArray() : Array.Empty<byte>();

    /// <summary>Reads everything readable on all streams of both sides (after re-enabling reads).</summary>
    public void ReadAll()
    {
        foreach (QuicConnectionCore? c in new[] { _net.Client, _net.Server })
        {
            if (c is null) continue;
            foreach ((QuicConnectionCore conn, ulong id) in Received.Keys.ToList())
            {
                if (conn == c) Read(c, id);
            }
        }
    }

    private void OnEvent(QuicConnectionCore connection, ConnectionEvent e)
    {
        switch (e.Kind)
        {
            case ConnectionEventKind.StreamOpened:
                Received.TryAdd((connection, e.StreamId), new MemoryStream());
                break;
            case ConnectionEventKind.StreamReadable:
                Received.TryAdd((connection, e.StreamId), new MemoryStream());
                Read(connection, e.StreamId);
                break;
            case ConnectionEventKind.StreamWritable:
            case ConnectionEventKind.StreamClosed:
                if (_outgoing.TryGetValue((connection, e.StreamId), out Outgoing? o)) Pump(connection, e.StreamId, o);
                break;
        }
    }

    private void Read(QuicConnectionCore connection, ulong id)
    {
        if (!ReadEnabled(connection)) return;
        MemoryStream ms = Received[(connection, id)];
        while (true)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            int n = connection.ReadStream(id, _readBuffer, out bool fin);
            _net.AddCoreAllocation(before);
            ms.Write(_readBuffer, 0, n);
            if (fin) Finished.Add((connection, id));
            if (n == 0) break;
        }
    }

    private void Pump(QuicConnectionCore connection, ulong id, Outgoing o)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        while (o.Offset < o.Data.Length)
        {
            int n = connection.WriteStream(id, o.Data.AsSpan(o.Offset), fin: false);
            if (n == 0) break;
            o.Offset += n;
        }

        if (o.Offset == o.Data.Length && o.Fin && !o.FinSent)
        {
            connection.FinishStream(id);
            o.FinSent = true;
        }

        _net.AddCoreAllocation(before);
    }

    private sealed class Outgoing(byte[] data, bool fin)
    {
        public byte[] Data { get; } = data;

        public bool Fin { get; } = fin;

        public int Offset { get; set; }

        public bool FinSent { get; set; }
    }
}
