using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Cold diffusion on images: F_t(x_0, ε) = D_t(x_0) + σε with a UNet restoration network. By
/// default it restores degraded held-out images; with <see cref="SamplerRequest.Generate"/> it
/// generates from the prior over fully degraded images (a colour mixture, for blur and fade).
/// </summary>
public sealed class ColdFamilyModel : FamilyModel
{
    /// <summary>Sampler names: the three kernels, plus the two restoration baselines of the paper's table.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. ColdSampling.Names, "direct", "degraded"];

    private readonly ColdConfig _cold;
    private readonly ImageDataset _train;
    private readonly ImageDataset _test;
    private readonly Device _device;
    private ChannelMeanMixturePrior? _prior;

    internal ColdFamilyModel(ExperimentConfig config, OpenedData data, Device device)
    {
        if (data.Kind != DataKind.Images) throw new UdmException($"the cold family restores images; {data.Train.Name} is not an image set.");
        _cold = config.Cold ?? new ColdConfig();
        _train = (ImageDataset)data.Train;
        _test = (ImageDataset)data.Test;
        _device = device;
        var unet = ImageNetworks.UNetFor(config, data);
        if (unet.ClassCount > 0) throw new UdmException("the cold family trains unconditional restoration networks; set unet.classCount to 0.");
        if (!(_cold.Sigma >= 0)) throw new UdmException($"cold.sigma must be 0 or more, got {_cold.Sigma}.");
        ColdProcess = new ColdProcess(CreateDegradation(_cold), _cold.Sigma, new LazyPrior(this));
        TrainedNetwork = new UNet(unet);
        SamplingNetwork = new UNet(unet);
        TrainingModel = new ColdPosteriorModel(ColdProcess, TrainedNetwork, _cold.Loss);
        Model = new ColdPosteriorModel(ColdProcess, SamplingNetwork, _cold.Loss);
    }

    /// <summary>The degradation a config names.</summary>
    public static Degradation CreateDegradation(ColdConfig cold) => cold.Degradation.Trim().ToLowerInvariant() switch
    {
        "blur" => new BlurDegradation(cold.Steps, cold.KernelSize, cold.BlurStd, cold.Routine, cold.Padding),
        "mask" => new GaussianMaskDegradation(cold.Steps, cold.MaskStd, cold.RandomCentre),
        "superres" => new SuperResolutionDegradation(cold.Steps),
        "fade" => new FadeDegradation(cold.Steps),
        _ => throw new UdmException($"unknown cold.degradation \"{cold.Degradation}\": use blur, mask, superres or fade."),
    };

    /// <inheritdoc />
    public override string Family => "cold";

    /// <summary>The cold forward process.</summary>
    public ColdProcess ColdProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => ColdProcess;

    /// <summary>The trained restoration network G.</summary>
    public UNet TrainedNetwork { get; }

    /// <summary>The EMA restoration network used for sampling.</summary>
    public UNet SamplingNetwork { get; }

    /// <inheritdoc />
    public override nn.Module Network => TrainedNetwork;

    /// <inheritdoc />
    public override nn.Module EmaNetwork => SamplingNetwork;

    /// <summary>The posterior model over the trained network.</summary>
    public ColdPosteriorModel TrainingModel { get; }

    /// <summary>The posterior model over the EMA network.</summary>
    public ColdPosteriorModel Model { get; }

    /// <inheritdoc />
    public override IReadOnlyList<string> SamplerNames => Names;

    /// <inheritdoc />
    public override string DefaultSampler => "improved";

    /// <inheritdoc />
    public override int DefaultSteps => ColdProcess.Steps;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => ColdProcess.TrainingLoss(TrainingModel, x0, generator);

