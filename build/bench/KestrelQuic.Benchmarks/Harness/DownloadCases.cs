using System.Globalization;

namespace KestrelQuic.Benchmarks.Harness;

/// <summary>P1: gtlsclient downloads 100 MB from our Kestrel sample (/bytes/N) vs from gtlsserver serving a 100 MB file.</summary>
internal sealed class ServerDownloadCase : IBenchCase
{
    private const long Length = 100L * 1024 * 1024;
    private int _ours;
    private int _reference;

    public string Id => "P1";

    public string Title => "gtlsclient downloads 100 MB: from our Kestrel sample vs from gtlsserver";

    public string Unit => "s";

    public bool LowerIsBetter => true;

    public bool HasReference => true;

    public string? ReferenceName => "gtlsserver";

    public async Task PrepareAsync(Workspace workspace)
    {
        string dir = Path.GetDirectoryName(workspace.DataFile("www", "file", Length))!;
        _ours = await Peers.StartSampleServerAsync(workspace).ConfigureAwait(false);
        _reference = await Peers.StartNgtcp2ServerAsync(workspace, dir, "/file").ConfigureAwait(false);
    }

    public Task<double> RunOursAsync(Workspace workspace) => Peers.Ngtcp2ClientAsync(_ours, "/bytes/" + Length.ToString(CultureInfo.InvariantCulture));

    public Task<double> RunReferenceAsync(Workspace workspace) => Peers.Ngtcp2ClientAsync(_reference, "/file");
}

/// <summary>P2: our sample client downloads 100 MB from gtlsserver vs gtlsclient doing the same (both save to tmpfs).</summary>
internal sealed class ClientDownloadCase : IBenchCase
{
    private const long Length = 100L * 1024 * 1024;
    private int _server;
    private string _output = "";

    public string Id => "P2";

    public string Title => "100 MB from gtlsserver: our sample client vs gtlsclient";

    public string Unit => "s";

    public bool LowerIsBetter => true;

    public bool HasReference => true;

    public string? ReferenceName => "gtlsclient";

    public async Task PrepareAsync(Workspace workspace)
    {
        string dir = Path.GetDirectoryName(workspace.DataFile("www", "file", Length))!;
        _output = Directory.CreateDirectory(Path.Combine(workspace.Directory, "downloads")).FullName;
        _server = await Peers.StartNgtcp2ServerAsync(workspace, dir, "/file").ConfigureAwait(false);
        if (!File.Exists(Peers.SampleClientDll)) throw new InvalidOperationException($"{Peers.SampleClientDll} is missing: run build/bench.sh, which builds it");
    }

    public async Task<double> RunOursAsync(Workspace workspace)
    {
        double seconds = await Workspace.RunTimedAsync(
            "dotnet",
            [Peers.SampleClientDll, "--insecure", "--output-dir", _output, $"https://127.0.0.1:{Peers.Port(_server)}/file"],
            TimeSpan.FromMinutes(3)).ConfigureAwait(false);
        Verify();
        return seconds;
    }

    public async Task<double> RunReferenceAsync(Workspace workspace)
    {
        double seconds = await Peers.Ngtcp2ClientAsync(_server, "/file", "--download=" + _output).ConfigureAwait(false);
        Verify();
        return seconds;
    }

    private void Verify()
    {
        var saved = new FileInfo(Path.Combine(_output, "file"));
        if (!saved.Exists || saved.Length != Length) throw new InvalidOperationException($"download incomplete: {(saved.Exists ? saved.Length : 0)} of {Length} bytes");
        saved.Delete();
    }
}

/// <summary>P4: 1,000 small requests on one connection (gtlsclient -n 1000) to our Kestrel sample vs to gtlsserver.</summary>
internal sealed class ManyRequestsCase : IBenchCase
{
    private const int Size = 1000;
    private int _ours;
    private int _reference;

    public string Id => "P4";

    public string Title => "1,000 requests of 1,000 bytes on one connection (gtlsclient -n 1000): our Kestrel sample vs gtlsserver";

    public string Unit => "s";

    public bool LowerIsBetter => true;

    public bool HasReference => true;

    public string? ReferenceName => "gtlsserver";

    public async Task PrepareAsync(Workspace workspace)
    {
        string dir = Path.GetDirectoryName(workspace.DataFile("small", "small", Size))!;
        _ours = await Peers.StartSampleServerAsync(workspace).ConfigureAwait(false);
        _reference = await Peers.StartNgtcp2ServerAsync(workspace, dir, "/small").ConfigureAwait(false);
    }

    public Task<double> RunOursAsync(Workspace workspace) => Peers.Ngtcp2ClientAsync(_ours, "/bytes/" + Size.ToString(CultureInfo.InvariantCulture), "-n", "1000");

    public Task<double> RunReferenceAsync(Workspace workspace) => Peers.Ngtcp2ClientAsync(_reference, "/small", "-n", "1000");
}
