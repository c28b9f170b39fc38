using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Hot (Gaussian) diffusion: DDPM, DDIM, DDIM-η and Analytic-DPM over the modality's denoiser (an
/// MLP for points, a UNet for images). A class-conditional UNet trains with label dropout and
/// samples with classifier-free guidance.
/// </summary>
public sealed class GaussianFamilyModel : FamilyModel
{
    private readonly ExperimentConfig _config;
    private readonly GammaStore _gamma;
    private readonly int _classes;

    internal GaussianFamilyModel(ExperimentConfig config, Modality modality) : base(modality)
    {
        _config = config;
        _gamma = new GammaStore(modality.Data.Train, modality.Device);
        GaussianProcess = new GaussianProcess(NoiseSchedule.Create(config.Schedule));
        Denoiser = modality.Denoiser(config);
        _classes = (Denoiser as IClassConditionalNetwork)?.ClassCount ?? 0;
        Model = new GaussianPosteriorModel(GaussianProcess, Denoiser, config.Prediction, config.ClipSample);
    }

    /// <inheritdoc />
    public override string Family => "gaussian";

    /// <summary>The Gaussian forward process.</summary>
    public GaussianProcess GaussianProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => GaussianProcess;

    /// <summary>The denoiser network (x_t, t) → ε, x_0 or v.</summary>
    public nn.Module<Tensor, Tensor, Tensor> Denoiser { get; }

    /// <inheritdoc />
    public override nn.Module Network => Denoiser;

    /// <summary>The posterior model over the network.</summary>
    public GaussianPosteriorModel Model { get; }

