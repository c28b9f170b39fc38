using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Core;

/// <summary>
/// The three core kernels on a Gaussian process, with a fixed x̂_0 and a fixed generator, against
/// the formulas of the design written out in double precision:
/// re-corrupt x_s = ᾱ_s x̂_0 + β̄_s ε; invert x_s = ᾱ_s x̂_0 + β̄_s ε̂ with ε̂ = (x_t − ᾱ_t x̂_0)/β̄_t;
/// interpolate x_s = ᾱ_s x̂_0 + β̄_s(√(1 − σ̃²) ε̂ + σ̃ ε).
/// </summary>
public sealed class KernelTests
{
    private const double Tolerance = 2e-5; // float32 arithmetic on O(1) values
    private const int T = 700, S = 300;
    private const ulong Seed = 7;

    private static readonly double[,] X0Hat = { { 0.3, -1.2, 0.7 }, { 1.5, 0.0, -0.4 } };
    private static readonly double[,] Xt = { { 0.1, 0.5, -0.9 }, { 2.0, -1.0, 0.3 } };
    private static readonly double[] SignalSquared = Reference.LinearSignalSquared(1000);
    private static readonly GaussianProcess Process = Reference.LinearProcess();

    private static double A(int t) => Math.Sqrt(SignalSquared[t]);
    private static double B(int t) => Math.Sqrt(1 - SignalSquared[t]);
    private static double[,] EpsHat => Reference.Map(Xt, X0Hat, (xt, x0) => (xt - A(T) * x0) / B(T));

    private static double[,] RunStep(IReverseKernel<IPosterior> kernel, int t, int s)
    {
        var step = new ReverseStep(t, s, 0, [t, s, 0]);
        using var result = kernel.Step(Process, Reference.Float(Xt), step, new FixedPosterior(Reference.Float(X0Hat)), new SamplingContext { Generator = new Generator(Seed) });
        return Reference.Read(result);
    }

    [Fact]
    public void ReCorruptDrawsFreshNoiseAroundTheScaledEstimate()
    {
        var eps = Reference.Normal(2, 3, Seed);
        var expected = Reference.Map(X0Hat, eps, (x0, e) => A(S) * x0 + B(S) * e);
        Assert.True(Reference.MaxAbsDifference(expected, RunStep(new ReCorruptKernel(), T, S)) < Tolerance);
    }

    [Fact]
    public void InvertReusesTheInferredNoise()
    {
        var expected = Reference.Map(X0Hat, EpsHat, (x0, e) => A(S) * x0 + B(S) * e);
        Assert.True(Reference.MaxAbsDifference(expected, RunStep(new InvertKernel(), T, S)) < Tolerance);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.3)]
    [InlineData(1.0)]
    public void InterpolateMixesInferredAndFreshNoise(double fraction)
    {
        var eps = Reference.Normal(2, 3, Seed);
        var mixed = Reference.Map(EpsHat, eps, (h, e) => Math.Sqrt(1 - fraction * fraction) * h + fraction * e);
        var expected = Reference.Map(X0Hat, mixed, (x0, n) => A(S) * x0 + B(S) * n);
        Assert.True(Reference.MaxAbsDifference(expected, RunStep(new InterpolateKernel(fraction), T, S)) < Tolerance);
    }

    [Fact]
    public void EveryKernelReturnsTheEstimateOnTheFinalStep()
    {
        foreach (var kernel in new IReverseKernel<IPosterior>[] { new ReCorruptKernel(), new InvertKernel(), new InterpolateKernel(0.5) })
            Assert.Equal(0.0, Reference.MaxAbsDifference(Reference.Read(Reference.Float(X0Hat)), RunStep(kernel, T, 0)));
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void InterpolateRejectsFractionsOutsideTheUnitInterval(double fraction) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => RunStep(new InterpolateKernel(fraction), T, S));

    [Fact]
    public void CorruptAndInferNoiseAreInversesWithPerSampleLevels()
    {
        var x0 = Reference.Float(X0Hat);
        using var t = torch.tensor(new long[] { 10, 500 });
        var noise = Reference.Normal(2, 3, 11);
        using var xt = Process.Corrupt(x0, t, Reference.Float(noise));
        int[] level = [10, 500];
        var expected = new double[2, 3];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                expected[i, j] = A(level[i]) * X0Hat[i, j] + B(level[i]) * noise[i, j];
        Assert.True(Reference.MaxAbsDifference(expected, Reference.Read(xt)) < Tolerance);
        Assert.True(Reference.MaxAbsDifference(noise, Reference.Read(Process.InferNoise(x0, xt, t))) < 1e-4);
        Assert.True(Process.IsInvertible);
    }
}
