using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Metrics;

/// <summary>How evenly a set of predicted class labels covers the classes.</summary>
/// <param name="CoveredShare">The share of classes (0..1) that receive at least half of their
/// uniform share of the predictions, i.e. count_k ≥ N / (2K).</param>
/// <param name="NormalizedEntropy">The entropy of the label histogram divided by log K: 1 for a
/// perfectly balanced histogram, 0 when every prediction is the same class.</param>
/// <param name="Counts">The number of predictions of each class.</param>
public sealed record ClassCoverageResult(double CoveredShare, double NormalizedEntropy, long[] Counts)
{
    /// <summary>The share of the predictions that fall in the least predicted class.</summary>
    public double SmallestShare => Counts.Min() / (double)Counts.Sum();
}

/// <summary>
/// Image quality metrics. Inputs follow the library's image convention: tensors [N, C, H, W] with
/// values in [−1, 1]. SSIM and RMSE first map them to [0, 1] ((x + 1) / 2), so that the numbers
/// compare with the Cold Diffusion paper, which reports both on [0, 1] images; SSIM then uses a
/// data range L = 1.
/// </summary>
public static class ImageMetrics
{
    /// <summary>
    /// The Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D]
    /// (mean and unbiased covariance, in float64):
    /// ‖μa − μb‖² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½). Both matrix square roots come from symmetric
    /// eigendecompositions with negative eigenvalues (round-off) clamped to 0. With classifier
    /// features this is the FID.
    /// </summary>
    public static double FrechetDistance(Tensor featuresA, Tensor featuresB)
    {
        ArgumentNullException.ThrowIfNull(featuresA);
        ArgumentNullException.ThrowIfNull(featuresB);
        using var scope = torch.NewDisposeScope();
        var a = featuresA.detach().to(ScalarType.Float64, torch.CPU).flatten(1);
        var b = featuresB.detach().to(ScalarType.Float64, torch.CPU).flatten(1);
        if (a.shape[1] != b.shape[1]) throw new ArgumentException($"feature sets have different widths ({a.shape[1]} and {b.shape[1]})");
        if (a.shape[0] < 2 || b.shape[0] < 2) throw new ArgumentException("each feature set needs at least 2 rows");
        var (muA, covA) = MeanAndCovariance(a);
        var (muB, covB) = MeanAndCovariance(b);
        double meanTerm = (muA - muB).pow(2).sum().item<double>();
        var rootA = SymmetricSqrt(covA);
        var middle = rootA.matmul(covB).matmul(rootA);
        middle = (middle + middle.T) * 0.5;
        var (eigenvalues, _) = torch.linalg.eigh(middle);
        double traceRoot = eigenvalues.clamp_min(0).sqrt().sum().item<double>();
        double value = meanTerm + covA.trace().item<double>() + covB.trace().item<double>() - 2 * traceRoot;
        return Math.Max(value, 0.0);
    }

    private static (Tensor Mean, Tensor Covariance) MeanAndCovariance(Tensor x)
    {
        var mean = x.mean([0]);
        var centred = x - mean;
        var cov = centred.T.matmul(centred) / (x.shape[0] - 1);
        return (mean, (cov + cov.T) * 0.5);
    }

    private static Tensor SymmetricSqrt(Tensor symmetric)
    {
        var (values, vectors) = torch.linalg.eigh(symmetric);
        return (vectors * values.clamp_min(0).sqrt().unsqueeze(0)).matmul(vectors.T);
    }

