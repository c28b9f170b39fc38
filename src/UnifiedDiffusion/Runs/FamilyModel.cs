using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// A sampler request in family-neutral terms, as a user gives it: a sampler name, steps, a grid,
/// and the options that were given (null when not). The family resolves the name in its
/// <see cref="FamilyModel.Samplers"/> registry, and an option that sampler does not take is a
/// one-line error rather than silently ignored.
/// </summary>
/// <param name="Sampler">The sampler's name (e.g. ddim, tacos, fill); null takes the family's default.</param>
/// <param name="Steps">Reverse steps (network evaluations), or null for the family's default.</param>
/// <param name="Grid">Time grid: leading, trailing, quadratic, or explicit levels such as "999,500,0".</param>
public sealed record SamplerRequest(string? Sampler = null, int? Steps = null, string Grid = "leading")
{
    /// <summary>Gaussian DDIM η, or the cold interpolate sampler's σ̃ (0 = deterministic).</summary>
    public double? Eta { get; init; }

    /// <summary>Analytic-DPM's cap on the step onto the lowest level, in pixel bins of 2/255; 0 turns it off.</summary>
    public double? AnalyticClip { get; init; }

    /// <summary>Analytic-DPM's Γ estimator.</summary>
    public GammaEstimator? Gamma { get; init; }

    /// <summary>Token families: which positions a step fills or repairs first, "random" or "confident".</summary>
    public string? Order { get; init; }

    /// <summary>Classifier-free guidance scale w for class-conditional models (0 = plain conditional).</summary>
    public double? Guidance { get; init; }

    /// <summary>Class label for class-conditional models; null cycles through the classes.</summary>
    public int? Label { get; init; }

    /// <summary>Class-conditional models: sample the unconditional model ε(x, t, ∅) that label dropout trained, with no label and no guidance.</summary>
    public bool Unconditional { get; init; }

    /// <summary>Cold family: generate from the prior instead of restoring degraded held-out images.</summary>
    public bool Generate { get; init; }

    /// <summary>Cold generation: std of the noise added to prior draws, overriding the config's (0 = none).</summary>
    public double? PriorNoise { get; init; }

    /// <summary>The options this request gives.</summary>
    public SamplerOption Given =>
        (Eta is null ? 0 : SamplerOption.Eta) | (AnalyticClip is null ? 0 : SamplerOption.AnalyticClip)
        | (Gamma is null ? 0 : SamplerOption.Gamma) | (Order is null ? 0 : SamplerOption.Order)
        | (Guidance is null ? 0 : SamplerOption.Guidance) | (Label is null && !Unconditional ? 0 : SamplerOption.Label)
        | (Generate ? SamplerOption.Generate : 0) | (PriorNoise is null ? 0 : SamplerOption.PriorNoise);
}

/// <summary>The result of evaluating one sampler: common facts plus the family's own metrics.</summary>
/// <param name="Data">The data set.</param>
/// <param name="Family">The model family.</param>
/// <param name="Sampler">The sampler's name.</param>
/// <param name="Steps">Reverse steps.</param>
/// <param name="Count">Number of samples.</param>
/// <param name="Seconds">Wall time of sampling.</param>
/// <param name="Metrics">Metric name (snake_case, as in --json) → value.</param>
public sealed record EvaluationResult(string Data, string Family, string Sampler, int Steps, int Count, double Seconds,
    IReadOnlyDictionary<string, double> Metrics);

/// <summary>
/// The family-specific half of a run: its forward process, its one network, loss, samplers and
/// held-out bound. What depends on the data (writing, metrics, the fixed part, batch sizes) is the
/// <see cref="Modality"/>'s; <see cref="Experiment"/> owns the rest (config, training, checkpoints,
/// and the EMA shadow, which the trainer keeps and swaps into <see cref="Network"/> for sampling).
/// </summary>
public abstract class FamilyModel
{
    private protected FamilyModel(Modality modality) => Modality = modality;

    /// <summary>The data's half: how samples are written and judged.</summary>
    public Modality Modality { get; }

    /// <summary>The device tensors live on.</summary>
    public Device Device => Modality.Device;

    /// <summary>The family's name in configs.</summary>
    public abstract string Family { get; }

    /// <summary>The forward process.</summary>
    public abstract IForwardProcess Process { get; }

