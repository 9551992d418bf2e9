using KestrelQuic.Wire;

namespace KestrelQuic.Tls;

/// <summary>What a server learns from a ClientHello before choosing its configuration: the SNI host name and the offered ALPN protocols.</summary>
public sealed class ClientHelloInfo
{
    private ClientHelloInfo(string? serverName, IReadOnlyList<string> applicationProtocols)
    {
        ServerName = serverName;
        ApplicationProtocols = applicationProtocols;
    }

    /// <summary>The host name from the server_name extension, or null when the client sent none.</summary>
    public string? ServerName { get; }

    /// <summary>The protocols offered in the application_layer_protocol_negotiation extension, in the client's order.</summary>
    public IReadOnlyList<string> ApplicationProtocols { get; }

    /// <summary>Reads a whole ClientHello handshake message (with its 4-byte header). False when it is malformed.</summary>
    internal static bool TryParse(ReadOnlySpan<byte> message, out ClientHelloInfo? info)
    {
        info = null;
        var r = new SpanReader(message);
        if (!r.TryReadByte(out byte type) || type != 1 || !r.TryReadUInt24(out int length) || length != r.Remaining) return false;
        // legacy_version, random, legacy_session_id, cipher_suites, legacy_compression_methods, extensions (RFC 8446 §4.1.2).
        if (!r.TrySkip(2 + 32) || !r.TryReadVector(1, out _) || !r.TryReadVector(2, out _) || !r.TryReadVector(1, out _)) return false;
        if (!r.TryReadVector(2, out ReadOnlySpan<byte> extensions) || !r.IsEmpty) return false;

        string? serverName = null;
        var protocols = new List<string>();
        var e = new SpanReader(extensions);
        while (!e.IsEmpty)
        {
            if (!e.TryReadUInt16(out ushort extensionType) || !e.TryReadVector(2, out ReadOnlySpan<byte> value)) return false;
            if (extensionType == ExtensionType.ServerName)
            {
                var s = new SpanReader(value);
                if (!s.TryReadVector(2, out ReadOnlySpan<byte> list)) return false;
                var l = new SpanReader(list);
                while (!l.IsEmpty)
                {
                    if (!l.TryReadByte(out byte nameType) || !l.TryReadVector(2, out ReadOnlySpan<byte> name)) return false;
                    if (nameType == 0 && serverName is null) serverName = System.Text.Encoding.ASCII.GetString(name);
                }
            }
            else if (extensionType == ExtensionType.ApplicationLayerProtocolNegotiation)
            {
                var s = new SpanReader(value);
                if (!s.TryReadVector(2, out ReadOnlySpan<byte> list)) return false;
                var l = new SpanReader(list);
                while (!l.IsEmpty)
                {
                    if (!l.TryReadVector(1, out ReadOnlySpan<byte> protocol) || protocol.IsEmpty) return false;
                    protocols.Add(System.Text.Encoding.ASCII.GetString(protocol));
                }
            }
        }

        info = new ClientHelloInfo(serverName, protocols);
        return true;
    }
}
