using System.Diagnostics.Metrics;
using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>README's Observability section lists every log event (engine and transport) and every instrument of the meter.</summary>
public sealed partial class ObservabilityDocsTests
{
    [Theory]
    [InlineData(typeof(QuicConnection), "KestrelQuic.Diagnostics.QuicLog", "Category `KestrelQuic`")]
    [InlineData(typeof(ManagedQuicTransportFactory), "KestrelQuic.AspNetCore.Log", "category `KestrelQuic.AspNetCore`")]
    public void Readme_ListsEveryLogEvent_WithItsNameAndLevel(Type inAssembly, string logClass, string tableIntro)
    {
        string section = ObservabilitySection();
        int intro = section.IndexOf(tableIntro, StringComparison.Ordinal);
        Assert.True(intro >= 0, tableIntro);
        Dictionary<int, (string Name, string Level)> documented = TableRow().Matches(FirstTable(section[intro..]))
            .ToDictionary(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), m => (m.Groups[2].Value, m.Groups[3].Value));

        Type log = inAssembly.Assembly.GetType(logClass, throwOnError: true)!;
        var events = log.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            .Select(m => m.GetCustomAttribute<LoggerMessageAttribute>()).OfType<LoggerMessageAttribute>().ToList();
        Assert.NotEmpty(events);
        Assert.Equal(events.Select(e => e.EventId).Order(), documented.Keys.Order());
        foreach (LoggerMessageAttribute e in events)
        {
            (string name, string level) = documented[e.EventId];
            Assert.Equal(e.EventName, name);
            // Events whose level the caller passes are documented with a footnote on their usual level.
            Assert.Equal(e.Level == LogLevel.None ? "Information¹" : e.Level.ToString(), level);
        }
    }

    [Fact]
    public void Readme_ListsEveryInstrumentOfTheMeter()
    {
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(QuicConnection).Assembly.GetType("KestrelQuic.Diagnostics.QuicMetrics", throwOnError: true)!.TypeHandle);
        var names = new List<string>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == "KestrelQuic") names.Add(instrument.Name);
            };
            listener.Start();
        }

        Assert.True(names.Count >= 15, string.Join(", ", names));
        string section = ObservabilitySection();
        Assert.All(names, n => Assert.Contains($"| `{n}` |", section, StringComparison.Ordinal));
    }

    private static string FirstTable(string text)
    {
        int start = text.IndexOf("\n|", StringComparison.Ordinal);
        int end = text.IndexOf("\n\n", start, StringComparison.Ordinal);
        return text[start..end];
    }

    private static string ObservabilitySection()
    {
        string readme = File.ReadAllText(Path.Combine(FindRepositoryRoot(), "README.md"));
        int start = readme.IndexOf("## Observability", StringComparison.Ordinal);
        int end = readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        return readme[start..end];
    }

    [GeneratedRegex(@"^\| (\d+) \| (\w+) \| ([\w¹]+) \|", RegexOptions.Multiline)]
    private static partial Regex TableRow();

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "KestrelQuic.sln"))) return d.FullName;
        }

        throw new InvalidOperationException("KestrelQuic.sln not found above " + AppContext.BaseDirectory);
    }
}
