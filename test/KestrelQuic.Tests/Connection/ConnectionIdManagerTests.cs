using System.Security.Cryptography;
using KestrelQuic.Connection;
using KestrelQuic.Protocol;

namespace KestrelQuic.Tests.Connection;

/// <summary>Connection ID management: RFC 9000 §5.1, §10.3, §19.15 and §19.16.</summary>
public sealed class ConnectionIdManagerTests
{
    private static byte[] Cid(byte b) => Enumerable.Repeat(b, 8).ToArray();

    private static byte[] Token(byte b) => Enumerable.Repeat(b, 16).ToArray();

    private static byte[] DerivedToken(ReadOnlySpan<byte> cid) => SHA256.HashData(cid)[..16];

    private static List<ulong> DrainRetirements(ConnectionIdManager m)
    {
        var list = new List<ulong>();
        while (m.TryDequeueRetirement(out ulong s)) list.Add(s);
        list.Sort();
        return list;
    }

    /// <summary>A client-side manager whose peer (the server) handshake ID is sequence 0 with a reset token.</summary>
    private static ConnectionIdManager ClientWithPeer(int localActiveLimit = 4)
    {
        var m = new ConnectionIdManager(8, null, localActiveLimit);
        m.AddInitialLocalId(m.NewLocalId());
        m.SetInitialPeerId(Cid(0xA0));
        m.SetInitialPeerResetToken(Token(0xB0));
        return m;
    }

    private static void NewId(ConnectionIdManager m, ulong sequence, ulong retirePriorTo = 0)
    {
        Assert.True(m.OnNewConnectionId(sequence, retirePriorTo, Cid((byte)(0xA0 + sequence)), Token((byte)(0xB0 + sequence)), out TransportError e), e.Reason);
    }

    [Fact]
    public void NewConnectionIdFlood_WhileRetirementsCannotBeSent_IsConnectionIdLimitError()
    {
        // Each NEW_CONNECTION_ID retires the previous ID; nothing is sent, so the retirements pile up until the bound.
        ConnectionIdManager m = ClientWithPeer(localActiveLimit: 4);
        TransportError error = default;
        ulong sequence = 1;
        for (; sequence < 1000; sequence++)
        {
            byte[] cid = [.. BitConverter.GetBytes(sequence), 0xCC];
            if (!m.OnNewConnectionId(sequence, sequence, cid, Token(1), out error)) break;
        }

        Assert.Equal(TransportErrorCode.ConnectionIdLimitError, error.Code);
        Assert.InRange(m.PendingRetirementCount, 2 * 4, 65);
        Assert.InRange(sequence, 64UL, 66UL);
    }

    [Fact]
    public void RetiredSequenceResent_ManyTimes_RetirementsBounded()
    {
        ConnectionIdManager m = ClientWithPeer(localActiveLimit: 4);
        NewId(m, 5, retirePriorTo: 5);
        DrainRetirements(m);

        // Sequences below retire_prior_to are retired on sight, once per frame: a flood of them is bounded too.
        TransportError error = default;
        int frames = 0;
        while (frames < 1000 && m.OnNewConnectionId(1 + (ulong)(frames % 4), 5, [.. BitConverter.GetBytes(frames), 0xDD], Token(2), out error)) frames++;
        Assert.Equal(TransportErrorCode.ConnectionIdLimitError, error.Code);
        Assert.True(frames < 100, $"{frames} frames accepted");
    }

    [Fact]
    public void IssueLocalIds_UpToPeersActiveConnectionIdLimit()
    {
        var m = new ConnectionIdManager(8, DerivedToken, localActiveLimit: 4);
        var events = new List<(ulong Seq, bool Added)>();
        m.LocalIdChanged += (e, added) => events.Add((e.SequenceNumber, added));
        m.AddInitialLocalId(m.NewLocalId());

        m.IssueLocalIds(peerActiveLimit: 4);

        Assert.Equal(new ulong[] { 0, 1, 2, 3 }, m.LocalIds.Select(e => e.SequenceNumber));
        Assert.All(m.LocalIds, e => Assert.Equal(8, e.ConnectionId.Length));
        Assert.Equal(4, m.LocalIds.Select(e => Convert.ToHexString(e.ConnectionId)).Distinct().Count());
        Assert.All(m.LocalIds, e => Assert.Equal(DerivedToken(e.ConnectionId), e.StatelessResetToken));
        Assert.False(m.LocalIds[0].NeedsSend); // the handshake ID travels in the long header, not NEW_CONNECTION_ID
        Assert.All(m.LocalIds.Skip(1), e => Assert.True(e.NeedsSend));
        Assert.Equal(new[] { (0UL, true), (1UL, true), (2UL, true), (3UL, true) }, events);

        m.IssueLocalIds(4); // already at the limit
        Assert.Equal(4, m.LocalIds.Count);
    }

