using TorchSharp;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Metrics;
using UnifiedDiffusion.Tests.Core;
using Xunit;

namespace UnifiedDiffusion.Tests.Oracles;

/// <summary>Shared pieces of the oracle tests: linear schedule with T = 1000, sliced W2 with fixed directions.</summary>
internal static class OracleSupport
{
    public const int Projections = 64;
    public const ulong ProjectionSeed = 3;

    public static GaussianProcess Process { get; } = Reference.LinearProcess();

    public static GaussianMixture Mixture(string name) => name switch
    {
        "gmm8" => GaussianMixture.Ring8(),
        "gmm25" => GaussianMixture.Grid25(),
        _ => throw new ArgumentException(name),
    };

    /// <summary>Sliced W2 with the same 64 directions for every comparison, so that values are comparable.</summary>
    public static double SlicedW2(torch.Tensor a, torch.Tensor b) =>
        SampleMetrics.SlicedWasserstein2(a, b, Projections, new torch.Generator(ProjectionSeed));

    /// <summary>Sliced W2 between <paramref name="repeats"/> pairs of fresh data sets of size <paramref name="n"/>: the metric's noise floor.</summary>
    public static double[] DataVersusData(GaussianMixture mixture, int n, int repeats, ulong seed)
    {
        var generator = new torch.Generator(seed);
        var values = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            using var scope = torch.NewDisposeScope();
            values[r] = SlicedW2(mixture.Sample(n, generator), mixture.Sample(n, generator));
        }
        return values;
    }

    public static double Mean(IReadOnlyCollection<double> v) => v.Average();

    public static double StandardDeviation(IReadOnlyCollection<double> v)
    {
        double m = v.Average();
        return Math.Sqrt(v.Sum(x => (x - m) * (x - m)) / (v.Count - 1));
    }

    /// <summary>The empirical q-quantile (nearest rank, the smallest value with at least q of the mass at or below it).</summary>
    public static double Quantile(IEnumerable<double> values, double q)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int rank = (int)Math.Ceiling(q * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