    /// <summary>The generative prior: a colour mixture fitted to (up to 10,000) training images.</summary>
    public ChannelMeanMixturePrior Prior(double? noise = null)
    {
        if (_prior is null)
        {
            using var scope = torch.NewDisposeScope();
            using var subset = _train.Take(10_000);
            _prior = ChannelMeanMixturePrior.Fit(subset.Images, _cold.PriorComponents, seed: 0, noiseStd: _cold.PriorNoise);
        }
        return noise is { } n ? _prior.WithNoise(n) : _prior;
    }

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        if (request.Generate) return Generate(request, count, seed, options);
        var (originals, degraded, restored) = Restore(request, count, seed, options);
        using (originals) using (degraded) return restored;
    }

    /// <summary>Generates from the prior over fully degraded images.</summary>
    public Tensor Generate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        string name = SamplerName(request);
        if (name is "direct" or "degraded") throw new UdmException($"--sampler {name} is a restoration baseline; generation uses naive, improved or interpolate.");
        if (_cold.Degradation.Trim().ToLowerInvariant() is "mask")
            throw new UdmException("generation needs a degradation whose last level is a plain colour (blur, fade, superres); this run restores Gaussian-masked images (drop --generate).");
        var kind = ColdSampling.Parse(name);
        CheckInterpolate(kind);
        var generator = new Generator((ulong)seed, _device);
        var process = new ColdProcess(ColdProcess.Degradation, ColdProcess.Sigma, Prior(request.PriorNoise));
        var grid = TimeGrid.Parse(request.Grid, process.Steps, StepCount(request));
        return ColdSampling.Generate(process, Model, count, _train.SampleShape, grid, kind, generator, _device, request.Eta, options);
    }

    /// <summary>
    /// Restores the first <paramref name="count"/> held-out images from level T: returns the
    /// originals, their degraded versions and the restorations (all [count, C, H, W]).
    /// </summary>
    public (Tensor Originals, Tensor Degraded, Tensor Restored) Restore(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        string name = SamplerName(request);
        using var scope = torch.NewDisposeScope();
        var generator = new Generator((ulong)seed, _device);
        using var subset = _test.Take(count);
        var originals = subset.Images.to(_device);
        ColdProcess.Degradation.Resample(generator);
        int levels = ColdProcess.Steps;
        var degraded = ColdProcess.CorruptAt(originals, levels, ColdProcess.SampleNoise(originals, generator));
        Tensor restored;
        if (name == "degraded") restored = degraded.clone();
        else if (name == "direct") restored = ColdSampling.Direct(Model, degraded, levels);
        else
        {
            var kind = ColdSampling.Parse(name);
            CheckInterpolate(kind);
            var grid = TimeGrid.Parse(request.Grid, levels, StepCount(request));
            restored = ColdSampling.Restore(ColdProcess, Model, degraded, grid, kind, generator, request.Eta, options);
        }
        return (originals.MoveToOuterDisposeScope(), degraded.MoveToOuterDisposeScope(), restored.MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var judge = ImageJudge.For(_train, _test);
        string name = SamplerName(request);
        var clock = Stopwatch.StartNew();
        if (request.Generate)
        {
            using var samples = Generate(request, count, seed, options);
            double seconds = clock.Elapsed.TotalSeconds;
            return new EvaluationResult(_train.Name, Family, $"generate {name}{NoiseLabel(request)}", StepCount(request), count, seconds, judge.Generation(samples));
        }
        var (originals, degraded, restored) = Restore(request, count, seed, options);
        using (originals) using (degraded) using (restored)
        {
            double seconds = clock.Elapsed.TotalSeconds;
            int steps = name is "direct" ? 1 : name is "degraded" ? 0 : StepCount(request);
            return new EvaluationResult(_train.Name, Family, name, steps, count, seconds, judge.Restoration(restored, originals));
        }
    }

    private string NoiseLabel(SamplerRequest request) =>
        FormattableString.Invariant($", prior noise {request.PriorNoise ?? _cold.PriorNoise:0.###}");

    /// <inheritdoc />
    /// <remarks>Inpainting fixes pixels during generation from the prior (use with --generate).</remarks>
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        options with { Fixed = LoadInpainting(imagePath, maskPath, count, _train.SampleShape, _device) };

    /// <inheritdoc />
    public override void WriteSamples(string path, Tensor samples, string title)
    {
        if (!Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase)) throw new UdmException($"--out {path}: image samples are written as a .png grid.");
        ImageGrid.Save(path, samples);
    }

    /// <summary>
    /// Writes a restoration sheet: rows of 8 originals, their degraded versions and the restorations,
    /// repeated, so that each column shows one image's journey.
    /// </summary>
    public static void WriteRestorationSheet(string path, Tensor originals, Tensor degraded, Tensor restored)
    {
        using var scope = torch.NewDisposeScope();
        long n = originals.shape[0];
        var rows = new List<Tensor>();
        for (long start = 0; start < n; start += 8)
        {
            long width = Math.Min(8, n - start);
            foreach (var t in new[] { originals, degraded, restored })
            {
                var row = t.narrow(0, start, width);
                if (width < 8) row = torch.cat([row, torch.zeros([8 - width, .. t.shape[1..]], device: t.device)], 0);
                rows.Add(row);
            }
        }
        ImageGrid.Save(path, torch.cat(rows, 0).cpu(), columns: 8);
    }

    private void CheckInterpolate(ColdSamplerKind kind)
    {
        if (kind == ColdSamplerKind.Interpolate && ColdProcess.Sigma == 0)
            throw new UdmException("the interpolate sampler mixes fresh noise into the inferred residual, which needs cold.sigma > 0; this run has σ = 0 (use improved).");
    }

    /// <summary>The process's prior, fitted on first use (training never needs it).</summary>
    private sealed class LazyPrior(ColdFamilyModel owner) : ColdPrior
    {
        public override Tensor Sample(long[] shape, Device device, Generator? generator) => owner.Prior().Sample(shape, device, generator);
    }
}
