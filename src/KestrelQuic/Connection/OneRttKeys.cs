using KestrelQuic.PacketProtection;

namespace KestrelQuic.Connection;

/// <summary>
/// 1-RTT keys across key updates (RFC 9001 §6): current read/write keys and key phase, the next read keys (for
/// trial decryption of a peer-initiated update), and the previous read keys kept for a while so reordered packets
/// of the old phase still decrypt.
/// </summary>
internal sealed class OneRttKeys : IDisposable
{
    public OneRttKeys(PacketProtectionKeys read, PacketProtectionKeys write, long? keyUpdateInterval)
    {
        CurrentRead = read;
        CurrentWrite = write;
        KeyUpdateInterval = Math.Min(keyUpdateInterval ?? long.MaxValue, PacketProtectionKeys.ConfidentialityLimit(write.Suite));
    }

    /// <summary>Packets sealed under one write key before this endpoint starts a key update (at most the confidentiality limit, RFC 9001 §6.6).</summary>
    public long KeyUpdateInterval { get; }

    /// <summary>1-RTT packets sealed with the current write keys.</summary>
    public long PacketsSentInPhase { get; set; }

    /// <summary>True when the current write keys have sealed <see cref="KeyUpdateInterval"/> packets.</summary>
    public bool KeyUpdateDue => PacketsSentInPhase >= KeyUpdateInterval;

    public PacketProtectionKeys CurrentRead { get; private set; }

    public PacketProtectionKeys CurrentWrite { get; private set; }

    /// <summary>
    /// Derived on the first packet that carries the other key phase bit, then kept (RFC 9001 §6.3): every such
    /// packet, valid or not, meets the same derived keys, so the timing says nothing about its validity, and an idle
    /// connection does not hold a third AEAD context (about 1.5 KiB of native memory) it may never use.
    /// </summary>
    public PacketProtectionKeys NextRead => _nextRead ??= CurrentRead.NextKeyPhase();

    private PacketProtectionKeys? _nextRead;

    public PacketProtectionKeys? PreviousRead { get; private set; }

    /// <summary>When <see cref="PreviousRead"/> is discarded (three PTOs after the update, RFC 9001 §6.5).</summary>
    public long PreviousReadDiscardTime { get; private set; } = long.MaxValue;

    /// <summary>The current key phase bit.</summary>
    public bool KeyPhase { get; private set; }

    /// <summary>Number of key updates so far.</summary>
    public int Generation { get; private set; }

    /// <summary>First packet number sent with the current write keys; an update may only start once a packet of the current phase was acknowledged (RFC 9001 §6.1).</summary>
    public long FirstPacketNumberInPhase { get; set; } = -1;

    /// <summary>True once a packet sent in the current phase was acknowledged.</summary>
    public bool CurrentPhaseAcknowledged { get; set; }

    /// <summary>Smallest packet number received in the current phase (packets below it with the other phase bit use the previous keys).</summary>
    public long FirstReceivedInPhase { get; set; } = long.MaxValue;

    /// <summary>Moves to the next key phase for both directions.</summary>
    public void Update(long now, long discardDelay)
    {
        PreviousRead?.Dispose();
        PreviousRead = CurrentRead;
        PreviousReadDiscardTime = now + discardDelay;
        CurrentRead = NextRead;
        _nextRead = null;
        PacketProtectionKeys oldWrite = CurrentWrite;
        CurrentWrite = oldWrite.NextKeyPhase();
        oldWrite.Dispose();
        KeyPhase = !KeyPhase;
        Generation++;
        FirstPacketNumberInPhase = -1;
        PacketsSentInPhase = 0;
        CurrentPhaseAcknowledged = false;
        FirstReceivedInPhase = long.MaxValue;
    }

    /// <summary>The connection went quiet: give back the platform AEAD contexts (each is rebuilt on its next packet).</summary>
    public void ReleaseAeadContexts()
    {
        CurrentRead.ReleaseAeadContext();
        CurrentWrite.ReleaseAeadContext();
        _nextRead?.ReleaseAeadContext();
        PreviousRead?.ReleaseAeadContext();
    }

    public void DiscardPreviousIfDue(long now)
    {
        if (PreviousRead is not null && now >= PreviousReadDiscardTime)
        {
            PreviousRead.Dispose();
            PreviousRead = null;
            PreviousReadDiscardTime = long.MaxValue;
        }
    }

    public void Dispose()
    {
        CurrentRead.Dispose();
        CurrentWrite.Dispose();
        _nextRead?.Dispose();
        PreviousRead?.Dispose();
    }
}