    /// <summary>How evenly <paramref name="predictedLabels"/> (integers in 0..classCount−1) cover the classes.</summary>
    public static ClassCoverageResult ClassCoverage(Tensor predictedLabels, int classCount)
    {
        ArgumentNullException.ThrowIfNull(predictedLabels);
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 1);
        using var scope = torch.NewDisposeScope();
        var labels = predictedLabels.detach().to(ScalarType.Int64, torch.CPU).flatten();
        long n = labels.shape[0];
        if (n == 0) throw new ArgumentException("there are no predictions", nameof(predictedLabels));
        if (labels.min().item<long>() < 0 || labels.max().item<long>() >= classCount)
            throw new ArgumentException($"predicted labels must lie in 0..{classCount - 1}", nameof(predictedLabels));
        long[] counts = torch.bincount(labels, minlength: classCount).data<long>().ToArray();
        double threshold = 0.5 * n / classCount;
        double covered = counts.Count(k => k >= threshold) / (double)classCount;
        double entropy = 0;
        foreach (long k in counts)
            if (k > 0)
            {
                double p = (double)k / n;
                entropy -= p * Math.Log(p);
            }
        double normalized = classCount == 1 ? 1.0 : entropy / Math.Log(classCount);
        return new ClassCoverageResult(covered, normalized, counts);
    }

    /// <summary>
    /// The mean SSIM over a batch: <see cref="SsimPerImage"/> averaged over the images.
    /// </summary>
    public static double Ssim(Tensor a, Tensor b) => SsimPerImage(a, b).Average();

    /// <summary>
    /// SSIM of each image pair of two batches [N, C, H, W] in [−1, 1], computed as in Wang et al.
    /// (2004) on the images mapped to [0, 1] with data range L = 1: an 11×11 Gaussian window of
    /// σ = 1.5 (normalised to sum 1), K1 = 0.01, K2 = 0.03, population (not sample) variances, only
    /// window positions that lie wholly inside the image (valid convolution), each channel on its
    /// own, the SSIM map averaged over positions and channels. This equals skimage's
    /// structural_similarity with gaussian_weights=True, use_sample_covariance=False,
    /// data_range=1. Images smaller than 11 pixels use the largest odd window that fits (σ stays 1.5).
    /// </summary>
    public static double[] SsimPerImage(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = UnitRange(a, b);
        return SsimOnScale(x, y, 1.0).data<double>().ToArray();
    }

    // SSIM per image of float64 [N, C, H, W] tensors whose values span the data range L.
    internal static Tensor SsimOnScale(Tensor x, Tensor y, double dataRange)
    {
        long c = x.shape[1], h = x.shape[2], w = x.shape[3];
        int size = (int)Math.Min(11, Math.Min(h, w));
        if (size % 2 == 0) size--;
        var coords = torch.arange(size, dtype: ScalarType.Float64) - (size - 1) / 2.0;
        var g = (-(coords * coords) / (2 * 1.5 * 1.5)).exp();
        g = g / g.sum();
        var window = g.outer(g).expand(c, 1, size, size).contiguous();
        Tensor Filter(Tensor t) => torch.nn.functional.conv2d(t, window, groups: c);
        double c1 = Math.Pow(0.01 * dataRange, 2), c2 = Math.Pow(0.03 * dataRange, 2);
        var muX = Filter(x);
        var muY = Filter(y);
        var varX = Filter(x * x) - muX * muX;
        var varY = Filter(y * y) - muY * muY;
        var covXY = Filter(x * y) - muX * muY;
        var map = (2 * muX * muY + c1) * (2 * covXY + c2) / ((muX * muX + muY * muY + c1) * (varX + varY + c2));
        return map.mean([1, 2, 3]);
    }

    /// <summary>
    /// The root of the mean squared difference over every pixel of the two batches, measured on the
    /// images mapped from [−1, 1] to [0, 1] (half of the RMSE on the [−1, 1] scale).
    /// </summary>
    public static double Rmse(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var (x, y) = UnitRange(a, b);
        return Math.Sqrt((x - y).pow(2).mean().item<double>());
    }

    private static (Tensor X, Tensor Y) UnitRange(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.dim() != 4 || !a.shape.SequenceEqual(b.shape))
            throw new ArgumentException($"both batches must be [N, C, H, W] of the same shape, not [{string.Join(", ", a.shape)}] and [{string.Join(", ", b.shape)}]");
        var x = (a.detach().to(ScalarType.Float64, torch.CPU) + 1) * 0.5;
        var y = (b.detach().to(ScalarType.Float64, torch.CPU) + 1) * 0.5;
        return (x, y);
    }
}
