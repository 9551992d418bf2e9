namespace KestrelQuic.Http3.Qpack;

internal static partial class QpackStaticTable
{
    // Longest static name ("access-control-allow-credentials") is 32 bytes.
    private const int MaxNameLength = 32;


    /// <summary>Outcome of a static table lookup.</summary>
    public enum Match
    {
        /// <summary>The name is not in the static table.</summary>
        None,

        /// <summary>The name is present with another value; the index is the lowest entry with that name.</summary>
        Name,

        /// <summary>Both name and value match; the index is that entry.</summary>
        NameAndValue,
    }

    /// <summary>
    /// Looks up a field line. <paramref name="name"/> is compared ASCII-case-insensitively (the encoder lower-cases
    /// names); values compare exactly.
    /// </summary>
    public static Match Find(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value, out int index)
    {
        index = -1;
        if (name.Length == 0 || name.Length > MaxNameLength)
        {
            return Match.None;
        }

        foreach (int[] indices in NameIndex.ByLength[name.Length])
        {
            if (!EqualsLowerCase(s_entries[indices[0]].Name, name))
            {
                continue;
            }

            foreach (int candidate in indices)
            {
                if (value.SequenceEqual(s_entries[candidate].Value))
                {
                    index = candidate;
                    return Match.NameAndValue;
                }
            }

            index = indices[0];
            return Match.Name;
        }

        return Match.None;
    }

    // 'expectedLower' is a static-table name (already lower case).
    internal static bool EqualsLowerCase(ReadOnlySpan<byte> expectedLower, ReadOnlySpan<byte> candidate)
    {
        for (int i = 0; i < expectedLower.Length; i++)
        {
            byte b = candidate[i];
            if ((uint)(b - 'A') <= 'Z' - 'A')
            {
                b |= 0x20;
            }

            if (b != expectedLower[i])
            {
                return false;
            }
        }

        return true;
    }

    // A nested holder so the index is built after s_entries (field initializer order across partial files is unspecified).
    private static class NameIndex
    {
        // For each name length, the distinct names of that length, each as the list of static indices carrying it
        // (ascending, so the first is the cheapest name reference). Built once; lookups do not allocate.
        public static readonly int[][][] ByLength = BuildNameIndex();
    }

    private static int[][][] BuildNameIndex()
    {
        var byLength = new List<List<int>>[MaxNameLength + 1];
        for (int i = 0; i < byLength.Length; i++)
        {
            byLength[i] = [];
        }

        for (int index = 0; index < s_entries.Length; index++)
        {
            byte[] name = s_entries[index].Name;
            List<List<int>> bucket = byLength[name.Length];
            List<int>? group = null;
            foreach (List<int> existing in bucket)
            {
                if (s_entries[existing[0]].Name.AsSpan().SequenceEqual(name))
                {
                    group = existing;
                    break;
                }
            }

            if (group is null)
            {
                group = [];
                bucket.Add(group);
            }

            group.Add(index);
        }

        var result = new int[MaxNameLength + 1][][];
        for (int length = 0; length < result.Length; length++)
        {
            result[length] = byLength[length].Select(group => group.ToArray()).ToArray();
        }

        return result;
    }
}
