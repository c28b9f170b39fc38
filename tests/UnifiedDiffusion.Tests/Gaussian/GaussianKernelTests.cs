using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Tests.Core;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Gaussian;

/// <summary>
/// DDPM, DDIM-η and Analytic-DPM against x_s = ᾱ_s x̂_0 + √(β̄_s² − σ²)·ε̂ + σ·ε written out with
/// σ = η·β̄_s β_{t|s}/β̄_t and ᾱ from the product of (1 − β_i).
/// </summary>
public sealed class GaussianKernelTests
{
    private const double Tolerance = 2e-5;
    private const ulong Seed = 3;
    private static readonly double[] SignalSquared = Reference.LinearSignalSquared(1000);
    private static readonly GaussianProcess Process = Reference.LinearProcess();
    private static readonly double[,] X0Hat = { { 0.3, -1.2 }, { 1.5, 0.0 }, { -0.4, 0.9 } };
    private static readonly double[,] Xt = { { 0.1, 0.5 }, { 2.0, -1.0 }, { 0.3, -0.2 } };

    private static double A(int t) => Math.Sqrt(SignalSquared[t]);
    private static double B(int t) => Math.Sqrt(1 - SignalSquared[t]);
    private static double DdpmSigma(int t, int s) => B(s) * Math.Sqrt(1 - SignalSquared[t] / SignalSquared[s]) / B(t);

