using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// A Gaussian sampler: DDPM and DDIM-η need only a draw of x̂_0 (<see cref="DrawKernel"/>), so they
/// also run over decoders that draw tokens; Analytic-DPM needs the posterior mean and Γ_t.
/// </summary>
/// <param name="Name">The sampler's name.</param>
/// <param name="Summary">What it is, for help text.</param>
/// <param name="Accepts">The options it takes.</param>
/// <param name="DrawKernel">(schedule, η) → the kernel, for samplers that need only a draw; null for Analytic-DPM.</param>
/// <param name="AnalyticEta">Analytic-DPM's fixed η (1 for the DDPM form), or null to take the request's η.</param>
/// <param name="DefaultClipPixels">The official code's first-step clip in pixel bins (analytic samplers).</param>
/// <param name="Likelihood">The reverse variance whose ELBO is this sampler's likelihood, or null for a deterministic sampler.</param>
public sealed record GaussianSamplerEntry(string Name, string Summary, SamplerOption Accepts,
    Func<NoiseSchedule, double, IReverseKernel<IPosterior>>? DrawKernel = null, double? AnalyticEta = null, double? DefaultClipPixels = null,
    ElboVariance? Likelihood = null)
    : SamplerEntry(Name, Summary, Accepts, [])
{
    /// <summary>True for the Analytic-DPM samplers, which need a Γ table.</summary>
    public bool NeedsGamma => DrawKernel is null;
}

/// <summary>The Gaussian samplers: the one registry of their names, options and kernels.</summary>
public static class GaussianSamplers
{
    private const SamplerOption Conditional = SamplerOption.Guidance | SamplerOption.Label;

    /// <summary>DDPM, DDIM (DDIM-η) and Analytic-DPM in its DDPM and DDIM forms; ddim is the default.</summary>
    public static SamplerRegistry<GaussianSamplerEntry> Registry { get; } = new("gaussian", "ddim",
        new("ddpm", "ancestral sampling, DDIM-η at η = 1", Conditional, DrawKernel: (schedule, _) => GaussianKernels.Ddpm(schedule),
            Likelihood: ElboVariance.DdpmSmall),
        new("ddim", "deterministic at η = 0, DDIM-η above", SamplerOption.Eta | Conditional,
            DrawKernel: (schedule, eta) => eta == 0 ? GaussianKernels.Ddim() : GaussianKernels.DdimEta(schedule, eta)),
        new("analytic-ddpm", "Analytic-DPM's variance, DDPM form", SamplerOption.AnalyticClip | SamplerOption.Gamma | Conditional,
            AnalyticEta: 1, DefaultClipPixels: 2, Likelihood: ElboVariance.Analytic),
        new("analytic-ddim", "Analytic-DPM's variance, DDIM form", SamplerOption.Eta | SamplerOption.AnalyticClip | SamplerOption.Gamma | Conditional,
            DefaultClipPixels: 1),
        new("dpm++2m", "DPM-Solver++(2M): DDIM on an x̂_0 extrapolated from the last two steps", Conditional,
            DrawKernel: (schedule, _) => GaussianKernels.DpmSolver2M(schedule)),
        new("dpm++2m-sde", "DPM-Solver++(2M) SDE: the stochastic variant (midpoint)", Conditional,
            DrawKernel: (schedule, _) => GaussianKernels.DpmSolver2MSde(schedule)));

    /// <summary>
    /// The samplers that need only a draw of x̂_0 (for decoders that draw tokens): ddpm and ddim. The
    /// multistep ones would extrapolate between two token draws, which is not an estimate of anything.
    /// </summary>
    public static SamplerRegistry<GaussianSamplerEntry> DrawOnly(string family) =>
        new(family, "ddpm", [.. Registry.Entries.Where(e => e.Name is "ddpm" or "ddim")]);
}

