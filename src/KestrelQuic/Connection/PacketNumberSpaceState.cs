using KestrelQuic.PacketProtection;
using KestrelQuic.Protocol;
using KestrelQuic.Streams;

namespace KestrelQuic.Connection;

/// <summary>Per packet number space state (RFC 9000 §12.3): packet numbers, ACK tracking, CRYPTO streams and keys.</summary>
internal sealed class PacketNumberSpaceState : IDisposable
{
    public PacketNumberSpaceState(PacketNumberSpace space, int maxCryptoBuffer)
    {
        Space = space;
        CryptoReceive = new ReceiveBuffer(maxCryptoBuffer);
        CryptoSend = new SendBuffer();
    }

    public PacketNumberSpace Space { get; }

    public AckTracker Ack { get; } = new();

    public long NextPacketNumber { get; set; }

    public ReceiveBuffer CryptoReceive { get; }

    public SendBuffer CryptoSend { get; private set; }

    /// <summary>Initial/Handshake keys (the application space uses <see cref="OneRttKeys"/>).</summary>
    public PacketProtectionKeys? ReadKeys { get; set; }

    public PacketProtectionKeys? WriteKeys { get; set; }

    /// <summary>Keys were discarded (RFC 9001 §4.9): packets of this space are ignored from now on.</summary>
    public bool Discarded { get; private set; }

    /// <summary>Ack-eliciting probe packets requested by a PTO that are still to be sent.</summary>
    public int ProbesPending { get; set; }

    /// <summary>Client after Version Negotiation: the first flight starts over with a new ClientHello at offset 0.</summary>
    public void ResetCryptoSend()
    {
        CryptoSend.Discard();
        CryptoSend = new SendBuffer();
    }

    public void Discard()
    {
        Discarded = true;
        ReadKeys?.Dispose();
        WriteKeys?.Dispose();
        ReadKeys = null;
        WriteKeys = null;
        CryptoReceive.Discard();
        CryptoSend.Discard();
        Ack.Release();
        ProbesPending = 0;
    }

    public void Dispose()
    {
        ReadKeys?.Dispose();
        WriteKeys?.Dispose();
        CryptoReceive.Discard();
        CryptoSend.Discard();
    }
}
