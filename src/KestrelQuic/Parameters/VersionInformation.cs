namespace KestrelQuic.Parameters;

/// <summary>The version_information transport parameter value (RFC 9368 §3).</summary>
internal sealed class VersionInformation
{
    public uint ChosenVersion { get; set; }

    public uint[] AvailableVersions { get; set; } = [];

    public int EncodedLength => 4 + 4 * AvailableVersions.Length;
}