    [Theory]
    [InlineData(0, 2)]   // values below the RFC minimum of 2 count as 2
    [InlineData(1, 2)]
    [InlineData(3, 3)]
    [InlineData(100, 8)] // sanity cap on what we keep issued
    public void IssueLocalIds_ClampsPeerLimit(int peerLimit, int expected)
    {
        var m = new ConnectionIdManager(8, null, 4);
        m.AddInitialLocalId(m.NewLocalId());
        m.IssueLocalIds(peerLimit);
        Assert.Equal(expected, m.LocalIds.Count);
    }

    [Fact]
    public void RetireConnectionId_RemovesLocalIdAndIssuesReplacement()
    {
        var m = new ConnectionIdManager(8, null, 4);
        byte[] first = m.NewLocalId();
        m.AddInitialLocalId(first);
        m.IssueLocalIds(3);
        var removed = new List<ulong>();
        m.LocalIdChanged += (e, added) => { if (!added) removed.Add(e.SequenceNumber); };
        byte[] retired = m.LocalIds[1].ConnectionId;
        Assert.NotNull(m.FindLocal(retired));

        Assert.True(m.OnRetireConnectionId(1, first, out _));
        Assert.Equal(new ulong[] { 1 }, removed);
        Assert.Equal(new ulong[] { 0, 2, 3 }, m.LocalIds.Select(e => e.SequenceNumber)); // 3 replaces 1
        Assert.Null(m.FindLocal(retired)); // no longer routed to this connection
        Assert.NotNull(m.FindLocal(first));

        // Retiring an already retired ID is harmless (a retransmitted frame) and issues nothing.
        Assert.True(m.OnRetireConnectionId(1, first, out _));
        Assert.Equal(3, m.LocalIds.Count);
    }

    [Fact]
    public void RetireConnectionId_ReplacementKeepsPeerSupplied()
    {
        var m = new ConnectionIdManager(8, null, 4);
        byte[] first = m.NewLocalId();
        m.AddInitialLocalId(first);
        m.IssueLocalIds(2);
        Assert.True(m.OnRetireConnectionId(1, first, out _));
        Assert.Equal(new ulong[] { 0, 2 }, m.LocalIds.Select(e => e.SequenceNumber));
        Assert.True(m.LocalIds[1].NeedsSend);
    }

    [Fact]
    public void RetireConnectionId_NeverIssuedSequence_IsProtocolViolation()
    {
        var m = new ConnectionIdManager(8, null, 4);
        byte[] first = m.NewLocalId();
        m.AddInitialLocalId(first);
        m.IssueLocalIds(2);
        Assert.False(m.OnRetireConnectionId(2, first, out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
        Assert.Equal(0x19UL, e.FrameType);
    }

    [Fact]
    public void RetireConnectionId_OfThePacketsOwnDestinationId_IsProtocolViolation()
    {
        var m = new ConnectionIdManager(8, null, 4);
        byte[] first = m.NewLocalId();
        m.AddInitialLocalId(first);
        m.IssueLocalIds(2);
        Assert.False(m.OnRetireConnectionId(0, first, out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
    }

    [Fact]
    public void NewConnectionId_AddsSpareIdWithoutSwitching()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        Assert.Equal(new ulong[] { 0, 1 }, m.PeerIds.Select(e => e.SequenceNumber));
        Assert.Equal(0UL, m.ActivePeer!.SequenceNumber);
        Assert.Equal(Cid(0xA1), m.PeerIds[1].ConnectionId);
        Assert.Equal(Token(0xB1), m.PeerIds[1].StatelessResetToken);
        Assert.False(m.HasPendingRetirements);
    }

    [Fact]
    public void NewConnectionId_RetirePriorTo_RetiresOlderIdsAndSwitches()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        NewId(m, 2, retirePriorTo: 2);

        Assert.Equal(new ulong[] { 0, 1 }, DrainRetirements(m));
        Assert.Equal(new ulong[] { 2 }, m.PeerIds.Select(e => e.SequenceNumber));
        Assert.Equal(2UL, m.ActivePeer!.SequenceNumber); // MUST stop using retired IDs (RFC 9000 §5.1.2)
        Assert.Equal(Cid(0xA2), m.ActivePeer.ConnectionId);
    }

    [Fact]
    public void NewConnectionId_BelowEarlierRetirePriorTo_IsRetiredImmediately()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 3, retirePriorTo: 3);
        DrainRetirements(m);

        NewId(m, 1); // arrives late (reordered)
        Assert.Equal(new ulong[] { 1 }, DrainRetirements(m));
        Assert.DoesNotContain(m.PeerIds, e => e.SequenceNumber == 1);
        Assert.Equal(3UL, m.ActivePeer!.SequenceNumber);
    }

    [Fact]
    public void NewConnectionId_BeyondActiveConnectionIdLimit_IsConnectionIdLimitError()
    {
        ConnectionIdManager m = ClientWithPeer(localActiveLimit: 2);
        NewId(m, 1);
        Assert.False(m.OnNewConnectionId(2, 0, Cid(0xA2), Token(0xB2), out TransportError e));
        Assert.Equal(TransportErrorCode.ConnectionIdLimitError, e.Code);
        Assert.Equal(0x18UL, e.FrameType);
    }

