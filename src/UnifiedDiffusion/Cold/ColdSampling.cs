using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cold;

/// <summary>
/// A cold sampler: a core kernel run along the grid, or one of the restoration table's baselines
/// (one pass of the network, or the degraded input itself), which run no kernel.
/// </summary>
/// <param name="Name">The sampler's name.</param>
/// <param name="Summary">What it is, for help text.</param>
/// <param name="Accepts">The options it takes.</param>
/// <param name="Aliases">Other names for it.</param>
/// <param name="Kernel">σ̃ → the kernel; null for a baseline.</param>
/// <param name="BaselineSteps">A baseline's network evaluations (1 for direct, 0 for degraded); null for a kernel.</param>
/// <param name="NeedsNoise">True when the kernel mixes in fresh σε, which needs a process with σ &gt; 0.</param>
public sealed record ColdSamplerEntry(string Name, string Summary, SamplerOption Accepts, IReadOnlyList<string> Aliases,
    Func<double, IReverseKernel<IPosterior>>? Kernel, int? BaselineSteps = null, bool NeedsNoise = false)
    : SamplerEntry(Name, Summary, Accepts, Aliases);

/// <summary>
/// TACoS (Bansal et al., 2022, Algorithm 2) as the article and the reference code write it:
/// x_s = x_t − D_t(x̂_0) + D_s(x̂_0) at every step, the step onto 0 included, where D_0 is the identity:
/// x_0 = x̂_0 + (x_1 − D_1(x̂_0)). The core's <see cref="InvertKernel"/> is the same step everywhere
/// else, but returns x̂_0 onto level 0, because F_0 keeps no residual. When σ &gt; 0 the residual also
/// holds the noise σε, which a clean sample must not keep, so there the step onto 0 returns x̂_0 too.
/// </summary>
public sealed class TacosKernel : IReverseKernel<IPosterior>
{
    private static readonly InvertKernel Invert = new();

    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, IPosterior posterior, SamplingContext context)
    {
        if (!step.IsFinal || process is ColdProcess { Sigma: > 0 }) return Invert.Step(process, xt, step, posterior, context);
        var x0 = posterior.Draw(context.Generator);
        return process.InferNoiseAt(x0, xt, step.T).add_(x0);
    }
}

/// <summary>Restoration and generation with a cold posterior model.</summary>
public static class ColdSampling
{
    private const SamplerOption Generation = SamplerOption.Generate | SamplerOption.PriorNoise;

    /// <summary>
    /// The cold samplers, made of the core kernels: naive (re-corrupt, the paper's Algorithm 1),
    /// tacos (<see cref="TacosKernel"/>, x_s = x_t − D_t(x̂_0) + D_s(x̂_0), the paper's improved
    /// Algorithm 2, onto level 0 too), tacos-x0 (the core's invert kernel, which returns x̂_0 at the
    /// step onto 0), interpolate (the residual mixes the inferred one with fresh σε in proportion σ̃),
    /// multistep (tacos on an x̂_0 extrapolated from the last two steps, <see cref="LevelWeight"/>), and
    /// the baselines direct and degraded. tacos is the default.
    /// </summary>
    public static SamplerRegistry<ColdSamplerEntry> Registry { get; } = new("cold", "tacos",
        new("naive", "re-corrupt: x_s = D_s(x̂_0) (+ fresh σε)", Generation, [], _ => new ReCorruptKernel()),
        new("tacos", "invert (TACoS): x_s = x_t − D_t(x̂_0) + D_s(x̂_0), onto level 0 too (D_0 = identity)", Generation, ["improved"], _ => new TacosKernel()),
        new("tacos-x0", "TACoS whose step onto level 0 returns x̂_0 (the core's invert kernel)", Generation, [], _ => new InvertKernel()),
        new("interpolate", "inferred and fresh residual mixed by σ̃ = η (σ > 0)", SamplerOption.Eta | Generation, [], Interpolate, NeedsNoise: true),
        new("multistep", "TACoS on x̂_0 extrapolated from the last two steps (second order in the level)", Generation, [],
            _ => new MultistepKernel(new TacosKernel(), LevelWeight)),
        new("direct", "one pass of the network from level T (baseline)", SamplerOption.None, [], null, BaselineSteps: 1),
        new("degraded", "the degraded input itself (baseline)", SamplerOption.None, [], null, BaselineSteps: 0));

    /// <summary>
    /// The multistep weight of a cold process, which has no λ: DPM-Solver++(2M)'s w = h/(2h') with the
    /// level as time, h = t − s and h' = t' − t.
    /// </summary>
    public static double LevelWeight(int previous, int t, int s) => (t - s) / (2.0 * (previous - t));

    private static InterpolateKernel Interpolate(double noiseFraction) => noiseFraction is >= 0 and <= 1
        ? new InterpolateKernel(noiseFraction)
        : throw new UdmException($"the interpolate sampler's σ̃ must lie in [0, 1], got {noiseFraction}.") { Subject = "eta" };

    /// <summary>
    /// Restores <paramref name="degraded"/> (data at level grid[0], e.g. D_T of held-out images) along
    /// the descending <paramref name="grid"/>. A random-centre mask must keep the centres that made
    /// <paramref name="degraded"/>: pass the trajectory noise that degraded it in <paramref name="context"/>.
    /// </summary>
    public static Tensor Restore(ColdProcess process, IPosteriorModel<IPosterior> model, Tensor degraded, IReadOnlyList<int> grid,
        IReverseKernel<IPosterior> kernel, SamplingContext context, SamplingOptions? options = null) =>
        new Sampler<IPosterior>(process, model, kernel).Run(degraded, grid, context, options);

    /// <summary>One pass of the restoration network, x̂_0 = G(x_t, t): the "direct" baseline of the results table.</summary>
    public static Tensor Direct(IPosteriorModel<IPosterior> model, Tensor degraded, int t)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var posterior = model.Predict(degraded, torch.full([degraded.shape[0]], t, dtype: ScalarType.Int64, device: degraded.device));
        return posterior.Draw(null).clone().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Generates <paramref name="count"/> images of shape <paramref name="shape"/> (without the batch
    /// dimension) from the process's prior along <paramref name="grid"/>; each trajectory draws its
    /// random degradation choices first, with <paramref name="generator"/>.
    /// </summary>
    public static Tensor Generate(ColdProcess process, IPosteriorModel<IPosterior> model, int count, long[] shape, IReadOnlyList<int> grid,
        IReverseKernel<IPosterior> kernel, Generator? generator, Device? device = null, SamplingOptions? options = null)
    {
        if (count < 1) throw new UdmException($"the number of samples must be at least 1, got {count}.") { Subject = "count" };
        return new Sampler<IPosterior>(process, model, kernel).Sample([count, .. shape], grid, device ?? torch.CPU, generator, options);
    }
}
