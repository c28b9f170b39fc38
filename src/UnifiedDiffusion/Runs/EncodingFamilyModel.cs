using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Latent;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// The encoding model: Gaussian diffusion in a learned latent space, x_t = ᾱ_t Enc(x_0) + β̄_t ε,
/// with Enc and the decoder q(x_0 | x_t) trained together on −log q(x_0 | x_t). Images use a
/// convolutional encoder and a UNet decoder (Gaussian, MSE); text uses a token embedding and a
/// Transformer decoder (categorical, cross-entropy). Samplers are the hot family's: DDPM, DDIM,
/// DDIM-η, and Analytic-DPM for images.
/// </summary>
public sealed class EncodingFamilyModel : FamilyModel
{
    private static readonly string[] ImageSamplers = ["ddpm", "ddim", "analytic-ddpm", "analytic-ddim"];
    private static readonly string[] TextSamplers = ["ddpm", "ddim"];

    private readonly ExperimentConfig _config;
    private readonly OpenedData _opened;
    private readonly Device _device;
    private readonly GammaStore _gamma;
    private readonly TextJudge? _text;
    private readonly GaussianDecoderModel? _imageTraining, _imageModel;
    private readonly CategoricalDecoderModel? _textTraining, _textModel;
    private PriorStatistics? _prior;

    internal EncodingFamilyModel(ExperimentConfig config, OpenedData data, Device device)
    {
        _config = config;
        _opened = data;
        _device = device;
        _gamma = new GammaStore(data.Train, device);
        var latent = config.Latent ?? new LatentConfig();
        var schedule = NoiseSchedule.Create(config.Schedule);
        var sampleShape = data.Train.SampleShape;
        switch (data.Kind)
        {
            case DataKind.Images:
                var unet = ImageNetworks.UNetFor(config, data);
                if (unet.ClassCount > 0) throw new UdmException("the encoding family is unconditional; set unet.classCount to 0.");
                EncoderDecoder Image() => new(new ConvEncoder((int)sampleShape[0], latent.EncoderWidth, latent.EncoderLayers, latent.Normalize), new UNet(unet));
                (TrainedNetwork, SamplingNetwork) = (Image(), Image());
                break;
            case DataKind.Text:
                var train = (TokenDataset)data.Train;
                if (latent.Width < 1) throw new UdmException($"latent.width must be at least 1, got {latent.Width}.");
                var transformer = config.Transformer ?? new TransformerConfig();
                int vocab = train.Vocabulary.Count;
                EncoderDecoder Text() => new(new TokenEmbeddingEncoder(vocab, latent.Width, latent.Normalize),
                    new TextTransformer(vocab, train.Length, transformer, schedule.Steps, latentWidth: latent.Width));
                (TrainedNetwork, SamplingNetwork) = (Text(), Text());
                _text = new TextJudge(train);
                break;
            default:
                throw new UdmException($"the encoding family works on images or text, not on the toy set {data.Train.Name}; use mnist, digits, wujue, names or moby-dick.");
        }
        TrainingProcess = new EncodingProcess(schedule, TrainedNetwork.Encoder, sampleShape);
        EncodingProcess = new EncodingProcess(schedule, SamplingNetwork.Encoder, sampleShape);
        if (_text is null)
        {
            _imageTraining = new GaussianDecoderModel(TrainingProcess, TrainedNetwork, config.ClipSample);
            _imageModel = new GaussianDecoderModel(EncodingProcess, SamplingNetwork, config.ClipSample);
        }
        else
        {
            // [UNK] and [MASK] never occur in the data, nor [PAD] in unpadded sets: never predict them.
            var train = (TokenDataset)data.Train;
            long[] specials = train.UsesPadding ? [Tokens.Vocabulary.UnknownId, Tokens.Vocabulary.MaskId]
                : [Tokens.Vocabulary.UnknownId, Tokens.Vocabulary.MaskId, Tokens.Vocabulary.PadId];
            _textTraining = new CategoricalDecoderModel(TrainedNetwork, specials);
            _textModel = new CategoricalDecoderModel(SamplingNetwork, specials);
        }
    }

    /// <inheritdoc />
    public override string Family => "encoding";

    /// <summary>The forward process over the EMA encoder (sampling and evaluation).</summary>
    public EncodingProcess EncodingProcess { get; }

    /// <summary>The forward process over the trained encoder (the loss).</summary>
    public EncodingProcess TrainingProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => EncodingProcess;

    /// <summary>The trained encoder and decoder.</summary>
    public EncoderDecoder TrainedNetwork { get; }

    /// <summary>The EMA encoder and decoder used for sampling.</summary>
    public EncoderDecoder SamplingNetwork { get; }

    /// <inheritdoc />
    public override nn.Module Network => TrainedNetwork;

    /// <inheritdoc />
    public override nn.Module EmaNetwork => SamplingNetwork;

    /// <inheritdoc />
    public override IReadOnlyList<string> SamplerNames => _text is null ? ImageSamplers : TextSamplers;

