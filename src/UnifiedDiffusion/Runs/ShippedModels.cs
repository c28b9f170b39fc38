using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;

namespace UnifiedDiffusion.Runs;

/// <summary>One pretrained model: a folder that <c>udm export</c> wrote (config.json, model.safetensors, a model card), named by its folder.</summary>
/// <param name="Name">The model's name, e.g. <c>mnist</c>.</param>
/// <param name="Folder">Its folder.</param>
public sealed record ShippedModel(string Name, string Folder)
{
    /// <summary>The model card's title (its first heading), or the name.</summary>
    public string Title
    {
        get
        {
            string card = Path.Combine(Folder, ModelExport.Files.Card);
            string? heading = File.Exists(card) ? File.ReadLines(card).FirstOrDefault(l => l.StartsWith("# ", StringComparison.Ordinal)) : null;
            return heading?[2..].Trim() ?? Name;
        }
    }

    /// <summary>The size of its weights file in bytes (0 if it is missing).</summary>
    public long WeightBytes => new FileInfo(Path.Combine(Folder, ModelExport.Files.Weights)) is { Exists: true } f ? f.Length : 0;
}

/// <summary>
/// The pretrained models that ship with UnifiedDiffusion, in a <c>models</c> folder: the one
/// <see cref="FolderVariable"/> names, else the first <c>models</c> folder holding an exported model
/// in the current directory or a parent (a clone of the repository) or beside the program (an
/// installed tool). A model is opened as a run by importing it once into the cache, after its
/// weights pass the SHA-256 its card records.
/// </summary>
public static class ShippedModels
{
    /// <summary>The environment variable that names the models folder.</summary>
    public const string FolderVariable = "UDM_MODELS";

    /// <summary>The models folder, or null when there is none.</summary>
    public static string? Folder
    {
        get
        {
            if (Environment.GetEnvironmentVariable(FolderVariable) is { Length: > 0 } named) return Path.GetFullPath(named);
            foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
                for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                {
                    string candidate = Path.Combine(dir.FullName, "models");
                    if (Directory.Exists(candidate) && Directory.EnumerateFiles(candidate, ModelExport.Files.Config, SearchOption.AllDirectories).Any())
                        return candidate;
                }
            return null;
        }
    }

    /// <summary>Every model of <see cref="Folder"/>, by name.</summary>
    public static IReadOnlyList<ShippedModel> List() => Folder is { } folder && Directory.Exists(folder)
        ? [.. Directory.EnumerateDirectories(folder).Where(d => File.Exists(Path.Combine(d, ModelExport.Files.Config)))
            .Order(StringComparer.Ordinal).Select(d => new ShippedModel(Path.GetFileName(d), d))]
        : [];

    /// <summary>The model called <paramref name="name"/>; an unknown name is a one-line error listing the shipped ones.</summary>
    public static ShippedModel Find(string name)
    {
        var all = List();
        return all.FirstOrDefault(m => m.Name.Equals(name.Trim(), StringComparison.OrdinalIgnoreCase))
            ?? throw new UdmException(all.Count == 0
                ? $"there is no shipped model \"{name}\": no models folder was found (run udm in a clone of the repository, or set {FolderVariable} to a folder of exported models)."
                : $"there is no shipped model \"{name}\": use one of {string.Join(", ", all.Select(m => m.Name))} (`udm models` describes them).") { Subject = "model" };
    }

    /// <summary>
    /// A run folder holding the model <paramref name="name"/>: imported into the cache the first time
    /// (a folder per name and checksum, so a changed model is imported again), after its weights pass
    /// the checksum its card records.
    /// </summary>
    public static string RunFolder(string name, IProgress<string>? progress = null)
    {
        var model = Find(name);
        string weights = Path.Combine(model.Folder, ModelExport.Files.Weights);
        string repository = Path.GetDirectoryName(Path.GetDirectoryName(model.Folder)!)!;
        string advice = Directory.Exists(Path.Combine(repository, ".git"))
            ? $"restore it with `git -C {repository} checkout -- {Path.GetRelativePath(repository, weights)}`"
            : "install the models again";
        ModelExport.VerifyChecksum(model.Folder, advice);
        string checksum = ModelExport.RecordedChecksum(model.Folder) ?? ModelExport.Sha256Of(weights);
        string run = Path.Combine(DataCache.DefaultRoot, "models", $"{model.Name}-{checksum[..12]}");
        if (File.Exists(Path.Combine(run, Checkpoint.FileName))) return run;
        try { ModelExport.Import(model.Folder, run, progress); }
        catch (UdmException) when (File.Exists(Path.Combine(run, Checkpoint.FileName))) { } // another process imported it first
        return run;
    }
}
