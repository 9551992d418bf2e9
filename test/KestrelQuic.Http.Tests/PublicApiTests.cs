using KestrelQuic.Tests.Shared;

namespace KestrelQuic.Http.Tests;

/// <summary>The public API of KestrelQuic.Http matches test/Shared/api/KestrelQuic.Http.txt (KESTRELQUIC_UPDATE_API=1 regenerates it).</summary>
public sealed class PublicApiTests
{
    [Fact]
    public void PublicApi_MatchesCheckedInListing() => PublicApiListing.AssertMatchesCheckedIn(typeof(ManagedHttp3Handler).Assembly);
}
