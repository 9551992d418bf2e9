using System.Globalization;

namespace KestrelQuic.Http;

/// <summary>Builds the exceptions the handler surfaces, always carrying the HTTP/3 error code when there is one.</summary>
internal static class Http3Errors
{
    /// <summary>Key of <see cref="Exception.Data"/> holding the HTTP/3 error code (a <see cref="long"/>).</summary>
    public const string ErrorCodeKey = "Http3ErrorCode";

    /// <summary>"H3_REQUEST_CANCELLED (0x10c)", or just the hex value for codes without a name.</summary>
    public static string Describe(long code)
    {
        string hex = "0x" + code.ToString("x", CultureInfo.InvariantCulture);
        string? name = code switch
        {
            0x100 => "H3_NO_ERROR",
            0x101 => "H3_GENERAL_PROTOCOL_ERROR",
            0x102 => "H3_INTERNAL_ERROR",
            0x103 => "H3_STREAM_CREATION_ERROR",
            0x104 => "H3_CLOSED_CRITICAL_STREAM",
            0x105 => "H3_FRAME_UNEXPECTED",
            0x106 => "H3_FRAME_ERROR",
            0x107 => "H3_EXCESSIVE_LOAD",
            0x108 => "H3_ID_ERROR",
            0x109 => "H3_SETTINGS_ERROR",
            0x10a => "H3_MISSING_SETTINGS",
            0x10b => "H3_REQUEST_REJECTED",
            0x10c => "H3_REQUEST_CANCELLED",
            0x10d => "H3_REQUEST_INCOMPLETE",
            0x10e => "H3_MESSAGE_ERROR",
            0x10f => "H3_CONNECT_ERROR",
            0x110 => "H3_VERSION_FALLBACK",
            0x200 => "QPACK_DECOMPRESSION_FAILED",
            0x201 => "QPACK_ENCODER_STREAM_ERROR",
            0x202 => "QPACK_DECODER_STREAM_ERROR",
            _ => null,
        };
        return name is null ? hex : $"{name} ({hex})";
    }

    public static HttpRequestException Request(HttpRequestError error, string message, long? code = null, Exception? inner = null)
    {
        var e = new HttpRequestException(error, code is long c ? $"{message} HTTP/3 error {Describe(c)}." : message, inner);
        if (code is long value)
        {
            e.Data[ErrorCodeKey] = value;
        }

        return e;
    }

    public static HttpIOException Body(HttpRequestError error, string message, long? code = null, Exception? inner = null)
    {
        var e = new HttpIOException(error, code is long c ? $"{message} HTTP/3 error {Describe(c)}." : message, inner);
        if (code is long value)
        {
            e.Data[ErrorCodeKey] = value;
        }

        return e;
    }
}

/// <summary>The request was not processed by the server (GOAWAY, H3_REQUEST_REJECTED, connection gone before sending): it may be retried elsewhere.</summary>
internal sealed class Http3RetryException : Exception
{
    public Http3RetryException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
