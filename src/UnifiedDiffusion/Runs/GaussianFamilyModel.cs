using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>Hot (Gaussian) diffusion: DDPM, DDIM, DDIM-η and Analytic-DPM over any denoiser network.</summary>
public sealed class GaussianFamilyModel : FamilyModel
{
    private readonly ExperimentConfig _config;
    private readonly OpenedData _opened;
    private readonly IDataSource _data;
    private readonly Device _device;
    private readonly LabeledDenoiser? _labeledView;
    private readonly GammaStore _gamma;

    internal GaussianFamilyModel(ExperimentConfig config, OpenedData data, Device device)
    {
        _config = config;
        _opened = data;
        _data = data.Train;
        _device = device;
        _gamma = new GammaStore(_data, device);
        GaussianProcess = new GaussianProcess(NoiseSchedule.Create(config.Schedule));
        (TrainedNetwork, SamplingNetwork) = ImageNetworks.Create(config, data);
        if (TrainedNetwork is UNet { Config.ClassCount: > 0 } unet)
        {
            // A class-conditional UNet: the loss runs through a labelled view (with label dropout).
            _labeledView = new LabeledDenoiser(unet);
            TrainingModel = new GaussianPosteriorModel(GaussianProcess, _labeledView, config.Prediction, config.ClipSample);
        }
        else TrainingModel = new GaussianPosteriorModel(GaussianProcess, TrainedNetwork, config.Prediction, config.ClipSample);
        Model = new GaussianPosteriorModel(GaussianProcess, SamplingNetwork, config.Prediction, config.ClipSample);
    }

    /// <inheritdoc />
    public override string Family => "gaussian";

    /// <summary>The Gaussian forward process.</summary>
    public GaussianProcess GaussianProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => GaussianProcess;

    /// <summary>The trained denoiser.</summary>
    public nn.Module<Tensor, Tensor, Tensor> TrainedNetwork { get; }

    /// <summary>The EMA denoiser used for sampling.</summary>
    public nn.Module<Tensor, Tensor, Tensor> SamplingNetwork { get; }

    /// <inheritdoc />
    public override nn.Module Network => TrainedNetwork;

    /// <inheritdoc />
    public override nn.Module EmaNetwork => SamplingNetwork;

    /// <summary>The posterior model over the trained network (used by the loss).</summary>
    public GaussianPosteriorModel TrainingModel { get; }

    /// <summary>The posterior model over the EMA weights (used for sampling and evaluation).</summary>
    public GaussianPosteriorModel Model { get; }

    /// <inheritdoc />
    public override IReadOnlyList<string> SamplerNames => GaussianSamplerSpec.Names;

    /// <inheritdoc />
    public override string DefaultSampler => "ddim";

