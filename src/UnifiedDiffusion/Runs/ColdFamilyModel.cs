using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Cold diffusion on images: F_t(x_0, ε) = D_t(x_0) + σε with a UNet restoration network. By
/// default it restores degraded held-out images; with <see cref="SamplerRequest.Generate"/> it
/// generates from the prior over fully degraded images (a colour mixture, for blur and fade).
/// </summary>
public sealed class ColdFamilyModel : FamilyModel
{
    private readonly ColdConfig _cold;
    private readonly ImageModality _images;
    private ChannelMeanMixturePrior? _prior;
    private string? _runDirectory;

    /// <summary>The colour prior's file in the run folder: fitted once, then read (shipped models sample without the data).</summary>
    public const string PriorFile = "cold-prior.json";

    internal ColdFamilyModel(ExperimentConfig config, ImageModality images) : base(images)
    {
        _cold = config.Cold ?? new ColdConfig();
        _images = images;
        var unet = images.UNetConfig(config);
        if (unet.ClassCount > 0) throw new UdmException("the cold family trains unconditional restoration networks; set unet.classCount to 0.") { Subject = "unet.classCount" };
        if (!(_cold.Sigma >= 0)) throw new UdmException($"cold.sigma must be 0 or more, got {_cold.Sigma}.") { Subject = "cold.sigma" };
        ColdProcess = new ColdProcess(CreateDegradation(_cold), _cold.Sigma, new LazyPrior(this));
        Restorer = new UNet(unet);
        Model = new ColdPosteriorModel(ColdProcess, Restorer, _cold.Loss);
    }

    /// <summary>The degradation a config names.</summary>
    public static Degradation CreateDegradation(ColdConfig cold) => cold.Degradation.Trim().ToLowerInvariant() switch
    {
        "blur" => new BlurDegradation(cold.Levels, cold.KernelSize, cold.BlurStd, cold.Routine, cold.Padding),
        "mask" => new GaussianMaskDegradation(cold.Levels, cold.MaskStd, cold.RandomCentre),
        "superres" => new SuperResolutionDegradation(cold.Levels),
        "fade" => new FadeDegradation(cold.Levels),
        _ => throw new UdmException($"unknown cold.degradation \"{cold.Degradation}\": use blur, mask, superres or fade.") { Subject = "cold.degradation" },
    };

    /// <inheritdoc />
    public override string Family => "cold";

    /// <summary>The cold forward process.</summary>
    public ColdProcess ColdProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => ColdProcess;

    /// <summary>The restoration network G.</summary>
    public UNet Restorer { get; }

    /// <inheritdoc />
    public override nn.Module Network => Restorer;

    /// <summary>The posterior model over the network.</summary>
    public ColdPosteriorModel Model { get; }

    /// <inheritdoc />
    public override ISamplerRegistry Samplers => ColdSampling.Registry;

    /// <inheritdoc />
    public override int DefaultSteps => ColdProcess.Levels;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => DenoisingObjective.Loss(ColdProcess, Model, x0, generator);

    /// <summary>
    /// The generative prior: a colour mixture fitted to (up to 10,000) training images, read from
    /// <see cref="PriorFile"/> in the run folder when it is there and written there after a fit.
    /// </summary>
    public ChannelMeanMixturePrior Prior(double? noise = null)
    {
        string? path = _runDirectory is null ? null : Path.Combine(_runDirectory, PriorFile);
        if (_prior is null && path is not null && File.Exists(path)) _prior = ChannelMeanMixturePrior.Load(path);
        if (_prior is null)
        {
            using var scope = torch.NewDisposeScope();
            using var subset = _images.Train.Take(10_000);
            _prior = ChannelMeanMixturePrior.Fit(subset.Images, _cold.PriorComponents, seed: 0, noiseStd: _cold.PriorNoise);
            if (path is not null) _prior.Save(path);
        }
        return noise is { } n ? _prior.WithNoise(n) : _prior;
    }

    /// <inheritdoc />
    internal override void WeightsChanged(string? runDirectory, long step) => _runDirectory = runDirectory;

    /// <inheritdoc />
    internal override IReadOnlyList<string> SamplingFiles => [PriorFile];

