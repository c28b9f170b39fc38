using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Metrics;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>Evaluates Gaussian samplers against the data, with a trained model or an exact oracle.</summary>
public static class Evaluation
{
    /// <summary>Number of random directions for sliced W2.</summary>
    public const int Projections = 256;

    /// <summary>Sliced W2 to fresh data, and mean log-density under the true mixture when the data is one.</summary>
    public static (double SlicedW2, double? LogDensity) Measure(Tensor samples, IDataSource data, long seed)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed + 7919);
        var reference = data.Sample((int)samples.shape[0], generator);
        double w2 = SampleMetrics.SlicedWasserstein2(samples, reference, Projections, generator);
        double? logDensity = data is GaussianMixture mixture ? mixture.LogDensity(samples).mean().item<double>() : null;
        return (w2, logDensity);
    }

    /// <summary>
    /// The negative ELBO (NLL bound) in bits per dimension of <paramref name="count"/> fresh data
    /// samples along the spec's grid: DDPM's small variance for <c>ddpm</c>, Analytic-DPM's for
    /// <c>analytic-ddpm</c> (DDIM has no likelihood). The decoder is a continuous Gaussian density.
    /// </summary>
    public static double NllBitsPerDim(GaussianProcess process, IPosteriorModel<GaussianPosterior> model, Func<int[], GammaTable> gamma,
        GaussianSamplerSpec spec, IDataSource data, int count, long seed, ElboDecoder decoder = ElboDecoder.Continuous)
    {
        var grid = GaussianSampling.Grid(spec, process.Steps);
        var options = spec.Kind switch
        {
            GaussianSamplerKind.Ddpm => new ElboOptions(ElboVariance.DdpmSmall, decoder),
            GaussianSamplerKind.AnalyticDdpm => new ElboOptions(ElboVariance.Analytic, decoder,
                new AnalyticKernel(process.Schedule, gamma(grid), (spec.Analytic ?? new AnalyticOptions()) with { Eta = 1, ClipPixels = null })),
            _ => throw new UdmException($"--nll is defined for ddpm and analytic-ddpm, not {spec.Name} (a deterministic sampler has no likelihood)."),
        };
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed + 104729);
        var x0 = data.Sample(count, generator);
        using var terms = Likelihood.NegativeElbo(process, model, x0, grid, options, generator);
        return terms.BitsPerDim;
    }

    /// <summary>The common result of a Gaussian sampler's samples: sliced W2 and, for mixtures, the log-density.</summary>
    internal static EvaluationResult Result(Tensor samples, IDataSource data, GaussianSamplerSpec spec, long seed, double seconds)
    {
        var (w2, logDensity) = Measure(samples, data, seed);
        var metrics = new Dictionary<string, double> { ["sliced_w2"] = w2 };
        if (logDensity is { } l) metrics["log_density"] = l;
        return new EvaluationResult(data.Name, "gaussian", DisplayName(spec), spec.Steps, (int)samples.shape[0], seconds, metrics);
    }

    /// <summary>The sampler's name with η when it is not the default.</summary>
    public static string DisplayName(GaussianSamplerSpec spec) =>
        spec.Eta != 0 && spec.Kind is GaussianSamplerKind.Ddim or GaussianSamplerKind.AnalyticDdim ? FormattableString.Invariant($"{spec.Name} η={spec.Eta:0.##}") : spec.Name;

    /// <summary>
    /// The same measurement with the exact denoiser of a Gaussian-mixture data set in place of a
    /// network (linear schedule, T = 1000): how each sampler behaves when the model is perfect.
    /// </summary>
    public sealed class Oracle
    {
        private readonly GammaTable _gamma;

        /// <summary>An oracle for "gmm8" or "gmm25".</summary>
        public Oracle(string dataName, ScheduleConfig? schedule = null)
        {
            Mixture = ToyData.Create(dataName) as GaussianMixture
                ?? throw new UdmException($"--oracle needs a Gaussian mixture with a closed-form posterior: use gmm8 or gmm25, not {dataName}.");
            Process = new GaussianProcess(NoiseSchedule.Create(schedule ?? new ScheduleConfig()));
            Model = new MixtureOracle(Mixture, Process);
            _gamma = new GammaTable(Process.Steps);
        }

        /// <summary>The mixture.</summary>
        public GaussianMixture Mixture { get; }

        /// <summary>The forward process.</summary>
        public GaussianProcess Process { get; }

        /// <summary>The exact posterior model.</summary>
        public MixtureOracle Model { get; }

        /// <summary>Γ with the exact denoiser, estimated where missing (2000 samples per level).</summary>
        public GammaTable Gamma(int[] grid)
        {
            _gamma.EstimateMissing(Model, Process, Mixture, grid, 2000, seed: 12345);
            return _gamma;
        }

        /// <summary>Samples with the exact denoiser and measures them.</summary>
        public EvaluationResult Evaluate(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
        {
            if (spec.NeedsGamma) Gamma(GaussianSampling.Grid(spec, Process.Steps));
            var clock = Stopwatch.StartNew();
            using var samples = GaussianSampling.Sample(Process, Model, _gamma, spec, count, Mixture.SampleShape, new Generator((ulong)seed), options: options);
            return Result(samples, Mixture, spec, seed, clock.Elapsed.TotalSeconds);
        }
    }
}
