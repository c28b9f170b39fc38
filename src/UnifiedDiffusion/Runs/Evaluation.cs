using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Metrics;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>Sample-quality metrics of one sampler on one data set.</summary>
/// <param name="Data">The data set's name.</param>
/// <param name="Sampler">The sampler's CLI name.</param>
/// <param name="Steps">Reverse steps (network evaluations).</param>
/// <param name="Eta">η used by DDIM.</param>
/// <param name="Count">Number of samples.</param>
/// <param name="SlicedW2">Sliced Wasserstein-2 to fresh data of the same count.</param>
/// <param name="LogDensity">Mean log-density of the samples under the true mixture (mixtures only).</param>
/// <param name="Seconds">Wall time of sampling.</param>
/// <param name="NllBitsPerDim">Negative ELBO of held-out data along the same grid, in bits per dimension (when asked for).</param>
public sealed record SampleQuality(string Data, string Sampler, int Steps, double Eta, int Count, double SlicedW2, double? LogDensity, double Seconds,
    double? NllBitsPerDim = null);

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
        GaussianSamplerSpec spec, IDataSource data, int count, long seed)
    {
        var grid = GaussianSampling.Grid(spec, process.Steps);
        var options = spec.Kind switch
        {
            GaussianSamplerKind.Ddpm => new ElboOptions(ElboVariance.DdpmSmall, ElboDecoder.Continuous),
            GaussianSamplerKind.AnalyticDdpm => new ElboOptions(ElboVariance.Analytic, ElboDecoder.Continuous,
                new AnalyticKernel(process.Schedule, gamma(grid), (spec.Analytic ?? new AnalyticOptions()) with { Eta = 1, ClipPixels = null })),
            _ => throw new UdmException($"--nll is defined for ddpm and analytic-ddpm, not {spec.Name} (a deterministic sampler has no likelihood)."),
        };
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed + 104729);
        var x0 = data.Sample(count, generator);
        using var terms = Likelihood.NegativeElbo(process, model, x0, grid, options, generator);
        return terms.BitsPerDim;
    }

    /// <summary>Samples from a trained run and measures the result.</summary>
    public static SampleQuality Evaluate(Experiment experiment, GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        using var samples = experiment.Sample(spec, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        var (w2, logDensity) = Measure(samples, experiment.Data, seed);
        return new SampleQuality(experiment.Data.Name, spec.Name, spec.Steps, spec.Eta, count, w2, logDensity, seconds);
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
        public SampleQuality Evaluate(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
        {
            if (spec.NeedsGamma) Gamma(GaussianSampling.Grid(spec, Process.Steps));
            var clock = Stopwatch.StartNew();
            using var samples = GaussianSampling.Sample(Process, Model, _gamma, spec, count, Mixture.SampleShape, new Generator((ulong)seed), options: options);
            double seconds = clock.Elapsed.TotalSeconds;
            var (w2, logDensity) = Measure(samples, Mixture, seed);
            return new SampleQuality(Mixture.Name, spec.Name, spec.Steps, spec.Eta, count, w2, logDensity, seconds);
        }
    }
}
