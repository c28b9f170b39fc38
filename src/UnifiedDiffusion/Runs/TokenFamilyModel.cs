using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Metrics;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Tokens;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// The token families on fixed-length text: the mask model (t positions replaced by [MASK]) and
/// the edit model (t positions replaced by different tokens), with a bidirectional Transformer
/// posterior. Samplers: <c>recorrupt</c> (the baseline) and <c>improved</c> (Gibbs-like filling
/// for mask, weighted repair for edit); <see cref="SamplerRequest.Order"/> picks random or
/// confident positions.
/// </summary>
public sealed class TokenFamilyModel : FamilyModel
{
    /// <summary>The sampler names, plus <c>data</c>: held-out sequences, the reference row of a results table.</summary>
    public static IReadOnlyList<string> Names { get; } = ["improved", "recorrupt", "data"];

    private readonly TokenDataset _train;
    private readonly TokenDataset _test;
    private readonly Device _device;
    private readonly string _family;
    private readonly TextJudge _judge;

    internal TokenFamilyModel(ExperimentConfig config, OpenedData data, Device device)
    {
        if (data.Kind != DataKind.Text)
            throw new UdmException($"the {config.Family} family works on text; {data.Train.Name} is not a text set (use wujue, qijue, line5, moby-dick or names).");
        _family = config.Family.Trim().ToLowerInvariant();
        _train = (TokenDataset)data.Train;
        _test = (TokenDataset)data.Test;
        _device = device;
        _judge = new TextJudge(_train);
        int length = _train.Length, vocab = _train.Vocabulary.Count;
        TokenProcess = _family == "mask" ? new MaskProcess(length) : new EditProcess(length, vocab);
        var transformer = config.Transformer ?? new TransformerConfig();
        TrainedNetwork = new TextTransformer(vocab, length, transformer, length);
        SamplingNetwork = new TextTransformer(vocab, length, transformer, length);
        var weighting = (config.Text ?? new TextConfig()).Weighting;
        TrainingModel = new TokenPosteriorModel(TrainedNetwork, TokenProcess, vocab, _train.UsesPadding, weighting);
        Model = new TokenPosteriorModel(SamplingNetwork, TokenProcess, vocab, _train.UsesPadding, weighting);
    }

    /// <inheritdoc />
    public override string Family => _family;

    /// <summary>The mask or edit process.</summary>
    public TokenProcess TokenProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => TokenProcess;

    /// <summary>The vocabulary (built from the training split).</summary>
    public Vocabulary Vocabulary => _train.Vocabulary;

    /// <summary>The sequence length l.</summary>
    public int Length => _train.Length;

    /// <summary>The trained Transformer.</summary>
    public TextTransformer TrainedNetwork { get; }

    /// <summary>The EMA Transformer used for sampling.</summary>
    public TextTransformer SamplingNetwork { get; }

    /// <inheritdoc />
    public override nn.Module Network => TrainedNetwork;

    /// <inheritdoc />
    public override nn.Module EmaNetwork => SamplingNetwork;

    /// <summary>The posterior model over the trained network.</summary>
    public TokenPosteriorModel TrainingModel { get; }

    /// <summary>The posterior model over the EMA network.</summary>
    public TokenPosteriorModel Model { get; }

    /// <inheritdoc />
    public override IReadOnlyList<string> SamplerNames => Names;

    /// <inheritdoc />
    public override string DefaultSampler => "improved";

    /// <inheritdoc />
    public override int DefaultSteps => Length;

    /// <inheritdoc />
    public override string SampleExtension => ".txt";

