using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Tokens;

namespace UnifiedDiffusion.Runs;

/// <summary>What kind of samples a data set has, which fixes the network and the metrics.</summary>
public enum DataKind
{
    /// <summary>Low-dimensional vectors (the toy sets): MLP, sliced W2.</summary>
    Vectors,
    /// <summary>Images [C, H, W]: UNet, classifier-FID, SSIM.</summary>
    Images,
    /// <summary>Fixed-length token sequences: Transformer, n-gram perplexity.</summary>
    Text,
}

/// <summary>A data set opened for a run: training data and held-out data.</summary>
/// <param name="Train">The training split.</param>
/// <param name="Test">Held-out data for metrics (fresh draws for toy sets).</param>
/// <param name="Kind">The kind of samples.</param>
public sealed record OpenedData(IDataSource Train, IDataSource Test, DataKind Kind);

/// <summary>
/// Opens data sets by name: toy sets are generated, real ones are read from the data cache and
/// fetched first when missing (with a progress line).
/// </summary>
public static class DataSets
{
    /// <summary>Image set names (besides idx:FOLDER).</summary>
    public static IReadOnlyList<string> ImageNames { get; } = ["mnist", "fashion-mnist", "digits"];

    /// <summary>Text set names.</summary>
    public static IReadOnlyList<string> TextNames { get; } = [.. PoemCorpus.SetNames, "moby-dick", "names"];

    /// <summary>Every name a config may use (plus idx:FOLDER).</summary>
    public static IReadOnlyList<string> Names { get; } = [.. ToyData.Names, .. ImageNames, .. TextNames];

    /// <summary>The kind of a data set name, or a one-line error for an unknown name.</summary>
    public static DataKind KindOf(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (ToyData.Names.Contains(key)) return DataKind.Vectors;
        if (ImageNames.Contains(key) || key.StartsWith("idx:", StringComparison.Ordinal)) return DataKind.Images;
        if (TextNames.Contains(key) || key.StartsWith("text:", StringComparison.Ordinal)) return DataKind.Text;
        throw new UdmException($"unknown data set \"{name}\": use one of {string.Join(", ", Names)}, idx:FOLDER for your own IDX files, or text:FILE for your own plain text.");
    }

    /// <summary>The cache entry a data set is read from (every poem set is read from "poems"), or null for sets that need none (toy sets, idx:, text:).</summary>
    public static string? CacheName(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (ToyData.Names.Contains(key) || key.StartsWith("idx:", StringComparison.Ordinal) || key.StartsWith("text:", StringComparison.Ordinal)) return null;
        return PoemCorpus.SetNames.Contains(key) ? "poems" : key;
    }

    /// <summary>True when opening the data set needs no download: it is generated, a local file, or already in <paramref name="cache"/>.</summary>
    public static bool IsOnThisMachine(string name, DataCache? cache = null) =>
        CacheName(name) is not { } entry || (cache ?? new DataCache()).Describe(entry).Cached;

    /// <summary>Opens a data set, fetching it into <paramref name="cache"/> (default: the user's cache) when needed.</summary>
    public static OpenedData Open(string name, TextConfig? text = null, DataCache? cache = null, IProgress<string>? progress = null)
    {
        string key = name.Trim().ToLowerInvariant();
        cache ??= new DataCache();
        text ??= new TextConfig();
        switch (KindOf(key))
        {
            case DataKind.Vectors:
                var toy = ToyData.Create(key);
                return new OpenedData(toy, toy, DataKind.Vectors);
            case DataKind.Images:
                return OpenImages(name.Trim(), key, cache, progress);
            default:
                return OpenText(name.Trim(), key, text, cache, progress);
        }
    }

