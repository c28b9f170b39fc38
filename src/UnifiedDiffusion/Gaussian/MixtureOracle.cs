using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// The exact Gaussian posterior model for a Gaussian-mixture data set: x̂_0 = E[x_0 | x_t] in closed
/// form. With it, every sampler can be judged against a perfect network.
/// </summary>
public sealed class MixtureOracle(GaussianMixture mixture, GaussianProcess process) : IPosteriorModel<GaussianPosterior>
{
    /// <inheritdoc />
    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        int level = CommonLevel(t);
        double a = process.Schedule.Signal(level), b = process.Schedule.Noise(level);
        var (mean, _) = mixture.Posterior(xt, a, b);
        return new GaussianPosterior(mean, GaussianProcess.NoiseOf(xt, mean, a, b));
    }

    /// <summary>The exact optimal isotropic variance E[tr Cov(x_0 | x_t)]/d at level t, by Monte Carlo over x_t.</summary>
    public double OptimalVariance(int t, int samples, Generator generator)
    {
        using var scope = torch.NewDisposeScope();
        var x0 = mixture.Sample(samples, generator);
        double a = process.Schedule.Signal(t), b = process.Schedule.Noise(t);
        var xt = x0 * a + torch.randn(x0.shape, generator: generator) * b;
        return mixture.Posterior(xt, a, b).MeanVariance.mean().item<double>();
    }

    private static int CommonLevel(Tensor t)
    {
        int first = (int)t[0].item<long>();
        if (t.numel() > 1 && !t.eq(first).all().item<bool>())
            throw new ArgumentException("the mixture oracle expects one level per batch");
        return first;
    }
}