    /// <summary>
    /// Network calls made and saved (by reusing the last output) in the last sampling run, and the
    /// share of sequence rows whose evaluation was saved (uniform batches run one row).
    /// </summary>
    public (int Evaluations, int Saved, double RowsSavedShare) LastEvaluations { get; private set; }

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) => DenoisingObjective.Loss(TokenProcess, TrainingModel, x0, generator);

    /// <summary>The kernel of a request: the core's re-corrupt kernel, or the family's improved one.</summary>
    public IReverseKernel<CategoricalPosterior> Kernel(SamplerRequest request)
    {
        string name = SamplerName(request);
        bool confident = (request.Order ?? "random") == "confident";
        if (name == "recorrupt")
        {
            if (request.Order is not null) throw new UdmException("--order applies to the improved sampler; the re-corrupt baseline redraws every position.");
            return new ReCorruptKernel();
        }
        return TokenProcess is MaskProcess ? new MaskImproveKernel(confident ? FillOrder.Confident : FillOrder.Random) : new EditImproveKernel(greedy: confident);
    }

    /// <summary>The fixed part and grid of a template (given characters at given positions).</summary>
    public (FixedPart Fixed, int[] Grid) Constrain(string template, int count, int steps)
    {
        var parsed = TokenTemplate.Parse(template, Vocabulary, Length);
        return (parsed.ToFixedPart(count, _device), parsed.Grid(steps));
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
        if (SamplerName(request) == "data")
        {
            LastEvaluations = (0, 0, 0);
            int available = (int)_test.Sequences.shape[0];
            return _test.Sequences.narrow(0, 0, Math.Min(count, available)).to(_device);
        }
        var kernel = Kernel(request);
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
        // Known tokens are certain: otherwise the edit kernel could spend its repairs on them.
        IPosteriorModel<CategoricalPosterior> model = options.Fixed is { } known ? new ConstrainedPosteriorModel(Model, known) : Model;
        using var cached = new CachingPosteriorModel(model, levelFromInput: TokenProcess is MaskProcess);
        var sampler = new Sampler<CategoricalPosterior>(TokenProcess, cached, kernel);
        var result = sampler.Sample([count, Length], grid, _device, new Generator((ulong)seed, _device), options);
        long rows = cached.RowEvaluations + cached.RowsSaved;
        LastEvaluations = (cached.Evaluations, cached.Saved, rows == 0 ? 0 : cached.RowsSaved / (double)rows);
        return result;
    }

    /// <summary>Decodes sequences to strings ([PAD] removed).</summary>
    public IReadOnlyList<string> Decode(Tensor sequences) => _judge.Decode(sequences);

    /// <summary>A text formatted for reading: poems split into their lines.</summary>
    public string Format(string text) => _judge.Format(text);

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        using var samples = Sample(request, count, seed, options);
        double seconds = clock.Elapsed.TotalSeconds;
        var texts = Decode(samples);
        string name = SamplerName(request) + (request.Order == "confident" ? " confident" : "");
        var metrics = _judge.Quality(texts);
        metrics["network_evaluations"] = LastEvaluations.Evaluations;
        metrics["evaluations_saved"] = LastEvaluations.Saved;
        metrics["rows_saved_share"] = LastEvaluations.RowsSavedShare;
        metrics["seconds_per_100"] = seconds * 100 / texts.Count;
        int steps = name == "data" ? 0 : Math.Min(StepCount(request), Length);
        return new EvaluationResult(_train.Name, Family, name, steps, texts.Count, seconds, metrics);
    }

    /// <summary>
    /// The negative ELBO of held-out sequences in bits per token (mask: the exact sum over levels;
    /// edit: the bound through the improved kernel), with one Monte Carlo draw per level.
    /// </summary>
    public double HeldOutBitsPerToken(int count, long seed)
    {
        using var scope = torch.NewDisposeScope();
        var data = _test.Sequences.narrow(0, 0, Math.Min(count, (int)_test.Sequences.shape[0])).to(_device);
        return TokenProcess switch
        {
            MaskProcess mask => TokenElbo.Mask(Model, mask, data, seed: (ulong)seed).BitsPerToken,
            EditProcess edit => TokenElbo.Edit(Model, edit, data, seed: (ulong)seed).BitsPerToken,
            _ => throw new InvalidOperationException(),
        };
    }

    /// <inheritdoc />
    public override void WriteSamples(string path, Tensor samples, string title) => _judge.Write(path, samples, title);
}
