using System.Net;
using System.Text;
using System.Text.Json;
using Xunit.Abstractions;

namespace KestrelQuic.Http.Tests;

/// <summary>
/// The handler's HTTP/3 events (draft-ietf-quic-qlog-h3-events) in the connection's qlog file, next to the QUIC
/// events, for real requests to ngtcp2's server.
/// </summary>
[Collection(nameof(GtlsCollection))]
public sealed class Http3QlogTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _directory = Directory.CreateTempSubdirectory("kq-h3qlog-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task GetAndPost_ToGtlsServer_TraceHasHttp3FramesBetweenTheQuicEvents()
    {
        byte[] body = Encoding.ASCII.GetBytes(new string('q', 3000));
        await using GtlsServer server = await GtlsServer.StartAsync();
        using (var handler = new ManagedHttp3Handler(GtlsServerTests.TrustingOptions(o => o.Configuration.QlogDirectory = _directory)))
        using (var client = new HttpClient(handler))
        {
            using HttpResponseMessage get = await client.GetAsync(new Uri(server.BaseUri, GtlsServer.SmallFile)).WaitAsync(Timeout);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(GtlsServer.SmallSize, (await get.Content.ReadAsByteArrayAsync()).Length);

            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
            using HttpResponseMessage post = await client.PostAsync(new Uri(server.BaseUri, GtlsServer.SmallFile + "?post=1"), content).WaitAsync(Timeout);
            await post.Content.ReadAsByteArrayAsync();
            output.WriteLine($"POST answered {(int)post.StatusCode}");
        }

        List<JsonElement> records = await ReadClosedTraceAsync();
        JsonElement header = records[0];
        string[] schemas = header.GetProperty("trace").GetProperty("event_schemas").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Contains("urn:ietf:params:qlog:events:quic-12", schemas);
        Assert.Contains("urn:ietf:params:qlog:events:http3-12", schemas);

        List<JsonElement> events = records.Skip(1).ToList();
        double[] times = events.Select(e => e.GetProperty("time").GetDouble()).ToArray();
        Assert.True(times.Zip(times.Skip(1)).All(p => p.Second >= p.First), "times go back");
        output.WriteLine(string.Join(", ", events.GroupBy(Name).Select(g => $"{g.Key} {g.Count()}")));
        foreach (JsonElement e in events.Where(e => Name(e).StartsWith("http3:", StringComparison.Ordinal)))
        {
            output.WriteLine(e.GetRawText());
        }

        Assert.All(events.Where(e => Name(e) is "http3:frame_created" or "http3:frame_parsed"), e =>
        {
            JsonElement raw = Frame(e).GetProperty("raw");
            Assert.InRange(raw.GetProperty("length").GetInt64() - raw.GetProperty("payload_length").GetInt64(), 2, 16); // type and length varints
        });

        Assert.Contains(events, e => Name(e) == "quic:packet_sent");
        Assert.Contains(events, e => Name(e) == "quic:packet_received");

        // Stream types: our control and QPACK streams, the server's, and the two request streams.
        List<(string Initiator, long Id, string Type)> types = events.Where(e => Name(e) == "http3:stream_type_set")
            .Select(e => (Data(e).GetProperty("initiator").GetString()!, Data(e).GetProperty("stream_id").GetInt64(), Data(e).GetProperty("stream_type").GetString()!)).ToList();
        Assert.Contains(("local", 2L, "control"), types);
        Assert.Contains(("local", 6L, "qpack_encode"), types);
        Assert.Contains(("local", 10L, "qpack_decode"), types);
        Assert.Contains(("local", 0L, "request"), types);
        Assert.Contains(("local", 4L, "request"), types);
        Assert.Contains(types, t => t is { Initiator: "remote", Type: "control" } && t.Id % 4 == 3);
        Assert.Contains(types, t => t is { Initiator: "remote", Type: "qpack_encode" } && t.Id % 4 == 3);

        // SETTINGS both ways, and the parameters they set.
        JsonElement ourSettings = Frame(Assert.Single(events, e => Name(e) == "http3:frame_created" && FrameType(e) == "settings"));
        Assert.Contains(ourSettings.GetProperty("settings").EnumerateArray(), s => s.GetProperty("name").GetString() == "settings_qpack_max_table_capacity" && s.GetProperty("value").GetInt64() == 4096);
        long serverControl = types.First(t => t is { Initiator: "remote", Type: "control" }).Id;
        JsonElement theirs = Assert.Single(events, e => Name(e) == "http3:frame_parsed" && FrameType(e) == "settings");
        Assert.Equal(serverControl, Data(theirs).GetProperty("stream_id").GetInt64());
        Assert.True(Frame(theirs).GetProperty("settings").GetArrayLength() > 0);
        Assert.True(Frame(theirs).GetProperty("raw").GetProperty("payload_length").GetInt64() > 0);
        Assert.Contains(events, e => Name(e) == "http3:parameters_set" && Data(e).GetProperty("initiator").GetString() == "local" && Data(e).GetProperty("max_table_capacity").GetInt64() == 4096);
        Assert.Contains(events, e => Name(e) == "http3:parameters_set" && Data(e).GetProperty("initiator").GetString() == "remote");

        // The GET: HEADERS out with the method and path, HEADERS in with :status 200, DATA in for the whole body.
        JsonElement getHeaders = Assert.Single(events, e => Name(e) == "http3:frame_created" && FrameType(e) == "headers" && StreamId(e) == 0);
        Assert.Equal("GET", Field(getHeaders, ":method"));
        Assert.Equal("/" + GtlsServer.SmallFile, Field(getHeaders, ":path"));
        Assert.Equal("https", Field(getHeaders, ":scheme"));
        JsonElement getResponse = events.First(e => Name(e) == "http3:frame_parsed" && FrameType(e) == "headers" && StreamId(e) == 0);
        Assert.Equal("200", Field(getResponse, ":status"));
        Assert.Equal(":status", Frame(getResponse).GetProperty("headers")[0].GetProperty("name").GetString());
        Assert.Equal(GtlsServer.SmallSize.ToString(System.Globalization.CultureInfo.InvariantCulture), Field(getResponse, "content-length"));
        Assert.Equal(GtlsServer.SmallSize, events.Where(e => Name(e) == "http3:frame_parsed" && FrameType(e) == "data" && StreamId(e) == 0).Sum(PayloadLength));

        // The POST: HEADERS and DATA frames out carrying the whole body.
        JsonElement postHeaders = Assert.Single(events, e => Name(e) == "http3:frame_created" && FrameType(e) == "headers" && StreamId(e) == 4);
        Assert.Equal("POST", Field(postHeaders, ":method"));
        Assert.Equal("/" + GtlsServer.SmallFile + "?post=1", Field(postHeaders, ":path"));
        Assert.Equal(body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), Field(postHeaders, "content-length"));
        Assert.Equal(body.Length, events.Where(e => Name(e) == "http3:frame_created" && FrameType(e) == "data" && StreamId(e) == 4).Sum(PayloadLength));
        Assert.Contains(events, e => Name(e) == "http3:frame_parsed" && FrameType(e) == "headers" && StreamId(e) == 4 && Field(e, ":status") is not null);

        // Interleaved with QUIC: the request HEADERS are created before the first packet carrying stream 0.
        int headersAt = events.IndexOf(getHeaders);
        int firstStream0 = events.FindIndex(e => Name(e) == "quic:packet_sent" && Data(e).GetProperty("frames").EnumerateArray()
            .Any(f => f.GetProperty("frame_type").GetString() == "stream" && f.GetProperty("stream_id").GetInt64() == 0));
        Assert.InRange(headersAt, 0, firstStream0 - 1);
    }

    private static string Name(JsonElement e) => e.GetProperty("name").GetString()!;

    private static JsonElement Data(JsonElement e) => e.GetProperty("data");

    private static JsonElement Frame(JsonElement e) => Data(e).GetProperty("frame");

    private static string? FrameType(JsonElement e) => Data(e).TryGetProperty("frame", out JsonElement f) ? f.GetProperty("frame_type").GetString() : null;

    private static long StreamId(JsonElement e) => Data(e).GetProperty("stream_id").GetInt64();

    private static long PayloadLength(JsonElement e) => Frame(e).GetProperty("raw").GetProperty("payload_length").GetInt64();

    private static string? Field(JsonElement e, string name) => Frame(e).GetProperty("headers").EnumerateArray()
        .Where(h => h.GetProperty("name").GetString() == name).Select(h => h.GetProperty("value").GetString()).FirstOrDefault();

    /// <summary>Waits for the client's file to end with the closed state (the writer appends in the background), parsing every record.</summary>
    private async Task<List<JsonElement>> ReadClosedTraceAsync()
    {
        using var cts = new CancellationTokenSource(Timeout);
        while (true)
        {
            string? file = Directory.GetFiles(_directory, "*_client.sqlog").SingleOrDefault();
            if (file is not null && TryReadRecords(file, out List<JsonElement>? records) && records is not null
                && records[^1].TryGetProperty("name", out JsonElement name) && name.GetString() == "quic:connection_state_updated"
                && records[^1].GetProperty("data").GetProperty("new").GetString() == "closed")
            {
                return records;
            }

            await Task.Delay(50, cts.Token);
        }
    }

    /// <summary>JSON-SEQ (RFC 7464): RS, one JSON text, LF per record. False while the last record is still being appended.</summary>
    private static bool TryReadRecords(string path, out List<JsonElement>? records)
    {
        records = null;
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0 || bytes[^1] != (byte)'\n') return false;
        Assert.Equal(0x1e, bytes[0]);
        var list = new List<JsonElement>();
        foreach (string text in Encoding.UTF8.GetString(bytes).Split('\u001e').Skip(1))
        {
            Assert.EndsWith("\n", text);
            list.Add(JsonDocument.Parse(text).RootElement.Clone());
        }

        records = list;
        return true;
    }
}