    /// <inheritdoc />
    internal override void WriteSamplingFiles() => Prior();

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        if (request.Generate) return Generate(request, count, seed, options);
        var (originals, degraded, restored) = Restore(request, count, seed, options);
        using (originals) using (degraded) return restored;
    }

    /// <summary>The sampler of a request, its options checked; prior noise needs generation.</summary>
    private ColdSamplerEntry Resolve(SamplerRequest request)
    {
        var entry = ColdSampling.Registry.Resolve(request.Sampler, request.Given);
        if (request.PriorNoise is not null && !request.Generate)
            throw new UdmException("prior noise applies to generation from the prior; restoration starts from degraded data.") { Subject = "priorNoise" };
        if (entry.NeedsNoise && ColdProcess.Sigma == 0)
            throw new UdmException($"the {entry.Name} sampler mixes fresh noise into the inferred residual, which needs cold.sigma > 0; this run has σ = 0 (use {ColdSampling.Registry.Default.Name}).") { Subject = "sampler" };
        return entry;
    }

    /// <summary>Generates from the prior over fully degraded images.</summary>
    public Tensor Generate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var entry = Resolve(request with { Generate = true });
        if (_cold.Degradation.Trim().ToLowerInvariant() is "mask")
            throw new UdmException("generation needs a degradation whose last level is a plain colour (blur, fade, superres); this run restores Gaussian-masked images.") { Subject = "generate" };
        var generator = new Generator((ulong)seed, Device);
        var process = ColdProcess.WithPrior(Prior(request.PriorNoise));
        var grid = TimeGrid.Parse(request.Grid, process.Levels, StepCount(request));
        return ColdSampling.Generate(process, Model, count, _images.Train.SampleShape, grid, entry.Kernel!(request.Eta ?? 0), generator, Device, options);
    }

    /// <summary>
    /// Restores the first <paramref name="count"/> held-out images from level T: returns the
    /// originals, their degraded versions and the restorations (all [count, C, H, W]). Images are
    /// degraded and restored in chunks of <see cref="SamplingOptions.MaxBatch"/>, each a batch of
    /// trajectories of its own (a random degradation choice is tied to batch positions).
    /// </summary>
    public (Tensor Originals, Tensor Degraded, Tensor Restored) Restore(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var entry = Resolve(request);
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed, Device);
        using var subset = _images.Test.Take(count);
        var originals = subset.Images.to(Device);
        int levels = ColdProcess.Levels;
        long chunk = Math.Max(1, options?.MaxBatch ?? count);
        var degradedParts = new List<Tensor>();
        var restoredParts = new List<Tensor>();
        for (long first = 0; first < count; first += chunk)
        {
            var part = originals.narrow(0, first, Math.Min(chunk, count - first));
            // One trajectory per image: its random degradation choice degrades it and stays fixed while restoring.
            var context = new SamplingContext { Generator = generator, TrajectoryNoise = ColdProcess.SampleTrajectoryNoise(part.shape[0], Device, generator) };
            var trajectory = ColdProcess.WithTrajectoryNoise(context.TrajectoryNoise);
            var degraded = trajectory.CorruptAt(part, levels, trajectory.SampleNoise(part, generator));
            degradedParts.Add(degraded);
            restoredParts.Add(entry switch
            {
                { Kernel: { } kernel } => ColdSampling.Restore(ColdProcess, Model, degraded, TimeGrid.Parse(request.Grid, levels, StepCount(request)),
                    kernel(request.Eta ?? 0), context, options),
                { BaselineSteps: 1 } => ColdSampling.Direct(Model, degraded, levels),
                _ => degraded.clone(),
            });
        }
        return (originals.MoveToOuterDisposeScope(), torch.cat(degradedParts).MoveToOuterDisposeScope(), torch.cat(restoredParts).MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var entry = Resolve(request);
        var clock = Stopwatch.StartNew();
        if (request.Generate)
        {
            using var samples = Generate(request, count, seed, options);
            double seconds = clock.Elapsed.TotalSeconds;
            string noise = FormattableString.Invariant($", prior noise {request.PriorNoise ?? _cold.PriorNoise:0.###}");
            return new EvaluationResult(_images.Train.Name, Family, $"generate {entry.Name}{noise}", StepCount(request), count, seconds, _images.Judge(samples, seed));
        }
        var (originals, degraded, restored) = Restore(request, count, seed, options);
        using (originals) using (degraded) using (restored)
        {
            double seconds = clock.Elapsed.TotalSeconds;
            return new EvaluationResult(_images.Train.Name, Family, entry.Name, entry.BaselineSteps ?? StepCount(request), count, seconds,
                _images.JudgeRestoration(restored, originals));
        }
    }

    /// <inheritdoc />
    /// <remarks>Without generation, a restoration sheet: rows of originals, degraded and restored images.</remarks>
    public override string WriteSamples(string path, SamplerRequest request, int count, long seed, SamplingOptions options, string title, string? template = null)
    {
        if (request.Generate || template is not null) return base.WriteSamples(path, request, count, seed, options, title, template);
        var (originals, degraded, restored) = Restore(request, count, seed, options);
        using (originals) using (degraded) using (restored) ImageModality.WriteSheet(path, originals, degraded, restored);
        return "restorations (rows: original, degraded, restored)";
    }

    /// <inheritdoc />
    /// <remarks>Inpainting fixes pixels during generation from the prior (use with generation).</remarks>
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        options with { Fixed = _images.Inpainting(imagePath, maskPath, count) };

    /// <summary>The process's prior, fitted on first use (training never needs it).</summary>
    private sealed class LazyPrior(ColdFamilyModel owner) : ColdPrior
    {
        public override Tensor Sample(long[] shape, Device device, Generator? generator) => owner.Prior().Sample(shape, device, generator);
    }
}