    private static OpenedData OpenImages(string name, string key, DataCache cache, IProgress<string>? progress)
    {
        if (key.StartsWith("idx:", StringComparison.Ordinal))
        {
            string folder = name[4..];
            if (!Directory.Exists(folder)) throw new UdmException($"IDX folder {folder} does not exist; give a folder with train-images-idx3-ubyte and train-labels-idx1-ubyte (optionally .gz).");
            var train = ImageDataset.FromIdx(key, Find(folder, "train-images-idx3-ubyte"), Find(folder, "train-labels-idx1-ubyte"));
            bool hasTest = File.Exists(Path.Combine(folder, "t10k-images-idx3-ubyte")) || File.Exists(Path.Combine(folder, "t10k-images-idx3-ubyte.gz"));
            var test = hasTest ? ImageDataset.FromIdx(key, Find(folder, "t10k-images-idx3-ubyte"), Find(folder, "t10k-labels-idx1-ubyte")) : train;
            return new OpenedData(train, test, DataKind.Images);
        }
        string dir = cache.Ensure(key, progress);
        if (key == "digits")
        {
            // 1,797 images and no official split: the last 297 are held out.
            using var all = ImageDataset.FromDigits(key, Path.Combine(dir, "digits.csv.gz"));
            return new OpenedData(all.Slice(0, 1500), all.Slice(1500, all.Count - 1500), DataKind.Images);
        }
        return new OpenedData(
            ImageDataset.FromIdx(key, Find(dir, "train-images-idx3-ubyte"), Find(dir, "train-labels-idx1-ubyte")),
            ImageDataset.FromIdx(key, Find(dir, "t10k-images-idx3-ubyte"), Find(dir, "t10k-labels-idx1-ubyte")),
            DataKind.Images);
    }

    private static string Find(string folder, string stem)
    {
        string plain = Path.Combine(folder, stem);
        if (File.Exists(plain)) return plain;
        if (File.Exists(plain + ".gz")) return plain + ".gz";
        throw new UdmException($"{folder} has no {stem} (or {stem}.gz); fetch the data again or fix the folder.");
    }

    private static OpenedData OpenText(string name, string key, TextConfig text, DataCache cache, IProgress<string>? progress)
    {
        TextSplits splits;
        int length;
        switch (key)
        {
            case var _ when key.StartsWith("text:", StringComparison.Ordinal):
                // Your own plain text, normalised and cut into windows like Moby-Dick.
                splits = PlainTextCorpus.LoadUserText(name[5..], text.Window);
                length = text.Window;
                break;
            case "moby-dick":
                splits = PlainTextCorpus.Load(Path.Combine(cache.Ensure(key, progress), "data.txt"), text.Window);
                length = text.Window;
                break;
            case "names":
                string names = cache.Ensure(key, progress);
                splits = NameCorpus.Load(Directory.GetFiles(names, "*.txt"), text.NameLength);
                length = text.NameLength;
                break;
            default:
                string poems = cache.Ensure(CacheName(key)!, progress);
                progress?.Report($"reading poems for {key}");
                splits = PoemCorpus.Derive(PoemCorpus.Load(Directory.GetFiles(poems, "poet.*.json")), key);
                length = PoemCorpus.LengthOf(key);
                break;
        }
        if (splits.Train.Count == 0)
            throw new UdmException(key.StartsWith("text:", StringComparison.Ordinal)
                ? $"{key[5..]} gives no training sequences: it is empty or shorter than a few windows of {length} characters; give a longer text file."
                : $"the data set {key} has no training sequences; fetch it again with `udm data get {key} --force`.");
        var vocabulary = Vocabulary.Build(splits.Train, text.VocabularySize);
        // Sequences with characters beyond the vocabulary cap would need [UNK] targets, which the
        // models never predict; drop them (the cap keeps most of each set, see the data notes).
        var trainTexts = splits.Train.Where(vocabulary.Covers).ToList();
        var testTexts = (splits.Test.Count > 0 ? splits.Test : splits.Validation).Where(vocabulary.Covers).ToList();
        progress?.Report($"{key}: {trainTexts.Count} training and {testTexts.Count} held-out sequences of length {length}, vocabulary {vocabulary.Count}");
        var train = new TokenDataset(key, trainTexts, vocabulary, length);
        var test = new TokenDataset(key, testTexts, vocabulary, length);
        return new OpenedData(train, test, DataKind.Text);
    }
}
