using TorchSharp;
using UnifiedDiffusion.Metrics;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Core;

public sealed class SampleMetricsTests
{
    [Fact]
    public void SlicedW2OfATranslationIsTheRmsOfTheProjectedShift()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.randn([500, 3], dtype: ScalarType.Float64, generator: new Generator(1));
        double[] shift = [0.7, -0.2, 1.1];
        var b = a + torch.tensor(shift, dtype: ScalarType.Float64);
        // The metric draws its directions as randn([d, P]) from the generator, then normalises columns.
        const int projections = 16;
        var directions = torch.randn([3, projections], dtype: ScalarType.Float64, generator: new Generator(9)).data<double>().ToArray();
        double sum = 0;
        for (int p = 0; p < projections; p++)
        {
            double dot = 0, norm = 0;
            for (int i = 0; i < 3; i++)
            {
                double v = directions[i * projections + p];
                dot += v * shift[i];
                norm += v * v;
            }
            sum += dot * dot / norm;
        }
        Assert.Equal(Math.Sqrt(sum / projections), SampleMetrics.SlicedWasserstein2(a, b, projections, new Generator(9)), 1e-10);
        Assert.Equal(0.0, SampleMetrics.SlicedWasserstein2(a, a.clone(), projections, new Generator(9)), 1e-12);
    }

    [Fact]
    public void SlicedW2InOneDimensionIsTheShift()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.randn([1000, 1], generator: new Generator(2));
        Assert.Equal(0.7, SampleMetrics.SlicedWasserstein2(a, a + 0.7f, 8, new Generator(3)), 1e-5);
    }
}
