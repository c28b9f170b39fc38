using TorchSharp;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Metrics;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// The image metrics of a data set: a LeNet classifier trained once per data set with a fixed seed
/// and cached in the data cache; its penultimate features give classifier-FID against the held-out
/// set, its predictions the class coverage; SSIM and RMSE compare restorations with originals.
/// </summary>
public sealed class ImageJudge
{
    private static readonly Dictionary<string, ImageJudge> Cache = [];
    private static readonly Lock CacheLock = new();
    private readonly Tensor _referenceFeatures;

    /// <summary>Training steps of the metric classifier (tests lower it).</summary>
    internal static int ClassifierSteps { get; set; } = 1500;

    /// <summary>Where classifiers are cached; null is the data cache's classifiers/ folder (tests redirect it).</summary>
    internal static string? ClassifierFolder { get; set; }

    private ImageJudge(ImageDataset train, ImageDataset test, string cacheFile, IProgress<string>? progress)
    {
        Classifier = ImageClassifier.TrainOrLoad(train, cacheFile, seed: 0, steps: ClassifierSteps, progress: progress is null ? null
            : new Progress<(int Step, int Total, float Loss)>(p => { if (p.Step % 300 == 0) progress.Report($"classifier for metrics: step {p.Step}/{p.Total}, loss {p.Loss:F3}"); }));
        Test = test;
        _referenceFeatures = Classifier.Features(test.Images).DetachFromDisposeScope();
        ClassCount = test.ClassCount;
    }

    /// <summary>The metric classifier.</summary>
    public ImageClassifier Classifier { get; }

    /// <summary>The held-out images that FID compares against.</summary>
    public ImageDataset Test { get; }

    /// <summary>The number of classes.</summary>
    public int ClassCount { get; }

    /// <summary>The judge of a data set, built once per process (the classifier is cached on disk too).</summary>
    public static ImageJudge For(ImageDataset train, ImageDataset test, IProgress<string>? progress = null)
    {
        lock (CacheLock)
        {
            string key = $"{train.Name}:{train.Count}:{ClassifierSteps}:{ClassifierFolder}";
            if (!Cache.TryGetValue(key, out var judge))
            {
                string folder = ClassifierFolder ?? Path.Combine(DataCache.DefaultRoot, "classifiers");
                Directory.CreateDirectory(folder);
                string file = Path.Combine(folder, string.Concat(train.Name.Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : '_')) + ".bin");
                Cache[key] = judge = new ImageJudge(train, test, file, progress);
            }
            return judge;
        }
    }

    /// <summary>
    /// Generation metrics: classifier-FID against the held-out set, class coverage, label entropy, and
    /// the smallest class's share of the samples (a collapse onto a few shapes shows there first).
    /// </summary>
    public Dictionary<string, double> Generation(Tensor samples)
    {
        using var scope = torch.NewDisposeScope();
        var features = Classifier.Features(samples);
        var coverage = ImageMetrics.ClassCoverage(Classifier.Predict(samples), ClassCount);
        return new Dictionary<string, double>
        {
            ["fid"] = ImageMetrics.FrechetDistance(features, _referenceFeatures),
            ["class_coverage"] = coverage.CoveredShare,
            ["label_entropy"] = coverage.NormalizedEntropy,
            ["smallest_class_share"] = coverage.SmallestShare,
        };
    }

    /// <summary>Restoration metrics: classifier-FID of the restorations, and SSIM and RMSE against the originals.</summary>
    public Dictionary<string, double> Restoration(Tensor restored, Tensor originals)
    {
        var metrics = Generation(restored);
        metrics["ssim"] = ImageMetrics.Ssim(restored, originals);
        metrics["rmse"] = ImageMetrics.Rmse(restored, originals);
        return metrics;
    }
}