    [Fact]
    public void NewConnectionId_LimitCountedAfterRetiring()
    {
        // RFC 9000 §5.1.1: the limit applies after adding and retiring IDs for the frame.
        ConnectionIdManager m = ClientWithPeer(localActiveLimit: 2);
        NewId(m, 1);
        NewId(m, 2, retirePriorTo: 1);
        Assert.Equal(new ulong[] { 1, 2 }, m.PeerIds.Select(e => e.SequenceNumber).Order());
        Assert.Equal(new ulong[] { 0 }, DrainRetirements(m));
    }

    [Fact]
    public void NewConnectionId_SameSequenceDifferentId_IsProtocolViolation()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        Assert.False(m.OnNewConnectionId(1, 0, Cid(0xEE), Token(0xB1), out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
    }

    [Fact]
    public void NewConnectionId_SameSequenceDifferentToken_IsProtocolViolation()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        Assert.False(m.OnNewConnectionId(1, 0, Cid(0xA1), Token(0xEE), out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
    }

    [Fact]
    public void NewConnectionId_SameIdDifferentSequence_IsProtocolViolation()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        Assert.False(m.OnNewConnectionId(2, 0, Cid(0xA1), Token(0xB2), out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
    }

    [Fact]
    public void NewConnectionId_Retransmission_IsIgnored()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        NewId(m, 1);
        Assert.Equal(2, m.PeerIds.Count);
    }

    [Fact]
    public void NewConnectionId_WhilePeerUsesZeroLengthId_IsProtocolViolation()
    {
        var m = new ConnectionIdManager(8, null, 4);
        m.SetInitialPeerId(Array.Empty<byte>());
        Assert.False(m.OnNewConnectionId(1, 0, Cid(1), Token(1), out TransportError e));
        Assert.Equal(TransportErrorCode.ProtocolViolation, e.Code);
    }

    [Fact]
    public void RotatePeerId_SwitchesToLowestSpareAndRetiresCurrent()
    {
        ConnectionIdManager m = ClientWithPeer();
        Assert.False(m.RotatePeerId()); // no spare ID yet
        Assert.False(m.HasPendingRetirements);

        NewId(m, 2);
        NewId(m, 1);
        Assert.True(m.RotatePeerId());
        Assert.Equal(1UL, m.ActivePeer!.SequenceNumber);
        Assert.Equal(new ulong[] { 0 }, DrainRetirements(m));

        Assert.True(m.RotatePeerId());
        Assert.Equal(2UL, m.ActivePeer!.SequenceNumber);
        Assert.Equal(new ulong[] { 1 }, DrainRetirements(m));
        Assert.Equal(new ulong[] { 2 }, m.PeerIds.Select(e => e.SequenceNumber));

        Assert.False(m.RotatePeerId());
        Assert.Equal(2UL, m.ActivePeer!.SequenceNumber);
    }

    [Fact]
    public void RotatePeerId_RetransmittedNewConnectionIdDoesNotReviveRetiredId()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);
        NewId(m, 2);
        Assert.True(m.RotatePeerId()); // 0 → 1
        Assert.True(m.RotatePeerId()); // 1 → 2, sequence 1 retired
        DrainRetirements(m);

        // The NEW_CONNECTION_ID for sequence 1 is received again (its ACK was lost and the peer retransmitted it).
        NewId(m, 1);

        // A retired ID must not be used again (RFC 9000 §5.1.2): it is not a spare to rotate to.
        Assert.DoesNotContain(m.PeerIds, e => e.SequenceNumber == 1);
        Assert.False(m.RotatePeerId());
        Assert.Equal(2UL, m.ActivePeer!.SequenceNumber);
    }

    [Fact]
    public void StatelessResetToken_MatchesOnlyTheIdInUse()
    {
        ConnectionIdManager m = ClientWithPeer();
        NewId(m, 1);

        Assert.True(m.IsPeerStatelessResetToken(Token(0xB0)));  // handshake ID's token from transport parameters
        Assert.False(m.IsPeerStatelessResetToken(Token(0x55)));
        Assert.False(m.IsPeerStatelessResetToken(Token(0xB1))); // RFC 9000 §10.3.1: not for IDs not yet used

        Assert.True(m.RotatePeerId());
        Assert.True(m.IsPeerStatelessResetToken(Token(0xB1)));
        Assert.False(m.IsPeerStatelessResetToken(Token(0xB0))); // nor for retired IDs
    }

    [Fact]
    public void SetInitialPeerResetToken_AppliesToHandshakeId()
    {
        var m = new ConnectionIdManager(8, null, 4);
        m.SetInitialPeerId(Cid(1));
        Assert.Null(m.ActivePeer!.StatelessResetToken);
        Assert.False(m.IsPeerStatelessResetToken(Token(7)));
        m.SetInitialPeerResetToken(Token(7));
        Assert.Equal(Token(7), m.ActivePeer!.StatelessResetToken);
        Assert.Equal(Cid(1), m.ActivePeer.ConnectionId);
        Assert.True(m.IsPeerStatelessResetToken(Token(7)));
    }
}
