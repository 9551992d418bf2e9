using KestrelQuic.Tests.Shared;

namespace KestrelQuic.Tests;

/// <summary>The public API of KestrelQuic matches test/Shared/api/KestrelQuic.txt (KESTRELQUIC_UPDATE_API=1 regenerates it).</summary>
public sealed class PublicApiTests
{
    [Fact]
    public void PublicApi_MatchesCheckedInListing() => PublicApiListing.AssertMatchesCheckedIn(typeof(QuicConnection).Assembly);
}
