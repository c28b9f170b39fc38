using System.Diagnostics;
using Xunit;

namespace UnifiedDiffusion.Tests.Packaging;

/// <summary>
/// The packages install and run as a user would meet them: the tool from a local feed into a tool
/// path, and the library in a console app built outside this repository (so only the package's
/// buildTransitive targets can patch libtorch's shim for Debian 12).
/// </summary>
[Collection(nameof(PackagingCollection))]
[Trait("Category", "Packaging")]
public sealed class PackageTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-pack-").FullName;

    // A version of its own, so that NuGet's global cache never serves a stale package of the same
    // version; its cache folders are removed afterwards.
    private readonly string _version = $"0.0.0-ci.{Guid.NewGuid():N}"[..22];

    public void Dispose()
    {
        Directory.Delete(_root, recursive: true);
        string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } packages ? packages
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "unifieddiffusion", "unifieddiffusion.tool" })
        {
            string folder = Path.Combine(cache, id, _version);
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "UnifiedDiffusion.slnx"))) return dir.FullName;
        throw new InvalidOperationException("the repository root (UnifiedDiffusion.slnx) is not above the test binaries");
    }

    private static (int Code, string Output) Run(string program, string workingDirectory, params string[] args)
    {
        var info = new ProcessStartInfo(program, args) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output + error.Result);
    }

    /// <summary>Copies what packing needs (sources and build files, no bin/obj) to a folder of its own.</summary>
    private static void CopySources(string from, string to)
    {
        foreach (var file in new[] { "Directory.Build.props", "Directory.Build.targets", "README.md", "LICENSE" })
            File.Copy(Path.Combine(from, file), Path.Combine(to, file));
        foreach (var folder in new[] { "build", "src/UnifiedDiffusion", "src/UnifiedDiffusion.Cli" })
            foreach (var file in Directory.EnumerateFiles(Path.Combine(from, folder), "*", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(from, file);
                if (relative.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj")) continue;
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(to, relative))!);
                File.Copy(file, Path.Combine(to, relative));
            }
    }

    [Fact]
    public void TheToolInstallsAndRunsAndTheLibraryPackageRunsInAConsumerApp()
    {
        string repo = RepositoryRoot(), sources = Path.Combine(_root, "src-copy"), feed = Path.Combine(_root, "feed");
        Directory.CreateDirectory(sources);
        CopySources(repo, sources);

        var (code, output) = Run("dotnet", sources, "pack", "src/UnifiedDiffusion", "-c", "Release", "-o", feed, $"-p:Version={_version}");
        Assert.True(code == 0, output);
        (code, output) = Run("dotnet", sources, "pack", "src/UnifiedDiffusion.Cli", "-c", "Release", "-r", "linux-x64", "-o", feed, $"-p:Version={_version}");
        Assert.True(code == 0, output);
        long toolBytes = new FileInfo(Path.Combine(feed, $"UnifiedDiffusion.Tool.{_version}.nupkg")).Length;
        Assert.True(toolBytes < 250_000_000, $"the tool package is {toolBytes / 1e6:0} MB, above NuGet's 250 MB limit");

        // The tool, from the feed into a tool path.
        string tools = Path.Combine(_root, "tools");
        (code, output) = Run("dotnet", _root, "tool", "install", "UnifiedDiffusion.Tool", "--version", _version, "--tool-path", tools, "--add-source", feed);
        Assert.True(code == 0, output);
        string udm = Path.Combine(tools, "udm");
        (code, output) = Run(udm, _root, "--help");
        Assert.True(code == 0, output);
        Assert.Contains("udm [command] [options]", output);
        (code, output) = Run(udm, _root, "eval", "--oracle", "gmm8", "--steps", "10", "--count", "1000", "--json");
        Assert.True(code == 0, output);
        Assert.Contains("\"sliced_w2\"", output);

        // The library, in a console app of its own with the feed as a package source.
        string app = Path.Combine(_root, "app");
        Directory.CreateDirectory(app);
        foreach (var file in new[] { "PackageConsumer.csproj", "Program.cs" })
            File.Copy(Path.Combine(repo, "tests", "PackageConsumer", file), Path.Combine(app, file));
        File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="udm-local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        // The app exits 1 unless the mean radius is within 0.1 of the ring's 2.
        (code, output) = Run("dotnet", app, "run", "-c", "Release", $"-p:UdmVersion={_version}");
        Assert.True(code == 0, output);
        Assert.Contains("mean radius ", output);
    }
}

/// <summary>Packing builds in Release and installs packages: alone, after the rest.</summary>
[CollectionDefinition(nameof(PackagingCollection), DisableParallelization = true)]
public sealed class PackagingCollection;
