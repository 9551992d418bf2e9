using System.Buffers;
using System.Net.Http.Headers;
using KestrelQuic.Http3.Frames;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http;

/// <summary>Encodes a request's header section into a HEADERS frame (RFC 9114 §4.3.1).</summary>
internal static class Http3RequestHeaderWriter
{
    private const int StackallocThreshold = 128;

    /// <summary>
    /// Writes the HEADERS frame for <paramref name="request"/> on <paramref name="streamId"/>; returns the field section
    /// size as RFC 9114 §4.2.2 counts it. Dynamic-table insertions are left in the encoder for its encoder stream.
    /// <paramref name="traced"/>, when given (qlog on), receives each field line as sent.
    /// </summary>
    public static long WriteHeadersFrame(ArrayBufferWriter<byte> destination, HttpRequestMessage request, QpackEncoder encoder, long streamId, long? contentLength, List<KeyValuePair<string, string>>? traced = null)
    {
        long peerLimit = encoder.PeerMaxFieldSectionSize;
        var section = new ArrayBufferWriter<byte>(256);
        long size;
        lock (encoder)
        {
            encoder.BeginFieldSection(streamId);
            try
            {
                size = WriteFields(request, encoder, contentLength, traced);
                if (size > peerLimit)
                {
                    throw new HttpRequestException(HttpRequestError.ConfigurationLimitExceeded, $"The request headers ({size} bytes) exceed the server's SETTINGS_MAX_FIELD_SECTION_SIZE ({peerLimit}).");
                }
            }
            catch
            {
                encoder.CancelFieldSection();
                throw;
            }

            encoder.EndFieldSection(section);
        }

        Http3FrameWriter.WriteHeadersFrame(destination, section.WrittenSpan);
        return size;
    }

    private static long WriteFields(HttpRequestMessage request, QpackEncoder encoder, long? contentLength, List<KeyValuePair<string, string>>? traced)
    {
        Uri uri = request.RequestUri!;
        long size = 0;

        string method = request.Method.Method;
        string? authority = request.Headers.NonValidated.TryGetValues("Host", out HeaderStringValues host) ? host.ToString() : null;
        if (string.IsNullOrEmpty(authority))
        {
            authority = GetAuthority(uri);
        }

        // Pseudo-headers first (§4.3.1), :authority instead of Host.
        size += Write(encoder, ":method", method, traced);
        if (request.Method != HttpMethod.Connect)
        {
            size += Write(encoder, ":scheme", uri.Scheme, traced);
        }

        size += Write(encoder, ":authority", authority, traced);
        if (request.Method != HttpMethod.Connect)
        {
            size += Write(encoder, ":path", string.IsNullOrEmpty(uri.PathAndQuery) ? "/" : uri.PathAndQuery, traced);
        }

        foreach (KeyValuePair<string, HeaderStringValues> header in request.Headers.NonValidated)
        {
            size += WriteHeader(encoder, header.Key, header.Value, traced);
        }

        if (request.Content is { } content)
        {
            foreach (KeyValuePair<string, HeaderStringValues> header in content.Headers.NonValidated)
            {
                if (!header.Key.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                {
                    size += WriteHeader(encoder, header.Key, header.Value, traced);
                }
            }
        }

        if (contentLength is long length)
        {
            size += Write(encoder, "content-length", length.ToString(System.Globalization.CultureInfo.InvariantCulture), traced);
        }

        return size;
    }

    /// <summary>The :authority for a URI: IDN host (bracketed when IPv6) and the port unless it is the scheme's default.</summary>
    public static string GetAuthority(Uri uri)
    {
        string host = uri.IdnHost;
        if (uri.HostNameType == UriHostNameType.IPv6 && !host.StartsWith('['))
        {
            host = "[" + host + "]";
        }

        return uri.IsDefaultPort ? host : host + ":" + uri.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private static long WriteHeader(QpackEncoder encoder, string name, HeaderStringValues values, List<KeyValuePair<string, string>>? traced)
    {
        // Connection-specific fields are forbidden in HTTP/3 (§4.2); Host became :authority.
        if (IsExcluded(name))
        {
            return 0;
        }

        if (name.Equals("TE", StringComparison.OrdinalIgnoreCase))
        {
            // Only "te: trailers" is allowed.
            foreach (string v in values)
            {
                if (v.Equals("trailers", StringComparison.OrdinalIgnoreCase))
                {
                    return Write(encoder, "te", "trailers", traced);
                }
            }

            return 0;
        }

        // HeaderStringValues.ToString joins with the header's own separator (", ", or " " for User-Agent).
        string value = values.Count == 1 ? values.GetEnumerator().AsSingle() : values.ToString();
        return Write(encoder, name, value, traced);
    }

    private static bool IsExcluded(string name) =>
        name.Equals("Host", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Connection", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Keep-Alive", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Proxy-Connection", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Upgrade", StringComparison.OrdinalIgnoreCase);

    private static string AsSingle(this HeaderStringValues.Enumerator enumerator)
    {
        enumerator.MoveNext();
        return enumerator.Current;
    }

    private static long Write(QpackEncoder encoder, string name, string value, List<KeyValuePair<string, string>>? traced)
    {
        // Field names are sent in lower case (§4.2): HttpHeaders keeps the canonical "Content-Type" spelling.
        Span<byte> lower = name.Length <= StackallocThreshold ? stackalloc byte[name.Length] : new byte[name.Length];
        for (int i = 0; i < name.Length; i++)
        {
            char c = name[i];
            if (c > 0x7F)
            {
                throw new HttpRequestException(HttpRequestError.Unknown, $"Header name '{name}' is not ASCII.");
            }

            lower[i] = (byte)char.ToLowerInvariant(c);
        }

        int valueLength = value.Length;
        byte[]? rented = null;
        Span<byte> valueBytes = valueLength <= 256 ? stackalloc byte[valueLength] : (rented = ArrayPool<byte>.Shared.Rent(valueLength)).AsSpan(0, valueLength);
        try
        {
            for (int i = 0; i < value.Length; i++)
            {
                char c = value[i];

                // Values are Latin-1 on the wire; CR, LF and NUL would allow request smuggling (RFC 9114 §4.1.2).
                if (c > 0xFF || c is '\r' or '\n' or '\0')
                {
                    throw new HttpRequestException(HttpRequestError.Unknown, $"The value of header '{name}' has a character that cannot be sent.");
                }

                valueBytes[i] = (byte)c;
            }

            bool sensitive = name.Equals("Authorization", StringComparison.OrdinalIgnoreCase) || name.Equals("Cookie", StringComparison.OrdinalIgnoreCase)
                || name.Equals("Proxy-Authorization", StringComparison.OrdinalIgnoreCase);
            encoder.AddFieldLine(lower, valueBytes, neverIndexed: sensitive);
            traced?.Add(new KeyValuePair<string, string>(System.Text.Encoding.ASCII.GetString(lower), value));
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        return QpackEncoder.GetFieldLineSize(name.Length, valueLength);
    }
}
