using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Tests.Core;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Gaussian;

/// <summary>A posterior model whose x̂_0 is a fixed tensor, whatever x_t is.</summary>
internal sealed class FixedMeanModel(Tensor mean) : IPosteriorModel<GaussianPosterior>
{
    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null) => new(mean, torch.zeros_like(xt));
}

/// <summary>
/// The ELBO terms against closed forms. With a model whose x̂_0 = x_0 + δ is fixed, the mean gap of
/// every step is (ᾱ_s − m ᾱ_t/β̄_t)·δ whatever x_t was drawn, so every term is known exactly.
/// </summary>
public sealed class LikelihoodTests
{
    private static readonly double[] A2 = Reference.LinearSignalSquared(1000);
    private static readonly GaussianProcess Process = Reference.LinearProcess();
    private static readonly double[,] Data = { { 0.3, -0.5 }, { 1.0, 0.2 }, { -0.8, 0.9 } };
    private static readonly double[,] Offset = { { 0.01, -0.02 }, { 0.0, 0.05 }, { -0.03, 0.0 } };
    private static readonly int[] Grid = [1000, 500, 100, 10, 0];
    private const int D = 2;

    private static double A(int t) => Math.Sqrt(A2[t]);
    private static double B2(int t) => 1 - A2[t];
    private static double Sigma2(int t, int s) => B2(s) * (1 - A2[t] / A2[s]) / B2(t);

    private static (Tensor X0, Tensor X0Hat, double[] DeltaSquared, double[] X0Squared) Batch()
    {
        var x0 = Reference.Float(Data);
        var x0Hat = Reference.Float(Reference.Map(Data, Offset, (x, d) => x + d));
        var delta = Reference.Map(Reference.Read(x0Hat), Reference.Read(x0), (h, x) => h - x);
        var deltaSquared = Enumerable.Range(0, 3).Select(i => delta[i, 0] * delta[i, 0] + delta[i, 1] * delta[i, 1]).ToArray();
        var x = Reference.Read(x0);
        var x0Squared = Enumerable.Range(0, 3).Select(i => x[i, 0] * x[i, 0] + x[i, 1] * x[i, 1]).ToArray();
        return (x0, x0Hat, deltaSquared, x0Squared);
    }

    private static double PriorKl(int top, double x0Squared) =>
        0.5 * (A2[top] * x0Squared + D * (B2(top) - 1 - Math.Log(B2(top))));

    // KL(N(μ_q, σ²) ‖ N(μ_p, v)) summed over D dimensions, with ‖μ_q − μ_p‖² = gap².
    private static double Kl(double sigma2, double v, double gapSquared) =>
        0.5 * D * (Math.Log(v / sigma2) + sigma2 / v - 1) + gapSquared / (2 * v);

    private static double[] Expected(double[] deltaSquared, double[] x0Squared, Func<int, int, double> variance, double decoderVariance)
    {
        var result = new double[3];
        for (int i = 0; i < 3; i++)
        {
            double total = PriorKl(Grid[0], x0Squared[i]);
            for (int k = 0; k + 2 < Grid.Length; k++)
            {
                int t = Grid[k], s = Grid[k + 1];
                // DDPM mean (η = 1): coefficient of x̂_0 is ᾱ_s β_{t|s}²/β̄_t².
                double coefficient = A(s) * (1 - A2[t] / A2[s]) / B2(t);
                total += Kl(Sigma2(t, s), variance(t, s), coefficient * coefficient * deltaSquared[i]);
            }
            total += 0.5 * D * Math.Log(2 * Math.PI * decoderVariance) + deltaSquared[i] / (2 * decoderVariance);
            result[i] = total;
        }
        return result;
    }

