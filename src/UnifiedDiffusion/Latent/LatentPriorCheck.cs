using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Latent;

/// <summary>How close the distribution of x_T = F_T(x_0, ε) over the data is to the prior N(0, I).</summary>
/// <param name="Mean">Mean of all coordinates of x_T (0 under the prior).</param>
/// <param name="Variance">Per-coordinate variance over the data, averaged over coordinates (1 under the prior).</param>
/// <param name="MaxKs">The largest Kolmogorov–Smirnov distance between a random 1-D projection of x_T and N(0, 1).</param>
/// <param name="KsCritical">The KS distance that N(0, I) itself exceeds with probability <see cref="Alpha"/> over all projections (Bonferroni).</param>
/// <param name="Alpha">The test's level.</param>
/// <param name="Samples">Data samples used.</param>
/// <param name="Projections">Random projections tested.</param>
public sealed record PriorStatistics(double Mean, double Variance, double MaxKs, double KsCritical, double Alpha, int Samples, int Projections)
{
    /// <summary>True when no projection rejects N(0, 1) at level <see cref="Alpha"/>.</summary>
    public bool KsPasses => MaxKs < KsCritical;
}

/// <summary>
/// Checks that the encoding model's prior is honest: pushes data through F_T and compares x_T with
/// N(0, I) by its mean, its variance and one-dimensional KS tests on random unit projections
/// (a projection of N(0, I) on a unit vector is N(0, 1), whatever the dimension).
/// </summary>
public static class LatentPriorCheck
{
    /// <summary>Measures x_T = F_T(x_0, ε) for <paramref name="samples"/> draws of <paramref name="data"/>.</summary>
    public static PriorStatistics Measure(IForwardProcess process, IDataSource data, int samples, int projections, ulong seed,
        Device? device = null, double alpha = 0.001)
    {
        if (samples < 10 || projections < 1) throw new ArgumentOutOfRangeException(nameof(samples), "need at least 10 samples and 1 projection");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(seed, device ?? torch.CPU);
        var x0 = data.Sample(samples, generator, device);
        var xT = process.CorruptAt(x0, process.Levels, process.SampleNoise(x0, generator)).flatten(1).to(ScalarType.Float64);
        double mean = xT.mean().item<double>();
        double variance = xT.var([0]).mean().item<double>();
        var directions = torch.randn([xT.shape[1], projections], dtype: ScalarType.Float64, device: xT.device, generator: generator);
        directions /= directions.norm(0, keepdim: true);
        var projected = xT.matmul(directions).sort(0).Values; // [n, K], each column ascending
        var cdf = projected.div(Math.Sqrt(2)).erf().add(1).mul(0.5);
        var n = (double)samples;
        var above = torch.arange(1, samples + 1, dtype: ScalarType.Float64, device: xT.device).div(n).unsqueeze(1) - cdf;
        var below = cdf - torch.arange(0, samples, dtype: ScalarType.Float64, device: xT.device).div(n).unsqueeze(1);
        double maxKs = torch.maximum(above, below).max().item<double>();
        // Asymptotic KS critical value c(α')/√n with c(α') = √(−ln(α'/2)/2), α' = α/K (Bonferroni).
        double critical = Math.Sqrt(-Math.Log(alpha / projections / 2) / 2) / Math.Sqrt(n);
        return new PriorStatistics(mean, variance, maxKs, critical, alpha, samples, projections);
    }
}
