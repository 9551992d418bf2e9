using System.Diagnostics;
using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace KestrelQuic.AspNetCore.Tests;

/// <summary>
/// Packs every library under src/ once (what build/pack.sh does, without rebuilding: this test project already built
/// them in the same configuration) and opens the packages: README, license, XML documentation, dependencies, and
/// symbol packages whose PDBs belong to the packaged assemblies.
/// </summary>
public sealed class PackagingTests(PackagingTests.PackedLibraries packed, ITestOutputHelper output) : IClassFixture<PackagingTests.PackedLibraries>
{
    private static readonly string[] s_libraries = ["KestrelQuic", "KestrelQuic.Http3", "KestrelQuic.Http", "KestrelQuic.AspNetCore"];

    public static TheoryData<string> Libraries => new(s_libraries);

    [Fact]
    public void EveryLibraryUnderSrc_IsPacked_WithASymbolPackage()
    {
        output.WriteLine(packed.PackOutput);
        string[] libraries = Directory.GetDirectories(Path.Combine(packed.Root, "src")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;
        Assert.Equal(s_libraries.Order(StringComparer.Ordinal), libraries);
        Assert.Equal(libraries.Select(l => $"{l}.{packed.Version}.nupkg").Order(StringComparer.Ordinal), Directory.GetFiles(packed.Output, "*.nupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(libraries.Select(l => $"{l}.{packed.Version}.snupkg").Order(StringComparer.Ordinal), Directory.GetFiles(packed.Output, "*.snupkg").Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Theory]
    [MemberData(nameof(Libraries))]
    public void Package_HasReadmeLicenseAssemblyAndXmlDocs(string id)
    {
        using ZipArchive nupkg = ZipFile.OpenRead(packed.PackagePath(id));
        XElement metadata = ReadNuspec(nupkg, id);
        Assert.Equal(id, Value(metadata, "id"));
        Assert.Equal(packed.Version, Value(metadata, "version"));
        Assert.False(string.IsNullOrWhiteSpace(Value(metadata, "description")));

        // License: the MIT expression (no file to ship).
        XElement license = metadata.Element(metadata.Name.Namespace + "license")!;
        Assert.Equal("expression", license.Attribute("type")?.Value);
        Assert.Equal("MIT", license.Value);

        // The package README is the repository's README.
        Assert.Equal("README.md", Value(metadata, "readme"));
        Assert.Equal(File.ReadAllText(Path.Combine(packed.Root, "README.md")), ReadText(nupkg, "README.md"));

        // The assembly and its XML documentation, which documents the public types.
        Assert.NotNull(nupkg.GetEntry($"lib/net10.0/{id}.dll"));
        XDocument docs = XDocument.Parse(ReadText(nupkg, $"lib/net10.0/{id}.xml"));
        Assert.Equal(id, docs.Root!.Element("assembly")!.Element("name")!.Value);
        string[] members = docs.Root.Element("members")!.Elements("member").Select(m => m.Attribute("name")!.Value).ToArray();
        string[] publicTypes = PublicTypes(nupkg, id);
        Assert.NotEmpty(publicTypes);
        Assert.All(publicTypes, t => Assert.Contains("T:" + t, members));
        output.WriteLine($"{id}: {publicTypes.Length} public types, {members.Length} documented members");

        // Nothing but the library: no test or sample assemblies, no PDB (that is in the snupkg).
        Assert.Equal([$"lib/net10.0/{id}.dll", $"lib/net10.0/{id}.xml"], nupkg.Entries.Select(e => e.FullName).Where(n => n.StartsWith("lib/", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("KestrelQuic", "BouncyCastle.Cryptography,Microsoft.Extensions.Logging.Abstractions", "")]
    [InlineData("KestrelQuic.Http3", "", "")]
    [InlineData("KestrelQuic.Http", "KestrelQuic,KestrelQuic.Http3", "Microsoft.AspNetCore.App")]
    [InlineData("KestrelQuic.AspNetCore", "KestrelQuic", "Microsoft.AspNetCore.App")]
    public void Package_DependsOnExactlyWhatItNeeds(string id, string packages, string frameworks)
    {
        using ZipArchive nupkg = ZipFile.OpenRead(packed.PackagePath(id));
        XElement metadata = ReadNuspec(nupkg, id);
        XNamespace nuspec = metadata.Name.Namespace; // NuGet picks the schema version by the features used
        XElement group = Assert.Single(metadata.Element(nuspec + "dependencies")!.Elements(nuspec + "group"));
        Assert.Equal("net10.0", group.Attribute("targetFramework")?.Value);
        Dictionary<string, string> dependencies = group.Elements(nuspec + "dependency").ToDictionary(d => d.Attribute("id")!.Value, d => d.Attribute("version")!.Value);
        Assert.Equal(packages.Split(',', StringSplitOptions.RemoveEmptyEntries).Order(StringComparer.Ordinal), dependencies.Keys.Order(StringComparer.Ordinal));
        foreach ((string dependency, string version) in dependencies)
        {
            // Our own packages at the same version; third-party ones at the centrally managed version.
            Assert.Equal(dependency.StartsWith("KestrelQuic", StringComparison.Ordinal) ? packed.Version : packed.CentralVersions[dependency], version);
        }

        string[] frameworkReferences = metadata.Element(nuspec + "frameworkReferences")?.Elements(nuspec + "group").SelectMany(g => g.Elements(nuspec + "frameworkReference"))
            .Select(f => f.Attribute("name")!.Value).ToArray() ?? [];
        Assert.Equal(frameworks.Split(',', StringSplitOptions.RemoveEmptyEntries), frameworkReferences);
    }

    [Theory]
    [MemberData(nameof(Libraries))]
    public void SymbolPackage_HasThePdbOfThePackagedAssembly(string id)
    {
        using ZipArchive nupkg = ZipFile.OpenRead(packed.PackagePath(id));
        using ZipArchive snupkg = ZipFile.OpenRead(packed.PackagePath(id, symbols: true));
        Assert.Equal([$"lib/net10.0/{id}.pdb"], snupkg.Entries.Select(e => e.FullName).Where(n => n.StartsWith("lib/", StringComparison.Ordinal)));

        // The assembly's CodeView entry names the PDB it was built with: the one in the symbol package.
        using var dll = new PEReader(new MemoryStream(ReadBytes(nupkg, $"lib/net10.0/{id}.dll")));
        CodeViewDebugDirectoryData codeView = dll.ReadCodeViewDebugDirectoryData(dll.ReadDebugDirectory().Single(e => e.Type == DebugDirectoryEntryType.CodeView));
        using var pdbStream = new MemoryStream(ReadBytes(snupkg, $"lib/net10.0/{id}.pdb"));
        using MetadataReaderProvider pdb = MetadataReaderProvider.FromPortablePdbStream(pdbStream);
        MetadataReader reader = pdb.GetMetadataReader();
        var pdbId = new BlobContentId(reader.DebugMetadataHeader!.Id);
        Assert.Equal(codeView.Guid, pdbId.Guid);
        Assert.True(reader.MethodDebugInformation.Count > 0);
        Assert.True(reader.Documents.Count > 0);
    }

    private static XElement ReadNuspec(ZipArchive package, string id)
    {
        XElement root = XDocument.Parse(ReadText(package, id + ".nuspec")).Root!;
        return root.Element(root.Name.Namespace + "metadata")!;
    }

    private static string? Value(XElement metadata, string name) => metadata.Element(metadata.Name.Namespace + name)?.Value;

    private static byte[] ReadBytes(ZipArchive package, string entry)
    {
        using Stream stream = (package.GetEntry(entry) ?? throw new Xunit.Sdk.XunitException($"no {entry} in the package")).Open();
        var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static string ReadText(ZipArchive package, string entry) => new StreamReader(new MemoryStream(ReadBytes(package, entry))).ReadToEnd();

    /// <summary>Full names of the packaged assembly's public top-level and nested types, read from its metadata.</summary>
    private static string[] PublicTypes(ZipArchive package, string id)
    {
        using var pe = new PEReader(new MemoryStream(ReadBytes(package, $"lib/net10.0/{id}.dll")));
        MetadataReader md = pe.GetMetadataReader();
        var names = new List<string>();
        foreach (TypeDefinitionHandle handle in md.TypeDefinitions)
        {
            TypeDefinition type = md.GetTypeDefinition(handle);
            System.Reflection.TypeAttributes visibility = type.Attributes & System.Reflection.TypeAttributes.VisibilityMask;
            if (visibility == System.Reflection.TypeAttributes.Public)
            {
                names.Add(md.GetString(type.Namespace) + "." + md.GetString(type.Name).Split('`')[0] + Arity(md.GetString(type.Name)));
            }
        }

        return names.ToArray();

        static string Arity(string name) => name.Contains('`', StringComparison.Ordinal) ? "`" + name.Split('`')[1] : string.Empty;
    }

    /// <summary>Packs the libraries once for the class: a solution filter of src/*, packed without building into a temp directory.</summary>
    public sealed class PackedLibraries : IDisposable
    {
#if DEBUG
        private const string Configuration = "Debug";
#else
        private const string Configuration = "Release";
#endif

        private readonly string _temp = Directory.CreateTempSubdirectory("kq-pack-").FullName;

        public PackedLibraries()
        {
            Root = FindRepositoryRoot();
            Output = Path.Combine(_temp, "packages");
            string[] projects = Directory.GetFiles(Path.Combine(Root, "src"), "*.csproj", SearchOption.AllDirectories)
                .Select(p => Path.GetRelativePath(Root, p).Replace('\\', '/')).ToArray();
            string filter = Path.Combine(_temp, "libraries.slnf");
            File.WriteAllText(filter, System.Text.Json.JsonSerializer.Serialize(new { solution = new { path = Path.Combine(Root, "KestrelQuic.sln"), projects } }));

            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Root };
            foreach (string arg in new[] { "pack", filter, "-c", Configuration, "--no-build", "--nologo", "-o", Output })
            {
                psi.ArgumentList.Add(arg);
            }

            using Process process = Process.Start(psi)!;
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException("dotnet pack did not finish in 3 minutes");
            }

            PackOutput = stdout.Result + stderr.Result;
            if (process.ExitCode != 0) throw new InvalidOperationException($"dotnet pack failed ({process.ExitCode}):\n{PackOutput}");

            XDocument props = XDocument.Load(Path.Combine(Root, "Directory.Packages.props"));
            CentralVersions = props.Descendants("PackageVersion").ToDictionary(p => p.Attribute("Include")!.Value, p => p.Attribute("Version")!.Value);
            XDocument srcProps = XDocument.Load(Path.Combine(Root, "src", "Directory.Build.props"));
            Version = srcProps.Descendants("VersionPrefix").Single().Value;
        }

        public string Root { get; }

        public string Output { get; }

        public string PackOutput { get; }

        public string Version { get; }

        public IReadOnlyDictionary<string, string> CentralVersions { get; }

        public string PackagePath(string id, bool symbols = false) => Path.Combine(Output, $"{id}.{Version}.{(symbols ? "snupkg" : "nupkg")}");

        public void Dispose() => Directory.Delete(_temp, recursive: true);

        private static string FindRepositoryRoot()
        {
            for (DirectoryInfo? d = new(AppContext.BaseDirectory); d is not null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "KestrelQuic.sln"))) return d.FullName;
            }

            throw new InvalidOperationException("KestrelQuic.sln not found above " + AppContext.BaseDirectory);
        }
    }
}
