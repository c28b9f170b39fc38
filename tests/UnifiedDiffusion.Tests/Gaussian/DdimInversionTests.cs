using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Tests.Core;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Gaussian;

/// <summary>ε̂(x, t) = 0.1·x + 0.01·t, with x̂_0 consistent with it; records the levels it is asked at.</summary>
internal sealed class AffineNoiseModel(NoiseSchedule schedule) : IPosteriorModel<GaussianPosterior>
{
    public List<int> Levels { get; } = [];

    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        int level = (int)t[0].item<long>();
        Levels.Add(level);
        var eps = xt * 0.1 + 0.01 * level;
        return new GaussianPosterior((xt - eps * schedule.Noise(level)) / schedule.Signal(level), eps);
    }
}

/// <summary>ε̂(x, t) = c for every x and t: DDIM is then exactly invertible, step by step.</summary>
internal sealed class ConstantNoiseModel(NoiseSchedule schedule, double c) : IPosteriorModel<GaussianPosterior>
{
    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        int level = (int)t[0].item<long>();
        var eps = torch.full_like(xt, c);
        return new GaussianPosterior((xt - eps * schedule.Noise(level)) / schedule.Signal(level), eps);
    }
}

public sealed class DdimInversionTests
{
    private static readonly double[] A2 = Reference.LinearSignalSquared(1000);
    private static readonly GaussianProcess Process = Reference.LinearProcess();
    private static readonly double[,] X = { { 0.3, -1.2 }, { 1.5, 0.0 } };

    [Fact]
    public void EachStepUsesTheNoisePredictedAtTheTargetLevel()
    {
        var model = new AffineNoiseModel(Process.Schedule);
        using var result = DdimInversion.Invert(Process, model, Reference.Float(X), [0, 10, 500]);
        Assert.Equal([10, 500], model.Levels);
        var expected = new double[2, 2];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
            {
                double x = X[i, j];
                foreach (var (s, t) in new[] { (0, 10), (10, 500) })
                {
                    double eps = 0.1 * x + 0.01 * t;
                    double x0 = (x - Math.Sqrt(1 - A2[s]) * eps) / Math.Sqrt(A2[s]);
                    x = Math.Sqrt(A2[t]) * x0 + Math.Sqrt(1 - A2[t]) * eps;
                }
                expected[i, j] = x;
            }
        Assert.True(Reference.MaxAbsDifference(expected, Reference.Read(result)) < 1e-5);
    }

    [Fact]
    public void DdimSamplingUndoesTheInversionWhenTheNoisePredictionIsConstant()
    {
        using var scope = torch.NewDisposeScope();
        var model = new ConstantNoiseModel(Process.Schedule, 0.4);
        var x0 = torch.randn([64, 2], generator: new Generator(4));
        var grid = TimeGrid.Create(1000, 20, TimeSpacing.Trailing);
        var ascending = DdimInversion.AscendingGrid(grid);
        Assert.Equal(grid.Reverse(), ascending);
        var noise = DdimInversion.Invert(Process, model, x0, ascending);
        var back = new Sampler<GaussianPosterior>(Process, model, GaussianKernels.Ddim()).Run(noise, grid, new SamplingContext());
        Assert.True((back - x0).abs().max().item<float>() < 1e-4);
        Assert.False(noise.allclose(x0));
        Assert.True(x0.shape.SequenceEqual(noise.shape));
    }

    [Theory]
    [InlineData(new[] { 0 })]
    [InlineData(new[] { 0, 10, 10 })]
    [InlineData(new[] { 500, 10 })]
    [InlineData(new[] { 0, 1001 })]
    [InlineData(new[] { -1, 10 })]
    public void BadGridsAreRejected(int[] grid)
    {
        using var x = torch.zeros(2, 2);
        Assert.Throws<UdmException>(() => DdimInversion.Invert(Process, new ConstantNoiseModel(Process.Schedule, 0), x, grid));
    }
}
