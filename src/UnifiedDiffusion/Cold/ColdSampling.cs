using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cold;

/// <summary>The cold samplers, all made of the core kernels.</summary>
public enum ColdSamplerKind
{
    /// <summary>"naive": x_s = F_s(x̂_0, fresh noise), the re-corrupt kernel (the paper's Algorithm 1).</summary>
    Naive,
    /// <summary>"improved": x_s = x_t − D_t(x̂_0) + D_s(x̂_0), the invert kernel (TACoS, the paper's Algorithm 2).</summary>
    Improved,
    /// <summary>"interpolate": the residual mixes the inferred one with fresh σε in proportion σ̃ (σ &gt; 0 only matters).</summary>
    Interpolate,
}

/// <summary>Restoration and generation with a cold posterior model.</summary>
public static class ColdSampling
{
    /// <summary>The sampler names accepted by <see cref="Parse"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["naive", "improved", "interpolate"];

    /// <summary>Parses "naive", "improved" or "interpolate".</summary>
    public static ColdSamplerKind Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "naive" => ColdSamplerKind.Naive,
        "improved" => ColdSamplerKind.Improved,
        "interpolate" => ColdSamplerKind.Interpolate,
        _ => throw new UdmException($"unknown cold sampler \"{name}\": use naive, improved or interpolate."),
    };

    /// <summary>The sampler's name, as <see cref="Parse"/> accepts it.</summary>
    public static string Name(ColdSamplerKind kind) => kind switch
    {
        ColdSamplerKind.Naive => "naive",
        ColdSamplerKind.Improved => "improved",
        ColdSamplerKind.Interpolate => "interpolate",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>The core kernel for a sampler kind; <paramref name="noiseFraction"/> is σ̃ of the interpolate kernel.</summary>
    public static IReverseKernel<IPosterior> Kernel(ColdSamplerKind kind, double noiseFraction = 0.0) => kind switch
    {
        ColdSamplerKind.Naive => new ReCorruptKernel(),
        ColdSamplerKind.Improved => new InvertKernel(),
        ColdSamplerKind.Interpolate => noiseFraction is >= 0 and <= 1
            ? new InterpolateKernel(noiseFraction)
            : throw new UdmException($"the interpolate sampler's σ̃ must lie in [0, 1], got {noiseFraction}."),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>
    /// Restores <paramref name="degraded"/> (data at level grid[0], e.g. D_T of held-out images) along
    /// the descending <paramref name="grid"/>. A random-centre mask must keep the centres that made
    /// <paramref name="degraded"/>: this method does not resample them.
    /// </summary>
    public static Tensor Restore(ColdProcess process, IPosteriorModel<IPosterior> model, Tensor degraded, IReadOnlyList<int> grid,
        ColdSamplerKind kind, Generator? generator, double noiseFraction = 0.0, SamplingOptions? options = null) =>
        new Sampler<IPosterior>(process, model, Kernel(kind, noiseFraction)).Run(degraded, grid, generator, options);

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
    /// dimension) from the process's prior along <paramref name="grid"/>. Random degradation choices
    /// are redrawn first with <paramref name="generator"/>.
    /// </summary>
    public static Tensor Generate(ColdProcess process, IPosteriorModel<IPosterior> model, int count, long[] shape, IReadOnlyList<int> grid,
        ColdSamplerKind kind, Generator? generator, Device? device = null, double noiseFraction = 0.0, SamplingOptions? options = null)
    {
        if (count < 1) throw new UdmException($"the number of samples must be at least 1, got {count}.");
        process.Degradation.Resample(generator);
        return new Sampler<IPosterior>(process, model, Kernel(kind, noiseFraction))
            .Sample([count, .. shape], grid, device ?? torch.CPU, generator, options);
    }
}
