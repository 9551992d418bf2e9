using KestrelQuic.Tests.Shared;

namespace KestrelQuic.Http3.Tests;

/// <summary>The public API of KestrelQuic.Http3 matches test/Shared/api/KestrelQuic.Http3.txt (KESTRELQUIC_UPDATE_API=1 regenerates it).</summary>
public sealed class PublicApiTests
{
    [Fact]
    public void PublicApi_MatchesCheckedInListing() => PublicApiListing.AssertMatchesCheckedIn(typeof(Http3FieldValidation).Assembly);
}
