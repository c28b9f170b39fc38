using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using Xunit;

namespace UnifiedDiffusion.Tests.Data;

/// <summary>The cache's fetch, verify and damage rules, with a fake package client (no network).</summary>
public sealed class DataCacheTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "udm-cache-test-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    /// <summary>Writes an npm-style .tgz holding the given files under package/.</summary>
    private sealed class FakeNpm(Dictionary<string, byte[]> files, Func<byte[], byte[]>? damage = null) : IPackageClient
    {
        public int Downloads { get; private set; }

        public string Download(PackageSource source, string folder)
        {
            Downloads++;
            var buffer = new MemoryStream();
            using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            using (var tar = new TarWriter(gzip))
            {
                foreach (var (name, bytes) in files)
                    tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/" + name) { DataStream = new MemoryStream(bytes) });
            }
            string path = Path.Combine(folder, "fake-1.0.0.tgz");
            File.WriteAllBytes(path, damage is null ? buffer.ToArray() : damage(buffer.ToArray()));
            return path;
        }
    }

    private static readonly Dictionary<string, byte[]> Files = new()
    {
        ["data/a.txt"] = "alpha\n"u8.ToArray(),
        ["data/b.bin"] = [.. Enumerable.Range(0, 5000).Select(i => (byte)(i * 7))],
        ["README.md"] = "ignored"u8.ToArray(),
    };

    private static string Hash(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static DataSetInfo Entry(string? bHash = null) =>
        new("fake", "a test set", "none", [new(PackageManager.Npm, "fake@1.0.0", null, [new("package/data/a.txt"), new("package/data/b.bin", bHash ?? Hash(Files["data/b.bin"]))])]);

    [Fact]
    public void FetchExtractsOnlyTheListedFilesAndIsIdempotent()
    {
        var client = new FakeNpm(Files);
        var cache = new DataCache(_root, client, [Entry()]);
        Assert.False(cache.Describe("fake").Cached);
        string folder = cache.Ensure("fake");
        Assert.Equal(["a.txt", "b.bin"], Directory.GetFiles(folder).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')).Order());
        Assert.Equal(Files["data/b.bin"], File.ReadAllBytes(Path.Combine(folder, "b.bin")));
        Assert.True(cache.Describe("fake").Cached);
        cache.Ensure("fake");
        cache.Fetch("fake");
        Assert.Equal(1, client.Downloads);
        cache.Fetch("fake", force: true);
        Assert.Equal(2, client.Downloads);
        Assert.DoesNotContain(Directory.GetDirectories(_root), d => Path.GetFileName(d).StartsWith(".fetch"));
    }

    [Fact]
    public void AWrongFileHashIsRejectedAndNothingIsCached()
    {
        var cache = new DataCache(_root, new FakeNpm(Files), [Entry(bHash: new string('0', 64))]);
        var e = Assert.Throws<UdmException>(() => cache.Ensure("fake"));
        Assert.Contains("SHA-256", e.Message);
        Assert.False(cache.Describe("fake").Cached);
        Assert.False(Directory.Exists(cache.Folder("fake")));
    }

    [Fact]
    public void ATruncatedArchiveGivesAOneLineError()
    {
        var cache = new DataCache(_root, new FakeNpm(Files, bytes => bytes[..(bytes.Length / 2)]), [Entry()]);
        var e = Assert.Throws<UdmException>(() => cache.Ensure("fake"));
        Assert.Contains("--force", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.False(cache.Describe("fake").Cached);
    }

    [Fact]
    public void AnArchiveHashMismatchIsRejected()
    {
        var entry = Entry() with { Sources = [Entry().Sources[0] with { ArchiveSha256 = new string('a', 64) }] };
        var cache = new DataCache(_root, new FakeNpm(Files), [entry]);
        Assert.Contains("expected SHA-256", Assert.Throws<UdmException>(() => cache.Ensure("fake")).Message);
    }

    [Fact]
    public void ATruncatedCachedFileIsReportedAsDamaged()
    {
        var cache = new DataCache(_root, new FakeNpm(Files), [Entry()]);
        string folder = cache.Ensure("fake");
        using (var stream = File.Open(Path.Combine(folder, "b.bin"), FileMode.Open)) stream.SetLength(100);
        Assert.False(cache.Describe("fake").Cached);
        Assert.Contains("damaged", Assert.Throws<UdmException>(() => cache.Ensure("fake")).Message);
        cache.Fetch("fake", force: true);
        Assert.True(cache.Describe("fake").Cached);
    }

    [Fact]
    public void AFlippedByteInACachedFileIsCaughtOnUse()
    {
        var cache = new DataCache(_root, new FakeNpm(Files), [Entry()]);
        string folder = cache.Ensure("fake");
        string file = Path.Combine(folder, "a.txt");
        var bytes = File.ReadAllBytes(file);
        bytes[0] ^= 0x01; // same size: only the hash can tell
        File.WriteAllBytes(file, bytes);
        Assert.True(cache.Describe("fake").Cached);
        var e = Assert.Throws<UdmException>(() => cache.Ensure("fake"));
        Assert.Contains("a.txt no longer has the SHA-256 recorded when it was fetched; run `udm data get fake --force`", e.Message);
        cache.Fetch("fake", force: true); // the advice
        Assert.Equal(folder, cache.Ensure("fake"));
    }

    [Fact]
    public void ACacheFromBeforeHashesGetsThemOnFirstUse()
    {
        var cache = new DataCache(_root, new FakeNpm(Files), [Entry()]);
        string folder = cache.Ensure("fake");
        string manifest = Path.Combine(folder, ".udm-manifest.json");
        File.WriteAllText(manifest, "[{\"Name\":\"a.txt\",\"Size\":6},{\"Name\":\"b.bin\",\"Size\":5000}]");
        cache.Ensure("fake");
        Assert.Contains(Hash(Files["data/b.bin"]), File.ReadAllText(manifest));
        File.WriteAllBytes(Path.Combine(folder, "b.bin"), [.. Files["data/b.bin"].Reverse()]);
        Assert.Throws<UdmException>(() => cache.Ensure("fake"));
    }

    [Fact]
    public void AMissingPackageClientSaysWhatToInstall()
    {
        var e = Assert.Throws<UdmException>(() => CommandLinePackageClient.Start("udm-no-such-program", [], null, redirectOutput: true, "install it from somewhere"));
        Assert.Contains("not installed", e.Message);
        Assert.Contains("install it from somewhere", e.Message);
    }

    [Fact]
    public void UnknownNamesListTheKnownOnes()
    {
        var e = Assert.Throws<UdmException>(() => DataCatalog.Get("cifar10"));
        Assert.Contains("mnist", e.Message);
        Assert.Contains("poems", e.Message);
    }

    /// <summary>Runs `udm data list` in a child process with the given cache variables (the others removed).</summary>
    private static (int Code, string Output, string Error) DataListWith(params (string Name, string Value)[] variables)
    {
        var info = new System.Diagnostics.ProcessStartInfo("dotnet", [typeof(UnifiedDiffusion.Cli.CommandLine).Assembly.Location, "data", "list"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        foreach (var name in new[] { "HOME", "UDM_DATA", "XDG_CACHE_HOME" }) info.Environment.Remove(name);
        info.Environment["DOTNET_CLI_HOME"] = Path.GetTempPath();
        info.Environment["COLUMNS"] = "300";
        foreach (var (name, value) in variables) info.Environment[name] = value;
        using var process = System.Diagnostics.Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output, error.Result);
    }

    [Fact]
    public void TheCacheRootFollowsXdgAndAMissingHomeIsOneLine()
    {
        var (code, output, stderr) = DataListWith(("XDG_CACHE_HOME", _root), ("HOME", "/nonexistent-home"));
        Assert.True(code == 0, stderr);
        Assert.Contains(Path.Combine(_root, "udm"), output);
        (code, output, stderr) = DataListWith(("XDG_CACHE_HOME", "relative/ignored"), ("HOME", _root));
        Assert.True(code == 0, stderr);
        Assert.Contains(Path.Combine(_root, ".cache", "udm"), output);
        var (failed, _, error) = DataListWith();
        Assert.Equal(2, failed);
        Assert.Equal("udm: error: no data cache folder: HOME is not set; set UDM_DATA (or XDG_CACHE_HOME) to a writable folder, e.g. `export UDM_DATA=/tmp/udm-data`.", error.Trim());
    }

    [Fact]
    public void AMismatchedCheckpointIsReportedBeforeAnyDataIsFetched()
    {
        string run = Path.Combine(_root, "run"), cache = Path.Combine(_root, "empty-cache");
        UnifiedDiffusion.Runs.Experiment.Create(UnifiedDiffusion.Tests.Training.TrainingTests.Small(3, checkpointEvery: 3)).Train(run);
        // The config now names a data set that is not cached (fetching it would download it).
        File.WriteAllText(Path.Combine(run, "config.json"), (UnifiedDiffusion.Tests.Training.TrainingTests.Small(3) with { Data = "digits" }).ToJson());
        Directory.CreateDirectory(cache);
        var info = new System.Diagnostics.ProcessStartInfo("dotnet", [typeof(UnifiedDiffusion.Cli.CommandLine).Assembly.Location, "sample", "--run", run])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        info.Environment["UDM_DATA"] = cache;
        using var process = System.Diagnostics.Process.Start(info)!;
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(2, process.ExitCode);
        Assert.Contains("was written for a different config", error);
        Assert.DoesNotContain("fetch", error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(cache));
    }

    [Fact]
    public void TheCacheRootFollowsUdmData()
    {
        string? before = Environment.GetEnvironmentVariable("UDM_DATA");
        try
        {
            Environment.SetEnvironmentVariable("UDM_DATA", _root);
            Assert.Equal(_root, DataCache.DefaultRoot);
        }
        finally
        {
            Environment.SetEnvironmentVariable("UDM_DATA", before);
        }
    }
}
