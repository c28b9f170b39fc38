using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Latent;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// The encoding model: Gaussian diffusion in a learned latent space, x_t = ᾱ_t Enc(x_0) + β̄_t ε,
/// with Enc and the decoder q(x_0 | x_t) trained together on −log q(x_0 | x_t). Samplers are the
/// hot family's. One subclass per modality: <see cref="ImageEncodingFamilyModel"/> (convolutional
/// encoder, UNet decoder, Gaussian) and <see cref="TextEncodingFamilyModel"/> (token embedding,
/// Transformer decoder, categorical).
/// </summary>
public abstract class EncodingFamilyModel : FamilyModel
{
    private PriorStatistics? _prior;

    private protected EncodingFamilyModel(ExperimentConfig config, Modality modality, Func<NoiseSchedule, EncoderDecoder> network) : base(modality)
    {
        var schedule = NoiseSchedule.Create(config.Schedule);
        Networks = network(schedule);
        EncodingProcess = new EncodingProcess(schedule, Networks.Encoder, modality.Data.Train.SampleShape);
    }

    /// <inheritdoc />
    public override string Family => "encoding";

    /// <summary>The forward process over the network's encoder.</summary>
    public EncodingProcess EncodingProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => EncodingProcess;

    /// <summary>The encoder and decoder, trained together.</summary>
    public EncoderDecoder Networks { get; }

    /// <inheritdoc />
    public override nn.Module Network => Networks;

    /// <summary>The hot family's samplers that the modality's decoder supports.</summary>
    private protected abstract SamplerRegistry<GaussianSamplerEntry> Registry { get; }

    /// <inheritdoc />
    public override ISamplerRegistry Samplers => Registry;

    /// <summary>The Gaussian sampler spec of a request; the encoding family is unconditional and always generates from N(0, I).</summary>
    public GaussianSamplerSpec Spec(SamplerRequest request)
    {
        if (request.Guidance is not null || request.Label is not null)
            throw new UdmException("guidance and class labels need a class-conditional gaussian model; the encoding family is unconditional.") { Subject = request.Guidance is not null ? "guidance" : "label" };
        var entry = Registry.Resolve(request.Sampler, request.Given);
        var spec = GaussianFamilyModel.ToSpec(request with { Sampler = entry.Name }, DefaultSteps);
        // The latent has no pixel bins: Analytic-DPM's first-step clip is off unless asked for.
        return spec.NeedsGamma && spec.Analytic is null ? spec with { Analytic = new AnalyticOptions() } : spec;
    }

    /// <summary>
    /// The prior check on the training data: x_T = F_T(x_0, ε) against N(0, I) (mean, variance,
    /// KS on 32 random projections of 2,000 samples). Cached until the weights change.
    /// </summary>
    public PriorStatistics PriorCheck() =>
        _prior ??= LatentPriorCheck.Measure(EncodingProcess, Modality.Data.Train, samples: 2000, projections: 32, seed: 12345, Device);

    /// <summary>Samples from N(0, I) along the spec's grid with the modality's decoder.</summary>
    protected abstract Tensor Sample(GaussianSamplerSpec spec, int[] grid, long[] shape, Generator generator, SamplingOptions? options);

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var grid = GaussianSampling.Grid(spec, EncodingProcess.Levels);
        return Sample(spec, grid, [count, .. EncodingProcess.LatentShape], new Generator((ulong)seed, Device), options);
    }

    /// <inheritdoc />
    /// <remarks>The modality's metrics, plus the prior check (prior_mean, prior_variance, prior_ks, prior_ks_critical).</remarks>
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        var metrics = Modality.Judge(samples, seed);
        var prior = PriorCheck();
        metrics["prior_mean"] = prior.Mean;
        metrics["prior_variance"] = prior.Variance;
        metrics["prior_ks"] = prior.MaxKs;
        metrics["prior_ks_critical"] = prior.KsCritical;
        return new EvaluationResult(Modality.Data.Train.Name, Family, spec.DisplayName, spec.Steps, count, seconds, metrics);
    }

    /// <inheritdoc />
    public override Tensor SampleWithTemplate(SamplerRequest request, int count, long seed, string template, SamplingOptions options) =>
        throw new UdmException("fixed characters need the mask or edit family: the encoding family's x_t is a latent, where characters cannot be held fixed.") { Subject = "fix" };

    /// <inheritdoc />
    public override SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        throw new UdmException("inpainting needs a gaussian image model: the encoding family's x_t is a latent, where pixels cannot be held fixed.") { Subject = "inpaint" };

    /// <inheritdoc />
    /// <remarks>Not implemented: its bound (the decoder's likelihood at t = 1 plus the latent KL terms) is future work.</remarks>
    public override (string Metric, double Value)? HeldOutBound(SamplerRequest request, int count, long seed) =>
        throw new UdmException("a likelihood bound is not available for the encoding family: its bound (the decoder's likelihood at t = 1 plus the latent KL terms) is not implemented; compare samples with FID or perplexity.") { Subject = "nll" };

    internal override void WeightsChanged(string? runDirectory, long step) => _prior = null;
}

