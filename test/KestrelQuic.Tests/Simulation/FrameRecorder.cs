using System.Net;
using KestrelQuic.Configuration;
using KestrelQuic.Connection;
using KestrelQuic.Diagnostics;
using KestrelQuic.Frames;
using KestrelQuic.Packets;
using KestrelQuic.Parameters;
using KestrelQuic.Protocol;
using KestrelQuic.Recovery;

namespace KestrelQuic.Tests.Simulation;

/// <summary>
/// One frame a connection decrypted (or sent), decoded from the packet payload the core traced. <see cref="Rejected"/>:
/// the decoder refused it (not allowed in this packet type, malformed); decoding of that packet stopped there.
/// For ACK frames, <see cref="LargestAcknowledged"/> and the raw <see cref="AckDelay"/> field.
/// </summary>
internal readonly record struct RecordedFrame(long Time, PacketType PacketType, FrameType Type, ulong RawType, ulong StreamId, ulong Maximum, bool Rejected = false,
    long LargestAcknowledged = -1, ulong AckDelay = 0);

/// <summary>
/// Plugs into the cores' trace hook (<see cref="IConnectionTracerFactory"/>) and decodes every packet's plaintext
/// frames with <see cref="FrameReader"/>: what each side really received on the wire, for assertions.
/// </summary>
internal sealed class FrameRecorder : IConnectionTracerFactory
{
    public List<RecordedFrame> ClientReceived { get; } = new();

    public List<RecordedFrame> ServerReceived { get; } = new();

    public List<RecordedFrame> ClientSent { get; } = new();

    public List<RecordedFrame> ServerSent { get; } = new();

    public IKeyLogSink? CreateKeyLog(QuicConfiguration configuration) => null;

    public IQlogSink? CreateQlog(QuicConfiguration configuration, bool isServer, ReadOnlySpan<byte> originalDestinationConnectionId, long now)
        => isServer ? new Sink(ServerReceived, ServerSent) : new Sink(ClientReceived, ClientSent);

    private sealed class Sink(List<RecordedFrame> received, List<RecordedFrame> sent) : IQlogSink
    {
        public void PacketReceived(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload)
            => Decode(received, now, type, payload);

        public void PacketSent(long now, PacketType type, long packetNumber, int packetLength, ReadOnlySpan<byte> dcid, ReadOnlySpan<byte> scid, ReadOnlySpan<byte> payload)
            => Decode(sent, now, type, payload);

        // Application-layer events are not frames: nothing to record.
        public void ApplicationEvent<TState>(long now, string name, TState state, Action<System.Text.Json.Utf8JsonWriter, TState> writeData)
        {
        }

        private static void Decode(List<RecordedFrame> into, long now, PacketType type, ReadOnlySpan<byte> payload)
        {
            var reader = new FrameReader(payload, type);
            while (true)
            {
                FrameReadStatus status = reader.TryReadFrame(out Frame frame, out TransportError error);
                if (status == FrameReadStatus.End) return;
                if (status == FrameReadStatus.Error)
                {
                    into.Add(new RecordedFrame(now, type, FrameRules.Normalize(error.FrameType), error.FrameType, 0, 0, Rejected: true));
                    return;
                }

                if (frame.Type == FrameType.Padding) continue;
                bool ack = frame.Type is FrameType.Ack or FrameType.AckEcn;
                into.Add(new RecordedFrame(now, type, frame.Type, frame.RawType, frame.StreamId, frame.Maximum,
                    LargestAcknowledged: ack ? frame.Ack.LargestAcknowledged : -1, AckDelay: ack ? frame.Ack.AckDelay : 0));
            }
        }

        public void ConnectionStarted(long now, EndPoint? remote, uint version)
        {
        }

        public void ParametersSet(long now, bool local, TransportParameters parameters, string? tlsCipher)
        {
        }

        public void MetricsUpdated(long now, RttEstimator rtt, ICongestionController congestion, int ptoCount)
        {
        }

        public void PacketLost(PacketNumberSpace space, long packetNumber)
        {
        }

        public void KeyUpdated(EncryptionLevel level, bool clientSecret, bool localUpdate, long keyPhase)
        {
        }

        public void StateUpdated(ConnectionState oldState, ConnectionState newState)
        {
        }

        public void HandshakeConfirmed()
        {
        }

        public void ConnectionClosed(QuicCloseReason reason)
        {
        }

        public void Complete()
        {
        }
    }
}
