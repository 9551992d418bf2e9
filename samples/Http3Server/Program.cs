using Http3Server;

// dotnet run --project samples/Http3Server [--urls https://localhost:5001]
WebApplication app = Http3ServerApp.Create(args);
await app.RunAsync();

/// <summary>The entry point (public for WebApplicationFactory in the tests).</summary>
public partial class Program;