/// <summary>
/// The encoding model on images: a convolutional encoder and a UNet decoder whose mean is x̂_0
/// (MSE); every Gaussian sampler, Analytic-DPM with Γ_t estimated in the latent.
/// </summary>
public sealed class ImageEncodingFamilyModel : EncodingFamilyModel
{
    private readonly GammaStore _gamma;

    internal ImageEncodingFamilyModel(ExperimentConfig config, ImageModality images) : base(config, images, _ => Create(config, images))
    {
        _gamma = new GammaStore(images.Data.Train, images.Device);
        Model = new GaussianDecoderModel(EncodingProcess, Networks, config.ClipSample);
    }

    private static EncoderDecoder Create(ExperimentConfig config, ImageModality images)
    {
        var unet = images.UNetConfig(config);
        if (unet.ClassCount > 0) throw new UdmException("the encoding family is unconditional; set unet.classCount to 0.") { Subject = "unet.classCount" };
        var latent = config.Latent ?? new LatentConfig();
        return new EncoderDecoder(new ConvEncoder((int)images.Train.SampleShape[0], latent.EncoderWidth, latent.EncoderLayers, latent.Normalize), new UNet(unet));
    }

    /// <summary>The Gaussian decoder q(x_0 | x_t).</summary>
    public GaussianDecoderModel Model { get; }

    /// <inheritdoc />
    private protected override SamplerRegistry<GaussianSamplerEntry> Registry => GaussianSamplers.Registry;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => DenoisingObjective.Loss(EncodingProcess, Model, x0, generator);

    /// <summary>Γ for Analytic-DPM in the latent space, covering <paramref name="levels"/> (estimated where missing, stored in the run folder).</summary>
    public GammaTable Gamma(IEnumerable<int> levels, int? samplesPerLevel = null) => _gamma.Get(Model, EncodingProcess, levels, samplesPerLevel);

    /// <inheritdoc />
    protected override Tensor Sample(GaussianSamplerSpec spec, int[] grid, long[] shape, Generator generator, SamplingOptions? options)
    {
        var gamma = spec.NeedsGamma ? Gamma(grid) : null;
        var kernel = GaussianSampling.Kernel(spec, EncodingProcess.Schedule, gamma);
        return new Sampler<GaussianPosterior>(EncodingProcess, Model, kernel).Sample(shape, grid, Device, generator, options);
    }

    internal override void WeightsChanged(string? runDirectory, long step)
    {
        base.WeightsChanged(runDirectory, step);
        _gamma.Reset(runDirectory, step);
    }
}

/// <summary>
/// The encoding model on text: a token embedding and a Transformer decoder that draws x̂_0 from
/// per-position categoricals (cross-entropy); the samplers that need only a draw (ddpm, ddim).
/// </summary>
public sealed class TextEncodingFamilyModel : EncodingFamilyModel
{
    /// <summary>The samplers of the encoding family on text: those that need only a draw of x̂_0.</summary>
    internal static SamplerRegistry<GaussianSamplerEntry> DrawOnly { get; } = GaussianSamplers.DrawOnly("encoding (text)");

    internal TextEncodingFamilyModel(ExperimentConfig config, TextModality text) : base(config, text, schedule => Create(config, text, schedule))
    {
        // [UNK] and [MASK] never occur in the data, nor [PAD] in unpadded sets: never predict them.
        long[] specials = text.Train.UsesPadding ? [Tokens.Vocabulary.UnknownId, Tokens.Vocabulary.MaskId]
            : [Tokens.Vocabulary.UnknownId, Tokens.Vocabulary.MaskId, Tokens.Vocabulary.PadId];
        Model = new CategoricalDecoderModel(Networks, specials);
    }

    private static EncoderDecoder Create(ExperimentConfig config, TextModality text, NoiseSchedule schedule)
    {
        var latent = config.Latent ?? new LatentConfig();
        if (latent.Width < 1) throw new UdmException($"latent.width must be at least 1, got {latent.Width}.") { Subject = "latent.width" };
        int vocab = text.Train.Vocabulary.Count;
        return new EncoderDecoder(new TokenEmbeddingEncoder(vocab, latent.Width, latent.Normalize),
            new TextTransformer(vocab, text.Train.Length, config.Transformer ?? new TransformerConfig(), schedule.Levels, latentWidth: latent.Width));
    }

    /// <summary>The categorical decoder q(x_0 | x_t).</summary>
    public CategoricalDecoderModel Model { get; }

    /// <inheritdoc />
    private protected override SamplerRegistry<GaussianSamplerEntry> Registry => DrawOnly;

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => DenoisingObjective.Loss(EncodingProcess, Model, x0, generator);

    /// <inheritdoc />
    /// <remarks>The decoder draws x̂_0, so the kernels are the core's own (no Gaussian mean to analyse).</remarks>
    protected override Tensor Sample(GaussianSamplerSpec spec, int[] grid, long[] shape, Generator generator, SamplingOptions? options) =>
        new Sampler<TokenDecoderPosterior>(EncodingProcess, Model, spec.Entry.DrawKernel!(EncodingProcess.Schedule, spec.Eta)).Sample(shape, grid, Device, generator, options);
}
