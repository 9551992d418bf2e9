using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>Formats NSS key log lines (SSLKEYLOGFILE format) and appends them to a file on the background writer.</summary>
internal sealed class SecretsLogWriter : IKeyLogSink
{
    private static readonly ConcurrentDictionary<string, SecretsLogWriter> s_writers = new(StringComparer.Ordinal);
    private readonly string _path;
    private readonly ILogger? _logger;

    private SecretsLogWriter(string path, ILogger? logger)
    {
        _path = path;
        _logger = logger;
    }

    /// <summary>One writer per file in the process; <paramref name="created"/> tells whether this call created it (warn once).</summary>
    public static SecretsLogWriter For(string path, ILogger? logger, out bool created)
    {
        string full = Path.GetFullPath(path);
        bool added = false;
        SecretsLogWriter writer = s_writers.GetOrAdd(full, p =>
        {
            added = true;
            return new SecretsLogWriter(p, logger);
        });
        created = added;
        return writer;
    }

    public string FilePath => _path;

    public void Write(string label, ReadOnlySpan<byte> clientRandom, ReadOnlySpan<byte> secret)
    {
        // "<label> <client random hex> <secret hex>\n": a handful of lines per connection.
        int length = label.Length + 1 + 2 * clientRandom.Length + 1 + 2 * secret.Length + 1;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        int n = Encoding.ASCII.GetBytes(label, buffer);
        buffer[n++] = (byte)' ';
        n += WriteHex(clientRandom, buffer.AsSpan(n));
        buffer[n++] = (byte)' ';
        n += WriteHex(secret, buffer.AsSpan(n));
        buffer[n++] = (byte)'\n';
        BackgroundFileWriter.Shared.Append(_path, buffer, n, TraceOutput.SecretsLog, _logger);
    }

    private static int WriteHex(ReadOnlySpan<byte> data, Span<byte> dest)
    {
        Convert.TryToHexStringLower(data, dest, out int written);
        return written;
    }
}
