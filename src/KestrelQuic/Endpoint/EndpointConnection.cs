using System.Net;
using KestrelQuic.Connection;

namespace KestrelQuic.Endpoint;

/// <summary>
/// A connection as the endpoint tracks it: the sans-IO core plus the routing, timer and scheduling bookkeeping.
/// The async layer hangs its own object on <see cref="Tag"/>.
/// </summary>
internal sealed class EndpointConnection
{
    internal EndpointConnection(QuicConnectionCore core, long id)
    {
        Core = core;
        Id = id;
    }

    public QuicConnectionCore Core { get; }

    /// <summary>Unique within the endpoint (for logs and Kestrel's ConnectionId).</summary>
    public long Id { get; }

    /// <summary>Owned by the layer above (the public connection object).</summary>
    public object? Tag { get; set; }

    /// <summary>The deadline currently registered in the endpoint's timer queue (stale queue entries are skipped).</summary>
    internal long RegisteredTimeout { get; set; } = long.MaxValue;

    /// <summary>Queued for <see cref="QuicEndpointCore.PollDatagram"/>.</summary>
    internal bool SendQueued { get; set; }

    /// <summary>Queued for <see cref="QuicEndpointCore.TryDequeueActive"/>.</summary>
    internal bool ActiveQueued { get; set; }

    /// <summary>Removed from the endpoint (closed); nothing routes to it any more.</summary>
    public bool Removed { get; internal set; }

    /// <summary>Server: a NEW_TOKEN was issued for this connection.</summary>
    internal bool NewTokenIssued { get; set; }

    /// <summary>Counted in the endpoint's handshakes-in-progress figure.</summary>
    internal bool CountedAsHandshake { get; set; }

    /// <summary>The remote address under which the connection is indexed for stateless reset detection.</summary>
    internal EndPoint? IndexedRemote { get; set; }

    /// <summary>Connection IDs routed to this connection (local CIDs and, on servers, the client's original DCID).</summary>
    internal List<byte[]> RoutedIds { get; } = new(4);
}
