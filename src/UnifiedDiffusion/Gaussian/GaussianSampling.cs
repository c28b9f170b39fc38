using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>The Gaussian samplers, by their CLI names.</summary>
public enum GaussianSamplerKind
{
    /// <summary><c>ddpm</c>: ancestral sampling.</summary>
    Ddpm,
    /// <summary><c>ddim</c>: deterministic at η = 0; DDIM-η otherwise.</summary>
    Ddim,
    /// <summary><c>analytic-ddpm</c>: Analytic-DPM variance, DDPM form.</summary>
    AnalyticDdpm,
    /// <summary><c>analytic-ddim</c>: Analytic-DPM variance, DDIM form.</summary>
    AnalyticDdim,
}

/// <summary>A sampler request: which kernel, how many steps, η, and the grid spacing or explicit levels.</summary>
/// <param name="Kind">The sampler.</param>
/// <param name="Steps">Number of reverse steps K.</param>
/// <param name="Eta">η for DDIM (0 = DDIM, 1 = DDPM-like); ignored by DDPM.</param>
/// <param name="Grid">leading, trailing, quadratic, or an explicit list such as "999,500,0".</param>
/// <param name="Analytic">Settings of the analytic kernels; null takes the official code's defaults
/// (first-step clip of 2 pixel bins for Analytic-DDPM and 1 for Analytic-DDIM, the paper's Γ estimator).</param>
public sealed record GaussianSamplerSpec(GaussianSamplerKind Kind = GaussianSamplerKind.Ddim, int Steps = 50, double Eta = 0,
    string Grid = "leading", AnalyticOptions? Analytic = null)
{
    /// <summary>The CLI names, in <see cref="GaussianSamplerKind"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["ddpm", "ddim", "analytic-ddpm", "analytic-ddim"];

    /// <summary>Parses a CLI sampler name.</summary>
    public static GaussianSamplerKind ParseKind(string name)
    {
        int i = Names.ToList().IndexOf(name.Trim().ToLowerInvariant());
        if (i < 0) throw new UdmException($"unknown sampler \"{name}\": use one of {string.Join(", ", Names)}.");
        return (GaussianSamplerKind)i;
    }

    /// <summary>True for the Analytic-DPM samplers, which need a Γ table.</summary>
    public bool NeedsGamma => Kind is GaussianSamplerKind.AnalyticDdpm or GaussianSamplerKind.AnalyticDdim;

    /// <summary>The CLI name.</summary>
    public string Name => Names[(int)Kind];
}

/// <summary>Runs the Gaussian samplers through the core sampler loop.</summary>
public static class GaussianSampling
{
    /// <summary>The descending grid the spec asks for.</summary>
    public static int[] Grid(GaussianSamplerSpec spec, int levels) => TimeGrid.Parse(spec.Grid, levels, spec.Steps);

    /// <summary>The reverse kernel the spec asks for. Analytic kernels need <paramref name="gamma"/> to cover the grid.</summary>
    public static IReverseKernel<GaussianPosterior> Kernel(GaussianSamplerSpec spec, NoiseSchedule schedule, GammaTable? gamma)
    {
        return spec.Kind switch
        {
            GaussianSamplerKind.Ddpm => GaussianKernels.Ddpm(schedule),
            GaussianSamplerKind.Ddim => spec.Eta == 0 ? GaussianKernels.Ddim() : GaussianKernels.DdimEta(schedule, spec.Eta),
            GaussianSamplerKind.AnalyticDdpm => new AnalyticKernel(schedule, gamma ?? throw MissingGamma(), (spec.Analytic ?? DefaultAnalytic(spec.Kind)) with { Eta = 1 }),
            GaussianSamplerKind.AnalyticDdim => new AnalyticKernel(schedule, gamma ?? throw MissingGamma(), (spec.Analytic ?? DefaultAnalytic(spec.Kind)) with { Eta = spec.Eta }),
            _ => throw new ArgumentOutOfRangeException(nameof(spec)),
        };
    }

    /// <summary>Draws <paramref name="count"/> samples of shape <paramref name="sampleShape"/>.</summary>
    public static Tensor Sample(GaussianProcess process, IPosteriorModel<GaussianPosterior> model, GammaTable? gamma,
        GaussianSamplerSpec spec, int count, long[] sampleShape, Generator generator, Device? device = null, SamplingOptions? options = null)
    {
        var grid = Grid(spec, process.Steps);
        var sampler = new Sampler<GaussianPosterior>(process, model, Kernel(spec, process.Schedule, gamma));
        return sampler.Sample([count, .. sampleShape], grid, device ?? torch.CPU, generator, options);
    }

    /// <summary>The official code's first-step clip: 2 pixel bins for Analytic-DDPM, 1 for Analytic-DDIM.</summary>
    public static double DefaultClipPixels(GaussianSamplerKind kind) => kind == GaussianSamplerKind.AnalyticDdpm ? 2 : 1;

    private static AnalyticOptions DefaultAnalytic(GaussianSamplerKind kind) => new(ClipPixels: DefaultClipPixels(kind));

    private static UdmException MissingGamma() =>
        new("the analytic samplers need Γ_t estimated from training data; estimate it with GammaTable.Estimate first.");
}
