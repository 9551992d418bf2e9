using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.Tests.Shared;

/// <summary>Keeps "category|event name|message" of every log entry, for assertions on what a host, transport or client logs (linked into the test projects).</summary>
internal sealed class ListLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _entries = new();

    public IReadOnlyList<string> Entries => _entries.ToArray();

    public ILogger CreateLogger(string categoryName) => new ListLogger(categoryName, _entries);

    /// <summary>Waits until an entry starts with <paramref name="prefix"/> (the engine logs some events after a draining period).</summary>
    public async Task<string> WaitForAsync(string prefix, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            string? entry = _entries.FirstOrDefault(e => e.StartsWith(prefix, StringComparison.Ordinal));
            if (entry is not null) return entry;
            if (cts.IsCancellationRequested) Assert.Fail($"no log entry starting with {prefix}; entries:\n{string.Join('\n', _entries)}");
            await Task.Delay(20, CancellationToken.None);
        }
    }

    public void Dispose()
    {
    }

    private sealed class ListLogger(string category, ConcurrentQueue<string> entries) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => entries.Enqueue($"{category}|{eventId.Name}|{formatter(state, exception)}");
    }
}
