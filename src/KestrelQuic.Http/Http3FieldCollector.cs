using System.Text;
using KestrelQuic.Http3;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http;

/// <summary>
/// Collects and checks the field lines of one response header or trailer section (RFC 9114 §4.1.2, §4.3.2): lower-case
/// valid names, :status only in headers and before every regular field, no connection-specific fields. A violation
/// makes the response malformed (H3_MESSAGE_ERROR); it is recorded rather than thrown because the QPACK decoder must
/// finish the section to keep its state consistent.
/// </summary>
internal sealed class Http3FieldCollector : IQpackFieldHandler
{
    private readonly List<KeyValuePair<string, string>> _fields = [];
    private bool _trailers;
    private bool _sawRegular;

    public int Status { get; private set; } = -1;

    public string? Error { get; private set; }

    public List<KeyValuePair<string, string>> Fields => _fields;

    public void Reset(bool trailers)
    {
        _fields.Clear();
        _trailers = trailers;
        _sawRegular = false;
        Status = -1;
        Error = null;
    }

    public void OnField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (Error is not null)
        {
            return;
        }

        if (!Http3FieldValidation.IsValidFieldName(name))
        {
            Error = "invalid field name";
            return;
        }

        if (!Http3FieldValidation.IsValidFieldValue(value))
        {
            Error = "invalid field value";
            return;
        }

        if (Http3FieldValidation.IsPseudoHeader(name))
        {
            if (_trailers || _sawRegular || !name.SequenceEqual(":status"u8) || Status >= 0)
            {
                Error = "unexpected pseudo-header " + Encoding.ASCII.GetString(name);
                return;
            }

            if (value.Length != 3 || !char.IsAsciiDigit((char)value[0]) || !char.IsAsciiDigit((char)value[1]) || !char.IsAsciiDigit((char)value[2]) || value[0] == (byte)'0')
            {
                Error = "invalid :status";
                return;
            }

            Status = ((value[0] - '0') * 100) + ((value[1] - '0') * 10) + (value[2] - '0');
            return;
        }

        _sawRegular = true;
        if (Http3FieldValidation.IsConnectionSpecific(name))
        {
            Error = "connection-specific field " + Encoding.ASCII.GetString(name);
            return;
        }

        _fields.Add(new KeyValuePair<string, string>(KnownNames.Get(name), Encoding.Latin1.GetString(value)));
    }

    /// <summary>Interned common response field names, so the usual ones allocate nothing.</summary>
    private static class KnownNames
    {
        private static readonly string[] s_names =
        [
            "accept-ranges", "access-control-allow-origin", "age", "alt-svc", "cache-control", "content-encoding",
            "content-length", "content-type", "date", "etag", "expires", "last-modified", "location", "server",
            "set-cookie", "strict-transport-security", "vary", "x-content-type-options", "x-frame-options",
            "content-disposition", "content-language", "content-range", "link", "retry-after", "www-authenticate",
        ];

        public static string Get(ReadOnlySpan<byte> name)
        {
            foreach (string known in s_names)
            {
                if (known.Length == name.Length && Ascii.Equals(name, known))
                {
                    return known;
                }
            }

            return Encoding.ASCII.GetString(name);
        }
    }
}
