using System.Text.Json;
using KestrelQuic.Diagnostics;
using KestrelQuic.Udp;

namespace KestrelQuic;

/// <summary>
/// Adds events of the protocol above QUIC (HTTP/3, or an application protocol of your own) to a connection's qlog
/// file, in order with its QUIC events and on the same clock. Get it from <see cref="QuicConnection.QlogTrace"/>,
/// which is null unless <see cref="Configuration.QuicConfiguration.QlogDirectory"/> is set.
/// </summary>
/// <remarks>
/// Events are serialized into the connection's buffer under the connection's lock and written to disk by the same
/// background writer as the QUIC events; events written after the connection ended are ignored. When the connection
/// offers ALPN "h3" the file's header lists the HTTP/3 event schema (draft-ietf-quic-qlog-h3-events).
/// </remarks>
public sealed class QuicQlogTrace
{
    private readonly QuicSocketEndpoint _endpoint;
    private readonly IQlogSink _sink;

    internal QuicQlogTrace(QuicSocketEndpoint endpoint, IQlogSink sink)
    {
        _endpoint = endpoint;
        _sink = sink;
    }

    /// <summary>
    /// Writes one event now: <c>{"time": …, "name": <paramref name="name"/>, "data": {…}}</c>, where
    /// <paramref name="writeData"/> writes the members of the data object (property names and values, nested objects
    /// and arrays closed again). It runs under the connection's lock: write and return. A callback that throws or leaves
    /// containers open writes nothing (the exception is rethrown, or an <see cref="InvalidOperationException"/>).
    /// </summary>
    /// <typeparam name="TState">What <paramref name="writeData"/> needs (pass a static lambda and its state to allocate nothing).</typeparam>
    /// <param name="name">The event's "namespace:type", for example "http3:frame_created".</param>
    /// <param name="state">Passed to <paramref name="writeData"/>.</param>
    /// <param name="writeData">Writes the data object's members.</param>
    public void WriteEvent<TState>(string name, TState state, Action<Utf8JsonWriter, TState> writeData)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(writeData);
        lock (_endpoint.Lock)
        {
            _sink.ApplicationEvent(QuicClock.Now, name, state, writeData);
        }
    }
}