    /// <inheritdoc />
    public override ISamplerRegistry Samplers => GaussianSamplers.Registry;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator)
    {
        if (_classes == 0) return DenoisingObjective.Loss(GaussianProcess, Model, x0, generator);
        // Label dropout trains the unconditional ε(x, t, ∅) that guidance needs, in the same network.
        var kept = ClassConditioning.DropLabels(labels, _classes, _config.LabelDropout, generator);
        return DenoisingObjective.Loss(GaussianProcess, Model, x0, generator, kept is null ? null : new Conditioning(kept));
    }

    /// <summary>The Gaussian sampler spec of a request, its options checked against the sampler and the model.</summary>
    public GaussianSamplerSpec Spec(SamplerRequest request)
    {
        if (request.Unconditional && request.Guidance is not null)
            throw new UdmException("guidance mixes the conditional and unconditional predictions; --label none samples the unconditional model alone, so drop --guidance or give a label.") { Subject = "guidance" };
        if (_classes == 0 && (request.Guidance is not null || request.Label is not null))
            throw new UdmException("guidance and class labels need a class-conditional image model (unet.classCount > 0).")
            { Subject = request.Guidance is not null ? "guidance" : "label" };
        return ToSpec(request, DefaultSteps);
    }

    /// <summary>
    /// The Gaussian sampler spec of a family-neutral request (also for oracles, which have no run):
    /// the sampler from <see cref="GaussianSamplers.Registry"/>, its options checked.
    /// </summary>
    public static GaussianSamplerSpec ToSpec(SamplerRequest request, int defaultSteps = 50)
    {
        var entry = GaussianSamplers.Registry.Resolve(request.Sampler, request.Given);
        AnalyticOptions? analytic = null;
        if (request.AnalyticClip is not null || request.Gamma is not null)
        {
            double? clip = request.AnalyticClip ?? entry.DefaultClipPixels;
            if (clip < 0) throw new UdmException($"the analytic clip must be 0 (off) or positive pixel bins, got {clip}.") { Subject = "analyticClip" };
            analytic = new AnalyticOptions(ClipPixels: clip == 0 ? null : clip, Estimator: request.Gamma ?? new AnalyticOptions().Estimator);
        }
        return new GaussianSamplerSpec(entry.Name, request.Steps ?? defaultSteps, request.Eta ?? 0, request.Grid, analytic);
    }

    /// <summary>
    /// The Γ table for Analytic-DPM, covering <paramref name="levels"/>: estimated by Monte Carlo
    /// over the training data where missing, and stored in the run folder.
    /// </summary>
    /// <remarks>
    /// <paramref name="samplesPerLevel"/> defaults to 2000 for low-dimensional data and 200 for
    /// images, where each draw already averages ‖ε̂‖² over hundreds of dimensions.
    /// </remarks>
    public GammaTable Gamma(IEnumerable<int> levels, int? samplesPerLevel = null) => _gamma.Get(Model, GaussianProcess, levels, samplesPerLevel);

    /// <summary>Draws <paramref name="count"/> samples with the given sampler, unconditionally or with the options' conditioning.</summary>
    public Tensor Sample(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
    {
        var gamma = spec.NeedsGamma ? Gamma(GaussianSampling.Grid(spec, GaussianProcess.Levels)) : null;
        return GaussianSampling.Sample(GaussianProcess, Model, gamma, spec, count, Modality.Data.Train.SampleShape, new Generator((ulong)seed, Device), Device, options);
    }

    /// <inheritdoc />
    /// <remarks>A class-conditional model draws the given class, or the classes in turn, guided by the scale w.</remarks>
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        if (_classes == 0) return Sample(spec, count, seed, options);
        using var labels = Labels(request, count);
        var conditioning = new Conditioning(labels, request.Guidance ?? 0);
        return Sample(spec, count, seed, (options ?? new SamplingOptions()) with { Conditioning = conditioning });
    }

    /// <summary>
    /// The labels a class-conditional model samples with: the request's label, the classes in turn, or
    /// for <see cref="SamplerRequest.Unconditional"/> the "no label" index ∅ that label dropout trained.
    /// </summary>
    private Tensor Labels(SamplerRequest request, int count)
    {
        if (request.Label is { } label && (label < 0 || label >= _classes))
            throw new UdmException($"the class label {label} is out of range; this model has classes 0..{_classes - 1}.") { Subject = "label" };
        return request.Unconditional ? torch.full(count, ClassConditioning.NullLabel(_classes), dtype: ScalarType.Int64, device: Device)
            : request.Label is { } fixedLabel ? torch.full(count, fixedLabel, dtype: ScalarType.Int64, device: Device)
            : torch.arange(count, dtype: ScalarType.Int64, device: Device).remainder(_classes);
    }

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        var metrics = Modality.Judge(samples, seed);
        // How often the project's classifier names the class the samples were drawn for.
        if (_classes > 0 && !request.Unconditional && Modality is ImageModality images)
            using (var labels = Labels(request, count)) metrics["label_agreement"] = images.LabelAgreement(samples, labels);
        var grid = GaussianSampling.Grid(spec, GaussianProcess.Levels);
        if (GaussianSampling.GammaRelativeError(spec, spec.NeedsGamma ? Gamma(grid) : null, GaussianProcess.Levels) is { } gammaError)
            metrics["gamma_rel_error"] = gammaError;
        return new EvaluationResult(Modality.Data.Train.Name, Family, spec.DisplayName, spec.Steps, count, seconds, metrics);
    }

    /// <inheritdoc />
    /// <remarks>
    /// The negative ELBO in bits/dim along the request's grid (ddpm and analytic-ddpm). Images (8-bit,
    /// scaled to [−1, 1]) use the 256-bin discretized decoder and held-out images, as the papers report.
    /// </remarks>
    public override (string Metric, double Value)? HeldOutBound(SamplerRequest request, int count, long seed)
    {
        var spec = Spec(request);
        if (spec.Entry.Likelihood is null) return null;
        var data = Modality.HeldOutData(count);
        try
        {
            var decoder = Modality.EightBitLevels ? ElboDecoder.Discretized : ElboDecoder.Continuous;
            return ("nll_bits_per_dim", Evaluation.NllBitsPerDim(GaussianProcess, Model, grid => Gamma(grid), spec, data, count, seed, decoder));
        }
        finally
        {
            (data as IDisposable)?.Dispose();
        }
    }

    /// <inheritdoc />
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        options with { Fixed = Modality.Inpainting(imagePath, maskPath, count) };

    internal override void WeightsChanged(string? runDirectory, long step) => _gamma.Reset(runDirectory, step);
}
