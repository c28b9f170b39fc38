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
        var grid = GaussianSampling.Grid(spec, process.Levels);
        var options = spec.Entry.Likelihood switch
        {
            ElboVariance.Analytic => new ElboOptions(ElboVariance.Analytic, decoder,
                new AnalyticKernel(process.Schedule, gamma(grid), (spec.Analytic ?? new AnalyticOptions()) with { Eta = 1, ClipPixels = null })),
            { } variance => new ElboOptions(variance, decoder),
            null => throw new UdmException($"the likelihood bound is defined for samplers with a reverse variance ({string.Join(", ", GaussianSamplers.Registry.Entries.Where(e => e.Likelihood is not null).Select(e => e.Name))}), not {spec.Name}: a deterministic sampler has no likelihood.") { Subject = "nll" },
        };
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed + 104729);
        var x0 = data.Sample(count, generator);
        using var terms = Likelihood.NegativeElbo(process, model, x0, grid, options, generator);
        return terms.BitsPerDim;
    }

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
                ?? throw new UdmException($"the exact denoiser needs a Gaussian mixture with a closed-form posterior: use gmm8 or gmm25, not {dataName}.") { Subject = "oracle" };
            Process = new GaussianProcess(NoiseSchedule.Create(schedule ?? new ScheduleConfig()));
            Model = new MixtureOracle(Mixture, Process);
            _gamma = new GammaTable(Process.Levels);
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

        /// <summary>Samples with the exact denoiser and measures them (sliced W2 and log-density).</summary>
        public EvaluationResult Evaluate(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
        {
            if (spec.NeedsGamma) Gamma(GaussianSampling.Grid(spec, Process.Levels));
            var clock = Stopwatch.StartNew();
            using var samples = GaussianSampling.Sample(Process, Model, _gamma, spec, count, Mixture.SampleShape, new Generator((ulong)seed), options: options);
            double seconds = clock.Elapsed.TotalSeconds;
            var (w2, logDensity) = Measure(samples, Mixture, seed);
            var metrics = new Dictionary<string, double> { ["sliced_w2"] = w2, ["log_density"] = logDensity!.Value };
            if (GaussianSampling.GammaRelativeError(spec, _gamma, Process.Levels) is { } gammaError) metrics["gamma_rel_error"] = gammaError;
            return new EvaluationResult(Mixture.Name, "gaussian", spec.DisplayName, spec.Steps, count, seconds, metrics);
        }

        /// <summary>The reference row: <paramref name="count"/> fresh draws of the mixture through the same metrics.</summary>
        public EvaluationResult EvaluateReference(int count, long seed)
        {
            var clock = Stopwatch.StartNew();
            using var samples = Mixture.Sample(count, new Generator((ulong)seed));
            var (w2, logDensity) = Measure(samples, Mixture, seed);
            return new EvaluationResult(Mixture.Name, "gaussian", FamilyModel.ReferenceSampler, 0, count, clock.Elapsed.TotalSeconds,
                new Dictionary<string, double> { ["sliced_w2"] = w2, ["log_density"] = logDensity!.Value });
        }

        /// <summary>The negative ELBO in bits/dim of fresh mixture samples along the spec's grid, with the exact denoiser.</summary>
        public double NllBitsPerDim(GaussianSamplerSpec spec, int count, long seed) =>
            Evaluation.NllBitsPerDim(Process, Model, Gamma, spec, Mixture, count, seed);
    }
}
