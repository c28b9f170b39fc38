using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Metrics;

/// <summary>Distances between sample sets.</summary>
public static class SampleMetrics
{
    /// <summary>
    /// Sliced Wasserstein-2 distance: the root of the mean, over <paramref name="projections"/>
    /// random unit directions, of the squared 1-D W2 between the projected sets (quantile matching).
    /// Sets of different sizes are compared at min(n, m) quantiles.
    /// </summary>
    public static double SlicedWasserstein2(Tensor a, Tensor b, int projections, Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        var x = a.to(ScalarType.Float64, torch.CPU).flatten(1);
        var y = b.to(ScalarType.Float64, torch.CPU).flatten(1);
        if (x.shape[1] != y.shape[1]) throw new ArgumentException("sample sets have different dimensions");
        var directions = torch.randn([x.shape[1], projections], dtype: ScalarType.Float64, generator: generator);
        directions = directions / directions.norm(0, keepdim: true);
        var px = x.matmul(directions).sort(0).Values;
        var py = y.matmul(directions).sort(0).Values;
        long m = Math.Min(px.shape[0], py.shape[0]);
        px = Quantiles(px, m);
        py = Quantiles(py, m);
        return Math.Sqrt((px - py).pow(2).mean().item<double>());
    }

    // Rows at the midpoints of m equal-mass bins of a sorted column set.
    private static Tensor Quantiles(Tensor sorted, long m)
    {
        long n = sorted.shape[0];
        if (n == m) return sorted;
        var index = ((torch.arange(m, dtype: ScalarType.Float64) + 0.5) * ((double)n / m)).floor().to(ScalarType.Int64).clamp(0, n - 1);
        return sorted.index_select(0, index);
    }
}