/// <summary>A Gaussian sampler request: which sampler, how many steps, η, and the grid spacing or explicit levels.</summary>
/// <param name="Sampler">The sampler's name in <see cref="GaussianSamplers.Registry"/>; null for its default (ddim).</param>
/// <param name="Steps">Number of reverse steps K.</param>
/// <param name="Eta">η for DDIM-η and Analytic-DDIM (0 = deterministic); the DDPM forms fix their own.</param>
/// <param name="Grid">leading, trailing, quadratic, or an explicit list such as "999,500,0".</param>
/// <param name="Analytic">Settings of the analytic kernels; null takes the official code's defaults
/// (first-step clip of 2 pixel bins for Analytic-DDPM and 1 for Analytic-DDIM, the residual Γ estimator).</param>
public sealed record GaussianSamplerSpec(string? Sampler = null, int Steps = 50, double Eta = 0,
    string Grid = "leading", AnalyticOptions? Analytic = null)
{
    /// <summary>The sampler's registry entry.</summary>
    public GaussianSamplerEntry Entry => GaussianSamplers.Registry.Find(Sampler);

    /// <summary>True for the Analytic-DPM samplers, which need a Γ table.</summary>
    public bool NeedsGamma => Entry.NeedsGamma;

    /// <summary>The sampler's name.</summary>
    public string Name => Entry.Name;

    /// <summary>The name with η when the sampler takes it and it is not 0.</summary>
    public string DisplayName => Eta != 0 && Entry.Accepts.HasFlag(SamplerOption.Eta) ? FormattableString.Invariant($"{Name} η={Eta:0.##}") : Name;
}

/// <summary>Runs the Gaussian samplers through the core sampler loop.</summary>
public static class GaussianSampling
{
    /// <summary>The descending grid the spec asks for.</summary>
    public static int[] Grid(GaussianSamplerSpec spec, int levels) => TimeGrid.Parse(spec.Grid, levels, spec.Steps);

    /// <summary>The reverse kernel the spec asks for. Analytic kernels need <paramref name="gamma"/> to cover the grid.</summary>
    public static IReverseKernel<GaussianPosterior> Kernel(GaussianSamplerSpec spec, NoiseSchedule schedule, GammaTable? gamma)
    {
        var entry = spec.Entry;
        if (entry.DrawKernel is { } draw) return draw(schedule, spec.Eta);
        var options = spec.Analytic ?? new AnalyticOptions(ClipPixels: entry.DefaultClipPixels);
        return new AnalyticKernel(schedule, gamma ?? throw MissingGamma(), options with { Eta = entry.AnalyticEta ?? spec.Eta });
    }

    /// <summary>Draws <paramref name="count"/> samples of shape <paramref name="sampleShape"/>.</summary>
    public static Tensor Sample(GaussianProcess process, IPosteriorModel<GaussianPosterior> model, GammaTable? gamma,
        GaussianSamplerSpec spec, int count, long[] sampleShape, Generator generator, Device? device = null, SamplingOptions? options = null)
    {
        var grid = Grid(spec, process.Levels);
        var sampler = new Sampler<GaussianPosterior>(process, model, Kernel(spec, process.Schedule, gamma));
        return sampler.Sample([count, .. sampleShape], grid, device ?? torch.CPU, generator, options);
    }

    /// <summary>
    /// For an analytic sampler, the largest error of Γ_t relative to 1 − Γ_t over the spec's grid
    /// (<see cref="GammaTable.RelativeError"/>), which <c>udm eval</c> reports as gamma_rel_error; null for the others.
    /// </summary>
    public static double? GammaRelativeError(GaussianSamplerSpec spec, GammaTable? gamma, int levels)
    {
        if (!spec.NeedsGamma || gamma is null) return null;
        var estimator = (spec.Analytic ?? new AnalyticOptions()).Estimator;
        return Grid(spec, levels).Where(t => t > 0).Max(t => gamma.RelativeError(t, estimator));
    }

    private static UdmException MissingGamma() =>
        new("the analytic samplers need Γ_t estimated from training data; estimate it with GammaTable.Estimate first.");
}
