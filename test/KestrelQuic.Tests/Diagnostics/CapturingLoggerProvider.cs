using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Tests.Diagnostics;

/// <summary>Keeps every log entry (all levels) for assertions.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider, ILoggerFactory
{
    private readonly ConcurrentQueue<Entry> _entries = new();

    public IReadOnlyList<Entry> Entries => _entries.ToArray();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

    public void Dispose()
    {
    }

    public async Task<Entry> WaitFor(Func<Entry, bool> match, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            Entry? found = _entries.FirstOrDefault(match);
            if (found is not null) return found;
            await Task.Delay(20, cts.Token);
        }
    }

    internal sealed record Entry(string Category, LogLevel Level, EventId EventId, string Message, IReadOnlyDictionary<string, object?> State, Exception? Exception)
    {
        public object? this[string key] => State.GetValueOrDefault(key);
    }

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = new Dictionary<string, object?>();
            if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (KeyValuePair<string, object?> p in pairs) values[p.Key] = p.Value;
            }

            owner._entries.Enqueue(new Entry(category, logLevel, eventId, formatter(state, exception), values, exception));
        }
    }
}
