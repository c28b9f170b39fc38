using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static UnifiedDiffusion.Tests.Oracles.OracleSupport;

namespace UnifiedDiffusion.Tests.Oracles;

public sealed class OracleGammaTests(ITestOutputHelper output)
{
    /// <summary>
    /// Γ_t from <see cref="GammaTable.Estimate"/> with the exact ε̂ gives σ̄_t² = (β̄_t²/ᾱ_t²)(1 − Γ_t)
    /// = E[tr Cov(x_0 | x_t)]/d, which <see cref="MixtureOracle.OptimalVariance"/> computes from the
    /// closed-form covariance. Both are Monte-Carlo means over n = 20,000 draws, so they must agree
    /// within 4 standard errors of their difference, se² = (β̄_t²/ᾱ_t²)² Var(‖ε̂‖²/d)/n + Var(tr Cov/d)/n,
    /// with the per-draw variances estimated here from a third sample. Levels are chosen where that
    /// se is below 5% of the value (above t ≈ 400 the factor β̄_t²/ᾱ_t² makes Γ too noisy to test).
    /// </summary>
    [Fact]
    public void GammaGivesTheOptimalPosteriorVariance()
    {
        const int n = 20_000;
        var mixture = GaussianMixture.Ring8();
        var oracle = new MixtureOracle(mixture, Process);
        int[] levels = [1, 10, 50, 100, 200, 300];
        var gamma = new GammaTable(1000);
        gamma.Estimate(oracle, Process, mixture, levels, n, seed: 1);
        Assert.True(gamma.Covers(levels));
        Assert.False(gamma.Covers([2]));
        foreach (int t in levels)
        {
            using var scope = torch.NewDisposeScope();
            double a = Process.Schedule.Signal(t), b = Process.Schedule.Noise(t), ratio = b * b / (a * a);
            double fromGamma = ratio * (1 - gamma[t]);
            double optimal = oracle.OptimalVariance(t, n, new Generator(2));

            var x0 = mixture.Sample(n, new Generator(3));
            var xt = x0 * a + torch.randn(x0.shape, generator: new Generator(4)) * b;
            var (mean, meanVariance) = mixture.Posterior(xt, a, b);
            var gammaTerms = (xt.to(ScalarType.Float64) - mean.to(ScalarType.Float64) * a).div(b).pow(2).mean([1]);
            double se = Math.Sqrt(ratio * ratio * gammaTerms.var().item<double>() / n + meanVariance.var().item<double>() / n);
            output.WriteLine($"t={t}: from Γ {fromGamma:G5}, optimal {optimal:G5}, difference {(fromGamma - optimal) / se:F2} se (se {se / optimal:P2} of the value)");
            Assert.True(se < 0.05 * optimal, $"t={t}: se {se} is too large for a meaningful test");
            Assert.True(Math.Abs(fromGamma - optimal) < 4 * se, $"t={t}: σ̄² from Γ {fromGamma} vs optimal {optimal}, se {se}");
        }
    }
}
