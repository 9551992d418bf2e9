using KestrelQuic.Wire;

namespace KestrelQuic.Tests.Wire;

public sealed class RangeSetTests
{
    [Fact]
    public void Add_MergesOverlappingAndAdjacent()
    {
        var set = new RangeSet();
        Assert.True(set.Add(10, 20));
        Assert.True(set.Add(30, 40));
        Assert.True(set.Add(0, 5));
        Assert.Equal(3, set.Count);
        Assert.True(set.Add(20, 30)); // bridges the first two
        Assert.Equal(new[] { new ValueRange(0, 5), new ValueRange(10, 40) }, set.AsSpan().ToArray());
        Assert.False(set.Add(12, 18));
        Assert.True(set.Add(4, 11));
        Assert.Equal(new[] { new ValueRange(0, 40) }, set.AsSpan().ToArray());
    }

    [Fact]
    public void Remove_SplitsAndTrims()
    {
        var set = new RangeSet();
        set.Add(0, 100);
        set.Remove(10, 20);
        set.Remove(90, 200);
        set.Remove(-5, 2);
        Assert.Equal(new[] { new ValueRange(2, 10), new ValueRange(20, 90) }, set.AsSpan().ToArray());
        Assert.True(set.Contains(2));
        Assert.False(set.Contains(10));
        Assert.True(set.ContainsAll(20, 90));
        Assert.False(set.ContainsAll(5, 25));
        Assert.Equal(10, set.ContiguousEnd(2));
        Assert.Equal(15, set.ContiguousEnd(15));
        set.RemoveBelow(50);
        Assert.Equal(new[] { new ValueRange(50, 90) }, set.AsSpan().ToArray());
    }

    [Fact]
    public void RandomOperations_MatchReferenceModel()
    {
        var rng = new Random(1234);
        var set = new RangeSet();
        var model = new bool[500];
        for (int i = 0; i < 5000; i++)
        {
            int a = rng.Next(500), b = rng.Next(500);
            int start = Math.Min(a, b), end = Math.Max(a, b) + 1;
            end = Math.Min(end, start + 20);
            bool add = rng.Next(3) != 0;
            if (add) set.Add(start, end); else set.Remove(start, end);
            for (int j = start; j < end; j++) model[j] = add;
        }

        for (int j = 0; j < model.Length; j++) Assert.Equal(model[j], set.Contains(j));
        var ranges = set.AsSpan().ToArray();
        for (int i = 1; i < ranges.Length; i++) Assert.True(ranges[i].Start > ranges[i - 1].End, "ranges must be disjoint and non-adjacent");
    }
}
