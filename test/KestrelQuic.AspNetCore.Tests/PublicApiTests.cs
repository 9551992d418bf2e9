using KestrelQuic.AspNetCore;
using KestrelQuic.Tests.Shared;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>The public API of KestrelQuic.AspNetCore matches test/Shared/api/KestrelQuic.AspNetCore.txt (KESTRELQUIC_UPDATE_API=1 regenerates it).</summary>
public sealed class PublicApiTests
{
    [Fact]
    public void PublicApi_MatchesCheckedInListing() => PublicApiListing.AssertMatchesCheckedIn(typeof(ManagedQuicTransportFactory).Assembly);
}
