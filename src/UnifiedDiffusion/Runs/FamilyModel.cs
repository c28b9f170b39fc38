using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// A sampler request in family-neutral terms, as the CLI takes it. Each family checks the names
/// and options it understands and rejects the rest with a one-line error.
/// </summary>
/// <param name="Sampler">The sampler's name (e.g. ddim, improved, naive, recorrupt); null takes the family's default.</param>
/// <param name="Steps">Reverse steps (network evaluations), or null for the family's default.</param>
/// <param name="Grid">Time grid: leading, trailing, quadratic, or explicit levels such as "999,500,0".</param>
public sealed record SamplerRequest(string? Sampler = null, int? Steps = null, string Grid = "leading")
{
    /// <summary>Gaussian DDIM η, or the cold family's interpolation σ̃ (0 = deterministic).</summary>
    public double Eta { get; init; }

    /// <summary>Analytic-DPM settings (Gaussian analytic samplers only); null takes the defaults.</summary>
    public Gaussian.AnalyticOptions? Analytic { get; init; }

    /// <summary>Token families: which positions a step fills or repairs, "random" or "confident".</summary>
    public string? Order { get; init; }

    /// <summary>Classifier-free guidance scale w for class-conditional models (0 = plain conditional).</summary>
    public double Guidance { get; init; }

    /// <summary>Class label for class-conditional models; null cycles through the classes.</summary>
    public int? Label { get; init; }

    /// <summary>Cold family: generate from the prior instead of restoring degraded held-out images.</summary>
    public bool Generate { get; init; }

    /// <summary>Cold generation: std of the noise added to prior draws, overriding the config's (0 = none).</summary>
    public double? PriorNoise { get; init; }
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
/// The family-specific half of a run: its forward process, networks, loss, samplers, output and
/// metrics. <see cref="Experiment"/> owns everything else (config, training, checkpoints).
/// </summary>
public abstract class FamilyModel
{
    /// <summary>The family's name in configs.</summary>
    public abstract string Family { get; }

    /// <summary>The forward process.</summary>
    public abstract IForwardProcess Process { get; }

    /// <summary>The network being trained.</summary>
    public abstract nn.Module Network { get; }

    /// <summary>The EMA copy of the network, used for sampling.</summary>
    public abstract nn.Module EmaNetwork { get; }

    /// <summary>The sampler names this family accepts.</summary>
    public abstract IReadOnlyList<string> SamplerNames { get; }

    /// <summary>The sampler used when none is named.</summary>
    public abstract string DefaultSampler { get; }

    /// <summary>Reverse steps when none are given.</summary>
    public virtual int DefaultSteps => Math.Min(50, Process.Steps);

    /// <summary>
    /// The largest batch sampled at once by the CLI (<see cref="SamplingOptions.MaxBatch"/>): image
    /// networks would otherwise hold activations of thousands of images at once. Null: no limit.
    /// </summary>
    public virtual int? SamplingBatch => null;

    /// <summary>The training loss of a batch (labels are null for unlabelled data).</summary>
    public abstract Tensor Loss(Tensor x0, Tensor? labels, Generator generator);

    /// <summary>Draws <paramref name="count"/> samples.</summary>
    public abstract Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null);

    /// <summary>Samples and measures the result with the family's metrics.</summary>
    public abstract EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null);

    /// <summary>Writes samples for a person to look at (a PNG, or a text file); returns what was written.</summary>
    public abstract void WriteSamples(string path, Tensor samples, string title);

    /// <summary>The default output file extension of <see cref="WriteSamples"/>.</summary>
    public virtual string SampleExtension => ".png";

    /// <summary>
    /// Sampling options that keep the known pixels of <paramref name="imagePath"/> (where the mask
    /// PNG is white) and fill the rest: inpainting through the core's fixed part. Families that
    /// cannot inpaint give a one-line error.
    /// </summary>
    public virtual SamplingOptions Inpaint(string imagePath, string maskPath, int count, SamplingOptions options) =>
        throw new UdmException($"the {Family} family cannot inpaint images; use a gaussian image model (or cold generation).");

    /// <summary>
    /// Sampling options that keep the characters of a template fixed (given first line, acrostic).
    /// Families that do not generate text give a one-line error.
    /// </summary>
    public virtual Tensor SampleWithTemplate(SamplerRequest request, int count, long seed, string template, SamplingOptions options) =>
        throw new UdmException($"--fix fixes characters of text; the {Family} family on {Process.GetType().Name} does not generate text (use --inpaint for images).");

    /// <summary>Builds the fixed part of an inpainting request: the image repeated, the mask broadcast over channels.</summary>
    protected static FixedPart LoadInpainting(string imagePath, string maskPath, int count, long[] sampleShape, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var image = Output.ImageGrid.Load(imagePath, (int)sampleShape[0]);
        if (image.shape[2] != sampleShape[1] || image.shape[3] != sampleShape[2])
            throw new UdmException($"--inpaint {imagePath} is {image.shape[3]}×{image.shape[2]} pixels; this model makes {sampleShape[2]}×{sampleShape[1]} images.");
        var mask = Output.ImageGrid.LoadMask(maskPath, (int)sampleShape[1], (int)sampleShape[2]);
        var known = image.to(device).expand(count, -1, -1, -1).contiguous();
        var keep = mask.to(device).expand(count, sampleShape[0], -1, -1).contiguous();
        return new FixedPart(known.MoveToOuterDisposeScope(), keep.MoveToOuterDisposeScope());
    }

    /// <summary>Called when the weights changed (after training or loading): drop caches derived from them.</summary>
    internal virtual void WeightsChanged(string? runDirectory, long step) { }

    /// <summary>The request's sampler name, checked against <see cref="SamplerNames"/>.</summary>
    protected string SamplerName(SamplerRequest request)
    {
        string name = (request.Sampler ?? DefaultSampler).Trim().ToLowerInvariant();
        if (!SamplerNames.Contains(name))
            throw new UdmException($"unknown sampler \"{request.Sampler}\" for the {Family} family: use one of {string.Join(", ", SamplerNames)}.");
        return name;
    }

    /// <summary>The request's step count.</summary>
    protected int StepCount(SamplerRequest request) => request.Steps ?? DefaultSteps;
}
