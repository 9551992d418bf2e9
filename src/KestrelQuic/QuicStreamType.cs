namespace KestrelQuic;

/// <summary>The directionality of a QUIC stream (RFC 9000 §2.1).</summary>
public enum QuicStreamType
{
    /// <summary>A bidirectional stream: both endpoints can send data on it.</summary>
    Bidirectional,

    /// <summary>A unidirectional stream: only the initiator sends data on it.</summary>
    Unidirectional,
}