    /// <summary>The family's one network: trained by the trainer, holding the EMA weights once trained or loaded.</summary>
    public abstract nn.Module Network { get; }

    /// <summary>The family's samplers by name.</summary>
    public abstract ISamplerRegistry Samplers { get; }

    /// <summary>The sampler used when none is named.</summary>
    public string DefaultSampler => Samplers.DefaultEntry.Name;

    /// <summary>Reverse steps when none are given.</summary>
    public virtual int DefaultSteps => Math.Min(50, Process.Levels);

    /// <summary>The training loss of a batch (labels are null for unlabelled data).</summary>
    public abstract Tensor Loss(Tensor x0, Tensor? labels, Generator generator);

    /// <summary>Draws <paramref name="count"/> samples.</summary>
    public abstract Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null);

    /// <summary>Samples and measures the result with the modality's metrics (and the family's own).</summary>
    public abstract EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null);

    /// <summary>
    /// The reference row of an evaluation: <paramref name="count"/> real samples
    /// (<see cref="Modality.ReferenceSamples"/>) through the same metrics, as sampler <c>data</c>,
    /// so that a reader sees how far samples are from real data at the same n.
    /// </summary>
    public EvaluationResult EvaluateReference(int count, long seed)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var samples = Modality.ReferenceSamples(count, seed);
        var metrics = Modality.Judge(samples, seed);
        return new EvaluationResult(Modality.Data.Train.Name, Family, ReferenceSampler, 0, (int)samples.shape[0], clock.Elapsed.TotalSeconds, metrics);
    }

    /// <summary>The sampler name of <see cref="EvaluateReference"/>'s row, accepted by <c>udm eval</c> in every family.</summary>
    public const string ReferenceSampler = "data";

    /// <summary>
    /// Samples and writes them to <paramref name="path"/> for a person to look at, as <c>udm sample</c>
    /// does; a <paramref name="template"/> holds characters fixed (text families). Returns what was written.
    /// </summary>
    public virtual string WriteSamples(string path, SamplerRequest request, int count, long seed, SamplingOptions options, string title, string? template = null)
    {
        using var samples = template is null ? Sample(request, count, seed, options) : SampleWithTemplate(request, count, seed, template, options);
        Modality.Write(path, samples, title);
        return "samples";
    }

    /// <summary>
    /// Sampling options that keep the known pixels of <paramref name="imagePath"/> (where the mask
    /// PNG is white) and fill the rest: inpainting through the core's fixed part. Families whose
    /// x_t holds no pixels give a one-line error.
    /// </summary>
    public virtual SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        throw new UdmException($"the {Family} family cannot inpaint images; use a gaussian image model (or cold generation).") { Subject = "inpaint" };

    /// <summary>Samples with the characters of a template fixed (given first line, acrostic); text families only.</summary>
    public virtual Tensor SampleWithTemplate(SamplerRequest request, int count, long seed, string template, SamplingOptions options) =>
        throw new UdmException($"fixed characters need the mask or edit family; the {Family} family does not generate text that way.") { Subject = "fix" };

    /// <summary>
    /// A bound on the negative log-likelihood of <paramref name="count"/> held-out samples: its
    /// metric name and value; null when the request's sampler has no likelihood (a deterministic one).
    /// Families without a bound give a one-line error.
    /// </summary>
    public virtual (string Metric, double Value)? HeldOutBound(SamplerRequest request, int count, long seed) =>
        throw new UdmException($"a held-out likelihood bound is not available for the {Family} family; compare samples with the evaluation metrics.") { Subject = "nll" };

    /// <summary>Called when the weights changed (after training or loading): drop caches derived from them.</summary>
    internal virtual void WeightsChanged(string? runDirectory, long step) { }

    /// <summary>
    /// Files of the run folder, besides the weights, that sampling from the prior needs and that
    /// would otherwise be fitted to the data (the cold family's colour prior). Exports carry them,
    /// so that a shipped model samples without its data set.
    /// </summary>
    internal virtual IReadOnlyList<string> SamplingFiles => [];

    /// <summary>Writes the <see cref="SamplingFiles"/> the run folder lacks, fitting them to the data.</summary>
    internal virtual void WriteSamplingFiles() { }

    /// <summary>The request's step count.</summary>
    protected int StepCount(SamplerRequest request) => request.Steps ?? DefaultSteps;
}