    /// <inheritdoc />
    public override int? SamplingBatch => _opened.Kind == DataKind.Images ? 500 : null;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) =>
        _labeledView is null
            ? DenoisingObjective.Loss(GaussianProcess, TrainingModel, x0, generator)
            : ClassConditioning.Loss(_labeledView, x0, labels, generator, _config.LabelDropout, (x, g) => DenoisingObjective.Loss(GaussianProcess, TrainingModel, x, g));

    /// <summary>The Gaussian sampler spec of a family-neutral request.</summary>
    public GaussianSamplerSpec Spec(SamplerRequest request)
    {
        SamplerName(request);
        return ToSpec(request, DefaultSteps);
    }

    /// <summary>The Gaussian sampler spec of a family-neutral request (for oracles, which have no run).</summary>
    public static GaussianSamplerSpec ToSpec(SamplerRequest request, int defaultSteps = 50)
    {
        var kind = GaussianSamplerSpec.ParseKind(request.Sampler ?? "ddim");
        if (request.Order is not null) throw new UdmException("--order applies to the mask and edit families, not to Gaussian models.");
        return new GaussianSamplerSpec(kind, request.Steps ?? defaultSteps, request.Eta, request.Grid, request.Analytic);
    }

    /// <summary>
    /// The Γ table for Analytic-DPM, covering <paramref name="levels"/>: estimated by Monte Carlo
    /// over the training data (with the EMA model) where missing, and stored in the run folder.
    /// </summary>
    /// <remarks>
    /// <paramref name="samplesPerLevel"/> defaults to 2000 for low-dimensional data and 200 for
    /// images, where each draw already averages ‖ε̂‖² over hundreds of dimensions.
    /// </remarks>
    public GammaTable Gamma(IEnumerable<int> levels, int? samplesPerLevel = null) => _gamma.Get(Model, GaussianProcess, levels, samplesPerLevel);

    /// <summary>Draws <paramref name="count"/> samples with the given sampler (unconditionally).</summary>
    public Tensor Sample(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null) =>
        Sample(spec, Model, count, seed, options);

    private Tensor Sample(GaussianSamplerSpec spec, GaussianPosteriorModel model, int count, long seed, SamplingOptions? options)
    {
        var gamma = spec.NeedsGamma ? Gamma(GaussianSampling.Grid(spec, GaussianProcess.Steps)) : null;
        return GaussianSampling.Sample(GaussianProcess, model, gamma, spec, count, _data.SampleShape, new Generator((ulong)seed, _device), _device, options);
    }

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        if (SamplingNetwork is not UNet { Config.ClassCount: > 0 } unet)
        {
            if (request.Guidance != 0 || request.Label is not null)
                throw new UdmException("--guidance and --label need a class-conditional image model (unet.classCount > 0).");
            return Sample(spec, Model, count, seed, options);
        }
        // Class-conditional: the given class, or the classes in turn; guided by the scale w.
        int classes = unet.Config.ClassCount;
        if (request.Label is { } label && (label < 0 || label >= classes))
            throw new UdmException($"--label {label} is out of range; this model has classes 0..{classes - 1}.");
        using var labels = request.Label is { } fixedLabel
            ? torch.full(count, fixedLabel, dtype: ScalarType.Int64, device: _device)
            : torch.arange(count, dtype: ScalarType.Int64, device: _device).remainder(classes);
        using var guided = new GuidedDenoiser(unet, labels, request.Guidance);
        var model = new GaussianPosteriorModel(GaussianProcess, guided, _config.Prediction, _config.ClipSample);
        return Sample(spec, model, count, seed, options);
    }

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        if (_opened.Kind != DataKind.Images) return Evaluation.Result(samples, _data, spec, seed, seconds);
        var judge = ImageJudge.For((ImageDataset)_opened.Train, (ImageDataset)_opened.Test);
        return new EvaluationResult(_data.Name, Family, Evaluation.DisplayName(spec), spec.Steps, count, seconds, judge.Generation(samples));
    }

    /// <summary>The negative ELBO in bits/dim of held-out data along the request's grid (ddpm and analytic-ddpm).</summary>
    /// <remarks>Images (8-bit, scaled to [−1, 1]) use the 256-bin discretized decoder and held-out images, as the papers report.</remarks>
    public double NllBitsPerDim(SamplerRequest request, int count, long seed)
    {
        if (_opened.Kind != DataKind.Images)
            return Evaluation.NllBitsPerDim(GaussianProcess, Model, grid => Gamma(grid), Spec(request), _data, count, seed);
        using var heldOut = ((ImageDataset)_opened.Test).Take(count);
        return Evaluation.NllBitsPerDim(GaussianProcess, Model, grid => Gamma(grid), Spec(request), heldOut, count, seed, ElboDecoder.Discretized);
    }

    /// <inheritdoc />
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        _opened.Kind == DataKind.Images
            ? options with { Fixed = LoadInpainting(imagePath, maskPath, count, _data.SampleShape, _device) }
            : base.Inpaint(imagePath, maskPath, count, options);

    /// <inheritdoc />
    public override void WriteSamples(string path, Tensor samples, string title)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (_opened.Kind == DataKind.Images)
        {
            if (extension != ".png") throw new UdmException($"--out {path}: image samples are written as a .png grid.");
            ImageGrid.Save(path, samples);
            return;
        }
        if (extension == ".csv")
        {
            var rows = samples.to(ScalarType.Float64).data<double>().ToArray().Chunk((int)samples.shape[1])
                .Select(row => string.Join(',', row.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))));
            AtomicFile.WriteAllText(path, string.Join('\n', rows) + "\n");
        }
        else if (extension == ".png") Plots.ScatterGrid(path, [(title, samples)]);
        else throw new UdmException($"--out {path}: use a .png or .csv file name.");
    }

    internal override void WeightsChanged(string? runDirectory, long step) => _gamma.Reset(runDirectory, step);
}