    private static void AssertClose(double[] expected, Tensor actual)
    {
        var values = actual.data<double>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - values[i]) <= 1e-9 * Math.Max(1, Math.Abs(expected[i])), $"sample {i}: expected {expected[i]}, got {values[i]}");
    }

    [Fact]
    public void DdpmSmallWithThePerfectMeanHasOnlyPriorAndDecoderTerms()
    {
        using var scope = torch.NewDisposeScope();
        var (x0, _, _, x0Squared) = Batch();
        // A leading grid: its top level is 901, not T, and the prior term is taken there.
        int[] grid = [901, 301, 1, 0];
        using var terms = Likelihood.NegativeElbo(Process, new FixedMeanModel(x0.clone()), x0, grid,
            new ElboOptions(ElboVariance.DdpmSmall, ElboDecoder.Continuous), new Generator(1));
        Assert.Equal(0.0, terms.Transitions.abs().max().item<double>());
        // DDPM small has σ² = 0 at s = 0; the decoder uses the small variance between levels 1 and 2.
        double decoderVariance = B2(1) * (1 - A2[2] / A2[1]) / B2(2);
        AssertClose(Enumerable.Repeat(0.5 * D * Math.Log(2 * Math.PI * decoderVariance), 3).ToArray(), terms.Decoder);
        AssertClose(x0Squared.Select(v => PriorKl(901, v)).ToArray(), terms.Prior);
        Assert.Equal(D, terms.Dimension);
        Assert.Equal(grid.Length, terms.Steps.Count); // prior + 2 transitions + decoder
        Assert.Equal([(901, -1), (901, 301), (301, 1), (1, 0)], terms.Steps.Select(s => (s.T, s.S)));
    }

    [Fact]
    public void DdpmSmallAndLargeMatchTheClosedForm()
    {
        using var scope = torch.NewDisposeScope();
        var (x0, x0Hat, deltaSquared, x0Squared) = Batch();
        var model = new FixedMeanModel(x0Hat);
        using var small = Likelihood.NegativeElbo(Process, model, x0, Grid, new ElboOptions(ElboVariance.DdpmSmall, ElboDecoder.Continuous), new Generator(2));
        AssertClose(Expected(deltaSquared, x0Squared, Sigma2, B2(1) * (1 - A2[2] / A2[1]) / B2(2)), small.Total);
        using var large = Likelihood.NegativeElbo(Process, model, x0, Grid, new ElboOptions(ElboVariance.DdpmLarge, ElboDecoder.Continuous), new Generator(2));
        AssertClose(Expected(deltaSquared, x0Squared, (t, s) => 1 - A2[t] / A2[s], B2(10)), large.Total);
        AssertClose(small.Prior.data<double>().ToArray(), large.Prior);
        // Total = prior + transitions + decoder, and bits/dim is its mean over d·ln 2.
        AssertClose((large.Prior + large.Transitions + large.Decoder).data<double>().ToArray(), large.Total);
        Assert.Equal(large.Total.mean().item<double>() / (D * Math.Log(2)), large.BitsPerDim, 12);
    }

    [Fact]
    public void AnalyticUsesTheKernelsStepVariance()
    {
        using var scope = torch.NewDisposeScope();
        var (x0, x0Hat, deltaSquared, x0Squared) = Batch();
        var gamma = new GammaTable(1000);
        double[] values = [0.99, 0.8, 0.3, 0.02];
        for (int k = 0; k < 4; k++) gamma[Grid[k]] = values[k];
        double PosteriorVariance(int t) => B2(t) / A2[t] * (1 - gamma[t]);
        // η = 1: σ² + (ᾱ_s β_{t|s}²/β̄_t²)² σ̄_t².
        double Variance(int t, int s) => Sigma2(t, s) + Math.Pow(A(s) * (1 - A2[t] / A2[s]) / B2(t), 2) * PosteriorVariance(t);
        var kernel = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 1));
        using var terms = Likelihood.NegativeElbo(Process, new FixedMeanModel(x0Hat), x0, Grid,
            new ElboOptions(ElboVariance.Analytic, ElboDecoder.Continuous, kernel), new Generator(3));
        AssertClose(Expected(deltaSquared, x0Squared, Variance, PosteriorVariance(10)), terms.Total);
    }

    [Fact]
    public void DiscretizedDecoderIsAProbabilityOverThe256Bins()
    {
        using var scope = torch.NewDisposeScope();
        var levels = torch.arange(256, dtype: ScalarType.Float64).mul(2.0 / 255).sub(1).unsqueeze(1); // [256, 1]
        foreach (double mean in new[] { 0.1, -0.97, 0.999, 1.3 })
            foreach (double variance in new[] { 1e-3, 0.05, 1.0 })
            {
                var nll = Likelihood.DiscretizedGaussianNll(levels, torch.full([256, 1], mean, dtype: ScalarType.Float64), variance);
                double total = nll.neg().exp().sum().item<double>();
                Assert.True(Math.Abs(total - 1) < 1e-8, $"μ={mean}, v={variance}: bins sum to {total}");
            }
        // A bin far inside a wide Gaussian: probability ≈ density × bin width.
        var x = torch.tensor(new[,] { { 2.0 * 128 / 255 - 1 } }, dtype: ScalarType.Float64);
        double p = Math.Exp(-Likelihood.DiscretizedGaussianNll(x, torch.zeros(1, 1, dtype: ScalarType.Float64), 0.25).item<double>());
        double density = Math.Exp(-x.item<double>() * x.item<double>() / 0.5) / Math.Sqrt(2 * Math.PI * 0.25);
        Assert.Equal(density * 2 / 255, p, 1e-6);
        // Probabilities are clamped at 1e-12: a mean many σ away costs −log(1e-12) per dimension.
        var far = Likelihood.DiscretizedGaussianNll(torch.tensor(new[,] { { 0.5, -0.5 } }, dtype: ScalarType.Float64), torch.full([1, 2], -0.9, dtype: ScalarType.Float64), 1e-6);
        Assert.Equal(-2 * Math.Log(1e-12), far.item<double>(), 1e-9);
    }

    [Fact]
    public void BitsPerDimDividesByDimensionAndLn2()
    {
        Assert.Equal(1.0, Likelihood.BitsPerDim(2 * Math.Log(2), 2), 15);
        using var nats = torch.tensor(new[] { 1.0, 3.0 });
        Assert.Equal(2.0 / (4 * Math.Log(2)), Likelihood.BitsPerDim(nats, 4), 15);
    }

    [Fact]
    public void BadInputsAreReportedAsUdmExceptions()
    {
        using var scope = torch.NewDisposeScope();
        var (x0, x0Hat, _, _) = Batch();
        var model = new FixedMeanModel(x0Hat);
        Assert.Throws<UdmException>(() => Likelihood.NegativeElbo(Process, model, x0, [10, 500, 0], new ElboOptions(), new Generator(1)));
        Assert.Throws<UdmException>(() => Likelihood.NegativeElbo(Process, model, x0, [2000, 0], new ElboOptions(), new Generator(1)));
        Assert.Throws<UdmException>(() => Likelihood.NegativeElbo(Process, model, x0, Grid, new ElboOptions(ElboVariance.Analytic), new Generator(1)));
        // Γ = 1 makes σ̄² = 0: with η = 0 every step variance is 0 and the ELBO is infinite.
        var gamma = new GammaTable(1000);
        foreach (int t in Grid.Where(t => t > 0)) gamma[t] = 1;
        var degenerate = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 0));
        Assert.Throws<UdmException>(() => Likelihood.NegativeElbo(Process, model, x0, Grid, new ElboOptions(ElboVariance.Analytic, Analytic: degenerate), new Generator(1)));
    }
}
