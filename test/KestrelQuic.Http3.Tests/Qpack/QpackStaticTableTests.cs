using System.Text;
using KestrelQuic.Http3.Qpack;

namespace KestrelQuic.Http3.Tests.Qpack;

public sealed class QpackStaticTableTests
{
    [Theory]
    [InlineData(0, ":authority", "")]
    [InlineData(1, ":path", "/")]
    [InlineData(17, ":method", "GET")]
    [InlineData(25, ":status", "200")]
    [InlineData(29, "accept", "*/*")]
    [InlineData(31, "accept-encoding", "gzip, deflate, br")]
    [InlineData(52, "content-type", "text/html; charset=utf-8")]
    [InlineData(63, ":status", "100")]
    [InlineData(73, "access-control-allow-credentials", "FALSE")]
    [InlineData(85, "content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'")]
    [InlineData(95, "user-agent", "")]
    [InlineData(98, "x-frame-options", "sameorigin")]
    public void Entry_MatchesRfc9204AppendixA(int index, string name, string value)
    {
        Assert.Equal(99, QpackStaticTable.Count);
        Assert.Equal(99, QpackStaticTable.Entries.Length);
        QpackTableEntry entry = QpackStaticTable.Get(index);
        Assert.Equal(name, Encoding.ASCII.GetString(entry.Name));
        Assert.Equal(value, Encoding.ASCII.GetString(entry.Value));
    }

    [Fact]
    public void Names_AreLowerCase()
    {
        foreach (QpackTableEntry entry in QpackStaticTable.Entries)
        {
            string name = Encoding.ASCII.GetString(entry.Name);
            Assert.Equal(name.ToLowerInvariant(), name);
        }
    }

    [Theory]
    [InlineData(":method", "GET", "NameAndValue", 17)]
    [InlineData(":method", "PATCH", "Name", 15)]
    [InlineData(":status", "404", "NameAndValue", 27)]
    [InlineData(":status", "204", "NameAndValue", 64)]
    [InlineData(":status", "201", "Name", 24)]
    [InlineData("Content-Type", "application/json", "NameAndValue", 46)]
    [InlineData("access-control-allow-headers", "*", "NameAndValue", 75)]
    [InlineData("x-custom", "1", "None", -1)]
    [InlineData("", "", "None", -1)]
    public void Find_ReturnsBestMatch(string name, string value, string expected, int expectedIndex)
    {
        QpackStaticTable.Match match = QpackStaticTable.Find(Encoding.ASCII.GetBytes(name), Encoding.ASCII.GetBytes(value), out int index);
        Assert.Equal(expected, match.ToString());
        Assert.Equal(expectedIndex, index);
    }

    [Fact]
    public void Find_EveryEntryFindsItself()
    {
        for (int i = 0; i < QpackStaticTable.Count; i++)
        {
            QpackTableEntry entry = QpackStaticTable.Get(i);
            Assert.Equal(QpackStaticTable.Match.NameAndValue, QpackStaticTable.Find(entry.Name, entry.Value, out int index));
            Assert.Equal(i, index);
        }
    }
}
