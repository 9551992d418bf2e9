namespace KestrelQuic.Http3;

/// <summary>
/// HTTP/3 field checks for decoded field sections (RFC 9114 §4.2, RFC 9110 §5.1 and §5.5): a message that fails them
/// is malformed (<see cref="Http3ErrorCode.MessageError"/>). QPACK itself transports any octets; these rules belong to
/// the HTTP layer, which calls them from its <see cref="Qpack.IQpackFieldHandler"/>.
/// </summary>
public static class Http3FieldValidation
{
    /// <summary>
    /// True when <paramref name="name"/> is a non-empty token of lower-case characters (RFC 9110 tchar without upper
    /// case), optionally after a single leading ':' (pseudo-header).
    /// </summary>
    public static bool IsValidFieldName(ReadOnlySpan<byte> name)
    {
        if (!name.IsEmpty && name[0] == (byte)':')
        {
            name = name.Slice(1);
        }

        if (name.IsEmpty)
        {
            return false;
        }

        foreach (byte b in name)
        {
            if (!IsLowerCaseTokenChar(b))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True when <paramref name="name"/> is a pseudo-header (starts with ':').</summary>
    public static bool IsPseudoHeader(ReadOnlySpan<byte> name) => !name.IsEmpty && name[0] == (byte)':';

    /// <summary>
    /// True when <paramref name="value"/> has no NUL, CR or LF and no leading or trailing space or tab
    /// (RFC 9110 §5.5; RFC 9114 §4.1.2 makes violations malformed).
    /// </summary>
    public static bool IsValidFieldValue(ReadOnlySpan<byte> value)
    {
        if (value.IsEmpty)
        {
            return true;
        }

        if (IsWhitespace(value[0]) || IsWhitespace(value[^1]))
        {
            return false;
        }

        return value.IndexOfAny((byte)0, (byte)'\r', (byte)'\n') < 0;
    }

    /// <summary>
    /// True for connection-specific fields that must not appear in HTTP/3 (RFC 9114 §4.2): connection, keep-alive,
    /// proxy-connection, transfer-encoding and upgrade. ("te" is allowed in requests with the value "trailers".)
    /// </summary>
    public static bool IsConnectionSpecific(ReadOnlySpan<byte> name) =>
        name.SequenceEqual("connection"u8)
        || name.SequenceEqual("keep-alive"u8)
        || name.SequenceEqual("proxy-connection"u8)
        || name.SequenceEqual("transfer-encoding"u8)
        || name.SequenceEqual("upgrade"u8);

    private static bool IsWhitespace(byte b) => b == (byte)' ' || b == (byte)'\t';

    // tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    private static bool IsLowerCaseTokenChar(byte b) =>
        (b >= (byte)'a' && b <= (byte)'z')
        || (b >= (byte)'0' && b <= (byte)'9')
        || b is (byte)'!' or (byte)'#' or (byte)'$' or (byte)'%' or (byte)'&' or (byte)'\'' or (byte)'*'
            or (byte)'+' or (byte)'-' or (byte)'.' or (byte)'^' or (byte)'_' or (byte)'`' or (byte)'|' or (byte)'~';
}
