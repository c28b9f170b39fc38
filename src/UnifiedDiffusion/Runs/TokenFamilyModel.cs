using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Tokens;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// The token families on fixed-length text: the mask model (t positions replaced by [MASK]) and
/// the edit model (t positions replaced by different tokens), with a bidirectional Transformer
/// posterior. Everything in which they differ is the process's (<see cref="TokenProcess"/>):
/// samplers are the process's improved kernel (mask: fill, edit: repair; alias improved),
/// recorrupt (the baseline) and data (held-out sequences); <see cref="SamplerRequest.Order"/>
/// picks random or confident positions.
/// </summary>
public sealed class TokenFamilyModel : FamilyModel
{
    private readonly TextModality _text;

    internal TokenFamilyModel(ExperimentConfig config, TextModality text) : base(text)
    {
        _text = text;
        var train = text.Train;
        int length = train.Length, vocab = train.Vocabulary.Count;
        TokenProcess = config.Family.Trim().ToLowerInvariant() == "mask" ? new MaskProcess(length) : new EditProcess(length, vocab);
        var transformer = config.Transformer ?? new TransformerConfig();
        Transformer = new TextTransformer(vocab, length, transformer, length);
        Model = new TokenPosteriorModel(Transformer, TokenProcess, vocab, train.UsesPadding, (config.Text ?? new TextConfig()).Weighting);
    }

    /// <inheritdoc />
    public override string Family => TokenProcess.Family;

    /// <summary>The mask or edit process.</summary>
    public TokenProcess TokenProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => TokenProcess;

    /// <summary>The vocabulary (built from the training split).</summary>
    public Vocabulary Vocabulary => _text.Train.Vocabulary;

    /// <summary>The sequence length l.</summary>
    public int Length => _text.Train.Length;

    /// <summary>The Transformer.</summary>
    public TextTransformer Transformer { get; }

    /// <inheritdoc />
    public override nn.Module Network => Transformer;

    /// <summary>The posterior model over the network.</summary>
    public TokenPosteriorModel Model { get; }

    /// <inheritdoc />
    public override ISamplerRegistry Samplers => TokenProcess.Samplers;

    /// <inheritdoc />
    public override int DefaultSteps => Length;

    /// <summary>
    /// Network calls made and saved (by reusing the last output) in the last sampling run, and the
    /// share of sequence rows whose evaluation was saved (uniform batches run one row).
    /// </summary>
    public (int Evaluations, int Saved, double RowsSavedShare) LastEvaluations { get; private set; }

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => DenoisingObjective.Loss(TokenProcess, Model, x0, generator);

    /// <summary>The kernel of a request, its options checked: the process's improved kernel or re-corrupt; null for data.</summary>
    public IReverseKernel<CategoricalPosterior>? Kernel(SamplerRequest request)
    {
        var entry = TokenProcess.Samplers.Resolve(request.Sampler, request.Given);
        if (request.Order is not (null or "random" or "confident"))
            throw new UdmException($"unknown order \"{request.Order}\": use random or confident.") { Subject = "order" };
        return entry.Kernel?.Invoke(TokenProcess, request.Order == "confident");
    }

    /// <summary>The fixed part and grid of a template (given characters at given positions).</summary>
    public (FixedPart Fixed, int[] Grid) Constrain(string template, int count, int steps)
    {
        var parsed = TokenTemplate.Parse(template, Vocabulary, Length);
        return (parsed.ToFixedPart(count, Device), parsed.Grid(steps));
    }

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null) =>
        Sample(request, count, seed, template: null, options);

    /// <inheritdoc />
    public override Tensor SampleWithTemplate(SamplerRequest request, int count, long seed, string template, SamplingOptions options) =>
        Sample(request, count, seed, template, options);

    /// <summary>Draws <paramref name="count"/> sequences, optionally with a template's characters fixed.</summary>
    public Tensor Sample(SamplerRequest request, int count, long seed, string? template, SamplingOptions? options = null)
    {
        var kernel = Kernel(request);
        if (kernel is null)
        {
            LastEvaluations = (0, 0, 0);
            return _text.ReferenceSamples(count, seed);
        }
        int steps = Math.Min(StepCount(request), Length);
        int[] grid;
        options ??= new SamplingOptions();
        if (template is not null)
        {
            var (fixedPart, templateGrid) = Constrain(template, count, steps);
            grid = templateGrid;
            options = options with { Fixed = fixedPart };
        }
        else grid = TimeGrid.Parse(request.Grid == "leading" ? "trailing" : request.Grid, Length, steps);
        // Known tokens are certain: otherwise the repair kernel could spend its repairs on them.
        IPosteriorModel<CategoricalPosterior> model = options.Fixed is { } known ? new ConstrainedPosteriorModel(Model, known) : Model;
        using var cached = new CachingPosteriorModel(model, levelFromInput: TokenProcess.LevelFollowsFromState);
        var sampler = new Sampler<CategoricalPosterior>(TokenProcess, cached, kernel);
        var result = sampler.Sample([count, Length], grid, Device, new Generator((ulong)seed, Device), options);
        long rows = cached.RowEvaluations + cached.RowsSaved;
        LastEvaluations = (cached.Evaluations, cached.Saved, rows == 0 ? 0 : cached.RowsSaved / (double)rows);
        return result;
    }

    /// <summary>Decodes sequences to strings ([PAD] removed).</summary>
    public IReadOnlyList<string> Decode(Tensor sequences) => _text.Decode(sequences);

    /// <summary>A text formatted for reading: poems split into their lines.</summary>
    public string Format(string text) => _text.Format(text);

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var entry = TokenProcess.Samplers.Resolve(request.Sampler, request.Given);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        var metrics = _text.Judge(samples, seed);
        metrics["network_evaluations"] = LastEvaluations.Evaluations;
        metrics["evaluations_saved"] = LastEvaluations.Saved;
        metrics["rows_saved_share"] = LastEvaluations.RowsSavedShare;
        metrics["seconds_per_100"] = seconds * 100 / samples.shape[0];
        string name = entry.Name + (request.Order == "confident" ? " confident" : "");
        int steps = entry.Kernel is null ? 0 : Math.Min(StepCount(request), Length);
        return new EvaluationResult(_text.Train.Name, Family, name, steps, (int)samples.shape[0], seconds, metrics);
    }

    /// <summary>
    /// The negative ELBO of held-out sequences in bits per token (mask: the exact sum over levels;
    /// edit: the bound through the repair kernel), with one Monte Carlo draw per level.
    /// </summary>
    public double HeldOutBitsPerToken(int count, long seed)
    {
        using var scope = torch.NewDisposeScope();
        return TokenProcess.HeldOutBound(Model, _text.HeldOutSequences(count), (ulong)seed).BitsPerToken;
    }

    /// <inheritdoc />
    /// <remarks>The bound does not depend on the sampler; at most 2,000 held-out sequences are used.</remarks>
    public override (string Metric, double Value)? HeldOutBound(SamplerRequest request, int count, long seed) =>
        ("nelbo_bits_per_token", HeldOutBitsPerToken(Math.Min(count, 2000), seed));
}
