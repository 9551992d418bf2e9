using KestrelQuic.Configuration;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Diagnostics;

/// <summary>
/// The async layer's <see cref="IConnectionTracerFactory"/>: secrets log from <see cref="QuicConfiguration.SecretsLogFile"/>
/// (or SSLKEYLOGFILE when <see cref="QuicConfiguration.UseSslKeyLogFileEnvironmentVariable"/> is set) and qlog from
/// <see cref="QuicConfiguration.QlogDirectory"/>. All file I/O happens on <see cref="BackgroundFileWriter"/>.
/// </summary>
internal sealed class ConnectionTracerFactory(ILogger? logger) : IConnectionTracerFactory
{
    public const string SslKeyLogFileVariable = "SSLKEYLOGFILE";
    private readonly HashSet<string> _announced = new(StringComparer.Ordinal);

    public IKeyLogSink? CreateKeyLog(QuicConfiguration configuration)
    {
        string? path = configuration.SecretsLogFile;
        string source = nameof(QuicConfiguration.SecretsLogFile);
        if (string.IsNullOrEmpty(path) && configuration.UseSslKeyLogFileEnvironmentVariable)
        {
            path = Environment.GetEnvironmentVariable(SslKeyLogFileVariable);
            source = SslKeyLogFileVariable;
        }

        if (string.IsNullOrEmpty(path)) return null;
        SecretsLogWriter writer = SecretsLogWriter.For(path, logger, out _);
        if (logger is not null && Announce("secrets:" + writer.FilePath)) QuicLog.SecretsLogEnabled(logger, writer.FilePath, source);
        return writer;
    }

    public IQlogSink? CreateQlog(QuicConfiguration configuration, bool isServer, ReadOnlySpan<byte> originalDestinationConnectionId, long now)
    {
        if (string.IsNullOrEmpty(configuration.QlogDirectory)) return null;
        string directory = Path.GetFullPath(configuration.QlogDirectory);
        if (logger is not null && Announce("qlog:" + directory)) QuicLog.QlogEnabled(logger, directory);
        // HTTP/3 events come from the layer above (QuicQlogTrace); list their schema when h3 is on offer.
        bool http3 = configuration.ApplicationProtocols.Any(static p => p == "h3" || p.StartsWith("h3-", StringComparison.Ordinal));
        return new QlogWriter(Path.Combine(directory, QlogWriter.FileName(originalDestinationConnectionId, isServer)), isServer, originalDestinationConnectionId, now, logger, http3: http3);
    }

    private bool Announce(string key)
    {
        lock (_announced) return _announced.Add(key);
    }
}