    /// <inheritdoc />
    public override string DefaultSampler => _text is null ? "ddim" : "ddpm";

    /// <inheritdoc />
    public override string SampleExtension => _text is null ? ".png" : ".txt";

    /// <inheritdoc />
    public override int? SamplingBatch => _text is null ? 500 : null;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) =>
        _imageTraining is not null
            ? DenoisingObjective.Loss(TrainingProcess, _imageTraining, x0, generator)
            : DenoisingObjective.Loss(TrainingProcess, _textTraining!, x0, generator);

    /// <summary>The Gaussian sampler spec of a request. Analytic-DPM's first-step clip is off unless asked for: the latent has no pixel bins.</summary>
    public GaussianSamplerSpec Spec(SamplerRequest request)
    {
        SamplerName(request);
        if (request.Guidance != 0 || request.Label is not null) throw new UdmException("--guidance and --label need a class-conditional gaussian model; the encoding family is unconditional.");
        if (request.Generate || request.PriorNoise is not null) throw new UdmException("--generate and --prior-noise belong to the cold family; the encoding family always generates from N(0, I).");
        var spec = GaussianFamilyModel.ToSpec(request, DefaultSteps);
        return spec.NeedsGamma && spec.Analytic is null ? spec with { Analytic = new AnalyticOptions() } : spec;
    }

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var schedule = EncodingProcess.Schedule;
        var grid = GaussianSampling.Grid(spec, EncodingProcess.Steps);
        var generator = new Generator((ulong)seed, _device);
        long[] shape = [count, .. EncodingProcess.LatentShape];
        if (_imageModel is not null)
        {
            var gamma = spec.NeedsGamma ? Gamma(grid) : null;
            var kernel = GaussianSampling.Kernel(spec, schedule, gamma);
            return new Sampler<GaussianPosterior>(EncodingProcess, _imageModel, kernel).Sample(shape, grid, _device, generator, options);
        }
        // The token decoder draws x̂_0, so the kernels are the core's own (no Gaussian mean to analyse).
        IReverseKernel<IPosterior> textKernel = spec.Kind == GaussianSamplerKind.Ddpm ? GaussianKernels.Ddpm(schedule)
            : spec.Eta == 0 ? GaussianKernels.Ddim() : GaussianKernels.DdimEta(schedule, spec.Eta);
        return new Sampler<TokenDecoderPosterior>(EncodingProcess, _textModel!, textKernel).Sample(shape, grid, _device, generator, options);
    }

    /// <summary>Γ for Analytic-DPM in the latent space, covering <paramref name="levels"/> (estimated where missing, stored in the run folder).</summary>
    public GammaTable Gamma(IEnumerable<int> levels, int? samplesPerLevel = null) =>
        _gamma.Get(_imageModel ?? throw new UdmException("Analytic-DPM needs the Gaussian (image) decoder; text models sample with ddpm or ddim."),
            EncodingProcess, levels, samplesPerLevel);

    /// <summary>
    /// The prior check on the training data: x_T = F_T(x_0, ε) against N(0, I) (mean, variance,
    /// KS on 32 random projections of 2,000 samples). Cached until the weights change.
    /// </summary>
    public PriorStatistics PriorCheck() =>
        _prior ??= LatentPriorCheck.Measure(EncodingProcess, _opened.Train, samples: 2000, projections: 32, seed: 12345, _device);

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        Dictionary<string, double> metrics;
        if (_text is not null)
        {
            metrics = _text.Quality(_text.Decode(samples));
            metrics["seconds_per_100"] = seconds * 100 / count;
        }
        else metrics = ImageJudge.For((ImageDataset)_opened.Train, (ImageDataset)_opened.Test).Generation(samples);
        var prior = PriorCheck();
        metrics["prior_mean"] = prior.Mean;
        metrics["prior_variance"] = prior.Variance;
        metrics["prior_ks"] = prior.MaxKs;
        metrics["prior_ks_critical"] = prior.KsCritical;
        return new EvaluationResult(_opened.Train.Name, Family, Evaluation.DisplayName(spec), spec.Steps, count, seconds, metrics);
    }

    /// <inheritdoc />
    public override Tensor SampleWithTemplate(SamplerRequest request, int count, long seed, string template, SamplingOptions options) =>
        throw new UdmException("--fix needs the mask or edit family: the encoding family's x_t is a latent, where characters cannot be held fixed.");

    /// <inheritdoc />
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        throw new UdmException("--inpaint needs a gaussian image model: the encoding family's x_t is a latent, where pixels cannot be held fixed.");

    /// <inheritdoc />
    public override void WriteSamples(string path, Tensor samples, string title)
    {
        if (_text is not null)
        {
            _text.Write(path, samples, title);
            return;
        }
        if (!Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase)) throw new UdmException($"--out {path}: image samples are written as a .png grid.");
        ImageGrid.Save(path, samples);
    }

    internal override void WeightsChanged(string? runDirectory, long step)
    {
        _gamma.Reset(runDirectory, step);
        _prior = null;
    }
}