    private static double[,] Expected(int t, int s, double sigma, double extraStd = 0)
    {
        var eps = Reference.Normal(3, 2, Seed);
        var r = new double[3, 2];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++)
            {
                double epsHat = (Xt[i, j] - A(t) * X0Hat[i, j]) / B(t);
                r[i, j] = A(s) * X0Hat[i, j] + Math.Sqrt(B(s) * B(s) - sigma * sigma) * epsHat + Math.Sqrt(sigma * sigma + extraStd * extraStd) * eps[i, j];
            }
        return r;
    }

    private static double[,] Run<TPosterior>(IReverseKernel<TPosterior> kernel, TPosterior posterior, int t, int s, IReadOnlyList<int> grid)
        where TPosterior : IPosterior
    {
        int index = grid.ToList().IndexOf(t);
        using var result = kernel.Step(Process, Reference.Float(Xt), new ReverseStep(t, s, index, grid), posterior, new SamplingContext { Generator = new Generator(Seed) });
        return Reference.Read(result);
    }

    [Theory]
    [InlineData(700, 300)]
    [InlineData(1000, 1)]
    [InlineData(5, 4)]
    public void DdpmNoiseFractionGivesThePosteriorStd(int t, int s)
    {
        var ddpm = Run(GaussianKernels.Ddpm(Process.Schedule), new FixedPosterior(Reference.Float(X0Hat)), t, s, [t, s, 0]);
        Assert.True(Reference.MaxAbsDifference(Expected(t, s, DdpmSigma(t, s)), ddpm) < Tolerance);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    public void DdimEtaScalesTheDdpmStd(double eta)
    {
        var result = Run(GaussianKernels.DdimEta(Process.Schedule, eta), new FixedPosterior(Reference.Float(X0Hat)), 700, 300, [700, 300, 0]);
        Assert.True(Reference.MaxAbsDifference(Expected(700, 300, eta * DdpmSigma(700, 300)), result) < Tolerance);
        var ddim = Run(GaussianKernels.Ddim(), new FixedPosterior(Reference.Float(X0Hat)), 700, 300, [700, 300, 0]);
        Assert.True(Reference.MaxAbsDifference(Expected(700, 300, 0), ddim) < Tolerance);
        Assert.Throws<UdmException>(() => GaussianKernels.DdimEta(Process.Schedule, 1.5));
    }

    private static GammaTable Gamma(params (int T, double Value)[] values)
    {
        var table = new GammaTable(1000);
        foreach (var (t, v) in values) table[t] = v;
        return table;
    }

    // σ² + (ᾱ_s − √(β̄_s² − σ²)·ᾱ_t/β̄_t)²·clamp((β̄_t²/ᾱ_t²)(1 − Γ_t), 0, range²/4), σ = η·σ_DDPM.
    private static double AnalyticVariance(int t, int s, double eta, double gamma, double upper = double.PositiveInfinity)
    {
        double lambda = eta * DdpmSigma(t, s);
        double scale = Math.Sqrt(B(s) * B(s) - lambda * lambda);
        double coefficient = A(s) - scale * A(t) / B(t);
        double posterior = Math.Clamp(B(t) * B(t) / SignalSquared[t] * (1 - gamma), 0, upper);
        return lambda * lambda + coefficient * coefficient * posterior;
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(1.0)]
    [InlineData(0.4)]
    public void AnalyticStepVarianceMatchesTheFormulaAndClipsTheStepOntoTheLowestLevel(double eta)
    {
        int[] grid = [600, 300, 20, 5, 0];
        var gamma = Gamma((600, 0.97), (300, 0.9), (20, 0.3), (5, 0.05));
        var kernel = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(eta, ClipPixels: 1, DataRange: 2));
        for (int i = 0; i + 2 < grid.Length; i++)
        {
            int t = grid[i], s = grid[i + 1];
            var (variance, scale) = kernel.StepVariance(new ReverseStep(t, s, i, grid));
            double expected = AnalyticVariance(t, s, eta, gamma[t], upper: 1.0);
            bool lowest = s == 5;
            if (lowest) expected = Math.Min(expected, Math.Pow(1 * 2.0 / 255 * Math.Sqrt(Math.PI / 2), 2));
            Assert.Equal(expected, variance, 1e-12);
            Assert.Equal(Math.Sqrt(B(s) * B(s) - Math.Pow(eta * DdpmSigma(t, s), 2)), scale, 1e-12);
        }
        // The clip binds on 20 → 5 here (the unclipped value is larger), so the test sees it.
        Assert.True(AnalyticVariance(20, 5, eta, 0.3) > Math.Pow(2.0 / 255 * Math.Sqrt(Math.PI / 2), 2));
        // Without ClipPixels, no clip.
        var unclipped = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(eta));
        Assert.Equal(AnalyticVariance(20, 5, eta, 0.3), unclipped.StepVariance(new ReverseStep(20, 5, 2, grid)).Variance, 1e-12);
        // The final step to 0 has total variance σ̄_t² (λ = 0, coefficient 1).
        Assert.Equal(B(5) * B(5) / SignalSquared[5] * 0.95, unclipped.StepVariance(new ReverseStep(5, 0, 3, grid)).Variance, 1e-12);
    }

    [Fact]
    public void AnalyticPosteriorVarianceIsClampedToTheoremTwo()
    {
        var gamma = Gamma((100, 1.2), (900, 0.0));
        var bounded = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(DataRange: 2));
        Assert.Equal(0.0, bounded.PosteriorVariance(100));          // Γ > 1 would give a negative variance
        Assert.Equal(1.0, bounded.PosteriorVariance(900));          // (b − a)²/4
        var unbounded = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions());
        Assert.Equal(B(900) * B(900) / SignalSquared[900], unbounded.PosteriorVariance(900), 8);
        Assert.Throws<UdmException>(() => bounded.PosteriorVariance(50)); // not estimated
    }

    [Fact]
    public void AnalyticStepAddsItsStdAroundTheDdimEtaMean()
    {
        int[] grid = [700, 300, 0];
        var gamma = Gamma((700, 0.8));
        foreach (double eta in new[] { 0.0, 1.0 })
        {
            // A fresh posterior each time: on the final step the kernel returns (and Run disposes) its Mean.
            var posterior = new GaussianPosterior(Reference.Float(X0Hat), torch.zeros(3, 2));
            var kernel = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(eta));
            var result = Run(kernel, posterior, 700, 300, grid);
            double lambda = eta * DdpmSigma(700, 300);
            double extra = Math.Sqrt(AnalyticVariance(700, 300, eta, 0.8) - lambda * lambda);
            Assert.True(Reference.MaxAbsDifference(Expected(700, 300, lambda, extra), result) < Tolerance);
            // The last step returns the mean.
            Assert.Equal(0.0, Reference.MaxAbsDifference(Reference.Read(Reference.Float(X0Hat)), Run(kernel, posterior, 300, 0, [300, 0])));
        }
    }
}
