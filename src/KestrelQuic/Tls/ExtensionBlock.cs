using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

/// <summary>Failure while processing peer input; caught at the <see cref="TlsHandshake"/> boundary and turned into an alert.</summary>
internal sealed class TlsAlertException : Exception
{
    public TlsAlertException(TlsAlert alert, string reason)
        : base(reason)
    {
        Alert = alert;
    }

    public TlsAlertException()
    {
    }

    public TlsAlertException(string message)
        : base(message)
    {
    }

    public TlsAlertException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public TlsAlert Alert { get; } = TlsAlert.InternalError;
}

/// <summary>A parsed extensions block (RFC 8446 §4.2): duplicates rejected, order kept.</summary>
internal sealed class ExtensionBlock
{
    private readonly Dictionary<ushort, byte[]> _values = [];
    private readonly List<ushort> _order = [];

    public IReadOnlyList<ushort> Types => _order;

    public int Count => _order.Count;

    public static bool IsKnown(ushort type) => type is
        ExtensionType.ServerName or ExtensionType.SupportedGroups or ExtensionType.SignatureAlgorithms or
        ExtensionType.ApplicationLayerProtocolNegotiation or ExtensionType.PreSharedKey or ExtensionType.EarlyData or
        ExtensionType.SupportedVersions or ExtensionType.Cookie or ExtensionType.PskKeyExchangeModes or
        ExtensionType.CertificateAuthorities or ExtensionType.PostHandshakeAuth or ExtensionType.SignatureAlgorithmsCert or
        ExtensionType.KeyShare or ExtensionType.QuicTransportParameters;

    /// <summary>Parses the contents of an <c>Extension extensions&lt;..2^16-1&gt;</c> vector (without its length).</summary>
    public static ExtensionBlock Parse(ReadOnlySpan<byte> data)
    {
        var block = new ExtensionBlock();
        var r = new SpanReader(data);
        while (!r.IsEmpty)
        {
            if (!r.TryReadUInt16(out ushort type) || !r.TryReadVector(2, out ReadOnlySpan<byte> value))
            {
                throw new TlsAlertException(TlsAlert.DecodeError, "truncated extension");
            }

            // "There MUST NOT be more than one extension of the same type in a given extension block" (RFC 8446 §4.2).
            if (!block._values.TryAdd(type, value.ToArray()))
            {
                throw new TlsAlertException(TlsAlert.IllegalParameter, $"duplicate extension {type}");
            }

            block._order.Add(type);
        }

        return block;
    }

    public bool Contains(ushort type) => _values.ContainsKey(type);

    public byte[]? Get(ushort type) => _values.TryGetValue(type, out byte[]? v) ? v : null;
}
