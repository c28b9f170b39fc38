using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tokens;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>
/// Sizes of every measurement. The same object (as JSON) drives the PyTorch side, so both sides
/// always run the same batch, counts and steps. <see cref="Full"/> is the published configuration;
/// <see cref="Smoke"/> checks the whole pipeline in a few minutes.
/// </summary>
internal sealed record BenchSettings
{
    public string Name { get; init; } = "full";
    public int Threads { get; init; } = 2;
    /// <summary>The precision of this workload's networks: fp32, or bf16 (mixed precision; PyTorch: CPU autocast).</summary>
    public string Precision { get; init; } = "fp32";
    public int Rounds { get; init; } = 5;
    // toy MLP (demo recipe)
    public int ToyBatch { get; init; } = 512;
    public int ToyTrainSteps { get; init; } = 200;
    public int ToySamples { get; init; } = 4000;
    public int ToySteps { get; init; } = 50;
    // MNIST UNet (mnist recipe) and cold UNet (mnist-blur recipe)
    public int ImageBatch { get; init; } = 64;
    public int ImageTrainSteps { get; init; } = 20;
    public int ImageSamples { get; init; } = 64;
    public int ImageSteps { get; init; } = 50;
    public int ColdSamples { get; init; } = 64;
    // poem Transformer (wujue-mask / wujue-edit recipes)
    public int TextBatch { get; init; } = 64;
    public int TextTrainSteps { get; init; } = 50;
    public int TextSamples { get; init; } = 100;
    public int TextSteps { get; init; } = 20;
    // memory rows (each in a fresh child process)
    public int MemorySamples { get; init; } = 64;
    public int MemoryTrainSteps { get; init; } = 100;
    public int RssSteps { get; init; } = 20_000;
    /// <summary>Per-step total variances of Analytic-DDIM (C#'s Γ table), for the PyTorch side; filled at setup.</summary>
    public Dictionary<string, double[]> AnalyticVariances { get; init; } = [];

    public static BenchSettings Full { get; } = new();

    public static BenchSettings Smoke { get; } = new()
    {
        Name = "smoke", Rounds = 2, ToyTrainSteps = 20, ToySamples = 500, ImageTrainSteps = 3, ImageSamples = 8, ImageSteps = 10,
        ColdSamples = 8, TextTrainSteps = 5, TextSamples = 20, MemorySamples = 16, MemoryTrainSteps = 5, RssSteps = 2000,
    };

    /// <summary>RSS is compared between this step and the end of the long run (after allocator and optimizer warm-up).</summary>
    // The allocator and the runtime settle in the first ~2,000 toy steps (measured: 261 MB at step 1,001, 316 at 2,001, then flat).
    public int RssWarmStep => Math.Min(5000, Math.Max(1, RssSteps / 4));
}

/// <summary>A row of the table: <see cref="Id"/> is shared with bench/pytorch/bench.py.</summary>
internal sealed record RowSpec(string Id, string Suite, string Measure, string Unit)
{
    /// <summary>True for throughput rows (higher is better).</summary>
    public bool Rate => Unit.EndsWith("/s", StringComparison.Ordinal);
}

/// <summary>Puts a network in eval mode until disposed, then back in the mode it was in.</summary>
internal sealed class EvalMode : IDisposable
{
    private readonly nn.Module _network;
    private readonly bool _training;

    public EvalMode(nn.Module network)
    {
        _network = network;
        _training = network.training;
        network.eval();
    }

    public void Dispose()
    {
        if (_training) _network.train();
    }
}

/// <summary>One reference model's measurements on the C# side.</summary>
internal abstract class Workload
{
    protected Workload(BenchSettings settings) => Settings = settings;

    protected BenchSettings Settings { get; }

    public abstract string Suite { get; }

    /// <summary>The precision the workload's networks compute in.</summary>
    public Precision Precision => Precisions.Parse(Settings.Precision);

    /// <summary>The id suffix of this precision's rows: bf16 rows are the fp32 rows' ids with "@bf16".</summary>
    public string Suffix => Precision == Precision.Fp32 ? "" : "@" + Precisions.Name(Precision);

    /// <summary>The timed rows (memory rows are separate: see <see cref="MemoryRows"/>), at this precision.</summary>
    public IReadOnlyList<RowSpec> Rows => [.. BaseRows.Select(r => r with { Id = r.Id + Suffix, Measure = r.Measure + (Suffix.Length == 0 ? "" : ", " + Precisions.Name(Precision)) })];

    /// <summary>The rows by their precision-free ids.</summary>
    protected abstract IReadOnlyList<RowSpec> BaseRows { get; }

    /// <summary>The trained network (for the parameter-count check).</summary>
    public abstract nn.Module Network { get; }

    /// <summary>Builds the networks and runs the untimed warm-ups.</summary>
    public abstract void Setup();

    /// <summary>One timed measurement of <paramref name="id"/> (with or without its suffix): milliseconds, or samples per second.</summary>
    public double Measure(string id, int round) => MeasureRow(id.EndsWith(Suffix, StringComparison.Ordinal) ? id[..^Suffix.Length] : id, round);

    /// <summary>One timed measurement of a precision-free row id.</summary>
    protected abstract double MeasureRow(string id, int round);

    /// <summary>
    /// The counted FLOPs behind one unit of a row: a training step (3 forward passes' worth: the
    /// forward, and the gradients of the inputs and the weights), or one sample (its steps' forward passes).
    /// </summary>
    public double Flops(string id)
    {
        string row = id.EndsWith(Suffix, StringComparison.Ordinal) ? id[..^Suffix.Length] : id;
        return row.EndsWith(".train", StringComparison.Ordinal) ? 3 * TrainingBatch * ForwardFlopsPerSample : StepsPerSample(row) * ForwardFlopsPerSample;
    }

    /// <summary>FLOPs of one network forward pass per sample (counted once, at setup).</summary>
    protected double ForwardFlopsPerSample { get; set; }

    /// <summary>The batch of a training step.</summary>
    protected abstract int TrainingBatch { get; }

    /// <summary>Network evaluations per sample of a sampling row.</summary>
    protected abstract int StepsPerSample(string id);

    /// <summary>Counts one forward pass of a batch of <paramref name="batch"/> and sets <see cref="ForwardFlopsPerSample"/>.</summary>
    protected void CountForward(int batch, Action forward)
    {
        using var noGrad = torch.no_grad();
        using var counter = FlopCounter.Start();
        forward();
        ForwardFlopsPerSample = (double)counter.Total / batch;
    }

    protected static List<double> TrainSteps(Trainer trainer, int steps)
    {
        var times = new List<double>(steps);
        var clock = Stopwatch.StartNew();
        double last = 0;
        trainer.Options = trainer.Options with { Steps = (int)trainer.Step + steps };
        trainer.Run(null, new SyncProgress<TrainingProgress>(_ =>
        {
            double now = clock.Elapsed.TotalMilliseconds;
            times.Add(now - last);
            last = now;
        }));
        return times;
    }

    /// <summary>Median milliseconds of <paramref name="run"/> over <paramref name="repeats"/> calls after one warm-up.</summary>
    public static double MedianMilliseconds(int repeats, Action run)
    {
        run();
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            run();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        return ToyWorkload.Median(times);
    }

    protected static double Rate(int count, Action run)
    {
        var clock = Stopwatch.StartNew();
        run();
        return count / clock.Elapsed.TotalSeconds;
    }

    /// <summary>The trainer options of a recipe for timing: constant rate (no warm-up), no checkpoints.</summary>
    protected static TrainingOptions Timing(TrainingOptions recipe, int batch) =>
        recipe with { Steps = 0, WarmupSteps = 0, BatchSize = batch, Decay = LearningRateDecay.Constant };

    public static IReadOnlyList<string> Suites { get; } = ["toy", "unet", "text"];

    /// <summary>The workloads of a suite.</summary>
    public static IEnumerable<Workload> For(string suite, BenchSettings settings) => suite switch
    {
        "toy" => [new ToyWorkload(settings)],
        "unet" => [new GaussianUNetWorkload(settings), new ColdUNetWorkload(settings)],
        "text" => [new TextWorkload(settings)],
        _ => throw new UdmException($"unknown suite \"{suite}\": use toy, unet, text or all."),
    };

    /// <summary>Memory rows: each runs alone in a child process (`udm bench --memory-row ID`), C# and PyTorch alike.</summary>
    public static IReadOnlyList<RowSpec> MemoryRows(BenchSettings s) =>
    [
        new("mem.baseline", "toy", "peak RSS of an idle process with the native library loaded", "MB"),
        new("mem.unet-sample", "unet", $"peak RSS, MNIST UNet DDIM-{s.ImageSteps}, {s.MemorySamples} images", "MB"),
        new("mem.unet-train", "unet", $"peak RSS, MNIST UNet training, batch {s.ImageBatch}, {s.MemoryTrainSteps} steps", "MB"),
        new("mem.drift", "toy", $"RSS growth of toy MLP training from step {s.RssWarmStep} to step {s.RssSteps}", "%"),
    ];

    /// <summary>Runs one memory row in this process and returns its readings (MB, and % for the drift).</summary>
    public static Dictionary<string, double> RunMemoryRow(string id, BenchSettings s, Action<string>? log = null)
    {
        // An id ending in @bf16 runs its workload in bf16 (the settings file holds the run's fp32 settings).
        if (id.EndsWith("@bf16", StringComparison.Ordinal)) (id, s) = (id[..^"@bf16".Length], s with { Precision = "bf16" });
        var result = new Dictionary<string, double>();
        switch (id)
        {
            case "mem.baseline":
                using (var one = torch.ones(1)) { }
                break;
            case "mem.unet-sample":
            {
                var w = new GaussianUNetWorkload(s);
                w.Build();
                using var samples = w.Sample("ddim", s.ImageSteps, s.MemorySamples, 0);
                break;
            }
            case "mem.unet-train":
            {
                var w = new GaussianUNetWorkload(s);
                w.Build();
                TrainSteps(w.Trainer, s.MemoryTrainSteps);
                break;
            }
            case "mem.drift":
            {
                var w = new ToyWorkload(s);
                w.Build();
                var trainer = w.Experiment.CreateTrainer(w.Experiment.Config.Training with { Steps = s.RssSteps, CheckpointEvery = int.MaxValue });
                double warm = 0;
                // The trainer returns free heap to the OS after every 500th step, after its progress
                // report: read RSS one step after a trim, so that warm-up and end are read alike (the end
                // reading follows the trim of the last step).
                trainer.Run(null, new SyncProgress<TrainingProgress>(p =>
                {
                    if (p.Step == s.RssWarmStep + 1) warm = Rss("VmRSS");
                    if (p.Step % 1000 == 1) log?.Invoke($"step {p.Step}: RSS {Rss("VmRSS"):F0} MB");
                }));
                double end = Rss("VmRSS");
                result["rss_warm_mb"] = warm;
                result["rss_end_mb"] = end;
                result["growth_percent"] = 100 * (end - warm) / warm;
                break;
            }
            default:
                throw new UdmException($"unknown memory row \"{id}\".");
        }
        result["peak_mb"] = Rss("VmHWM");
        return result;
    }

    /// <summary>A /proc/self/status field in MB (Linux; NaN elsewhere).</summary>
    public static double Rss(string field)
    {
        if (!File.Exists("/proc/self/status")) return double.NaN;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    /// <summary>The step variances of Analytic-DDIM along <paramref name="grid"/>, as the C# kernel computes them.</summary>
    protected static double[] AnalyticVariances(GaussianSamplerSpec spec, NoiseSchedule schedule, GammaTable gamma, int[] grid)
    {
        var kernel = (AnalyticKernel)GaussianSampling.Kernel(spec, schedule, gamma);
        return [.. Enumerable.Range(0, grid.Length - 1).Select(i => new ReverseStep(grid[i], grid[i + 1], i, grid))
            .Select(step => step.IsFinal ? 0.0 : kernel.StepVariance(step).Variance)];
    }
}

/// <summary>Random images in [−1, 1] shaped like MNIST: speed rows need no download.</summary>
internal sealed class RandomImages(long[] shape) : IDataSource
{
    public string Name => "random-images";

    public long[] SampleShape => shape;

    public Tensor Sample(int count, Generator generator, Device? device = null) =>
        torch.rand([count, .. shape], generator: generator, device: device).mul_(2).sub_(1);
}

/// <summary>Random regular tokens: speed rows of the text models need no download.</summary>
internal sealed class RandomTokens(int length, int vocabulary) : IDataSource
{
    public string Name => "random-tokens";

    public long[] SampleShape => [length];

    public Tensor Sample(int count, Generator generator, Device? device = null) =>
        torch.randint(Vocabulary.FirstRegularId, vocabulary, [count, length], dtype: ScalarType.Int64, device: device, generator: generator);
}

/// <summary>The toy MLP of the demo recipe on gmm8 (generated data, no download).</summary>
internal sealed class ToyWorkload(BenchSettings s) : Workload(s)
{
    private static readonly string[] Kinds = ["ddpm", "ddim", "analytic-ddim"];

    public Experiment Experiment { get; private set; } = null!;

    /// <summary>The demo recipe's family, which is Gaussian.</summary>
    private GaussianFamilyModel Gaussian => (GaussianFamilyModel)Experiment.Model;
    private Trainer _trainer = null!;

    public override string Suite => "toy";

    public override nn.Module Network => Experiment.Model.Network;

    protected override IReadOnlyList<RowSpec> BaseRows =>
    [
        new("toy.train", Suite, $"toy MLP 3×256 train step, batch {Settings.ToyBatch}", "ms"),
        .. Kinds.Select(k => new RowSpec("toy." + Spec(k).Name, Suite, $"toy MLP {Spec(k).Name}, {Settings.ToySteps} steps, {Settings.ToySamples} samples", "samples/s")),
    ];

    private GaussianSamplerSpec Spec(string kind) => new(kind, Settings.ToySteps);

    public void Build()
    {
        var config = Recipes.Get("demo");
        config = config with { Training = config.Training with { BatchSize = Settings.ToyBatch } };
        Experiment = Experiment.Create(config with { Precision = Settings.Precision });
        _trainer = Experiment.CreateTrainer(Timing(config.Training, Settings.ToyBatch));
    }

    protected override int TrainingBatch => Settings.ToyBatch;

    protected override int StepsPerSample(string id) => Settings.ToySteps;

    public override void Setup()
    {
        Build();
        var analytic = Spec("analytic-ddim");
        var grid = GaussianSampling.Grid(analytic, Experiment.Process.Levels);
        var gamma = Gaussian.Gamma(grid, samplesPerLevel: 500); // untimed, from the toy data
        Settings.AnalyticVariances["toy"] = AnalyticVariances(analytic, Gaussian.GaussianProcess.Schedule, gamma, grid);
        TrainSteps(_trainer, 20);
        foreach (var kind in Kinds) using (Gaussian.Sample(Spec(kind), 256, 0)) { }
        CountForward(256, () => { using (Gaussian.Sample(new GaussianSamplerSpec("ddim", 1), 256, 0)) { } });
    }

    protected override double MeasureRow(string id, int round)
    {
        if (id == "toy.train") return Median(TrainSteps(_trainer, Settings.ToyTrainSteps));
        var spec = Spec(id["toy.".Length..]);
        return Rate(Settings.ToySamples, () => { using (Gaussian.Sample(spec, Settings.ToySamples, round + 1)) { } });
    }

    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        int n = sorted.Count;
        return n == 0 ? double.NaN : n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}

/// <summary>The mnist recipe's UNet (base 24, attention at 7×7), Gaussian ε-prediction, T = 1000, on random images.</summary>
internal sealed class GaussianUNetWorkload(BenchSettings s) : Workload(s)
{
    private static readonly string[] Kinds = ["ddpm", "ddim", "analytic-ddim"];
    private static readonly long[] Shape = [1, 28, 28];

    private GaussianProcess _process = null!;
    private GaussianPosteriorModel _model = null!;
    private GammaTable? _gamma;
    private UNet _network = null!;

    public Trainer Trainer { get; private set; } = null!;

    public override string Suite => "unet";

    public override nn.Module Network => _network;

    protected override IReadOnlyList<RowSpec> BaseRows =>
    [
        new("unet.train", Suite, $"MNIST UNet train step, batch {Settings.ImageBatch}", "ms"),
        .. Kinds.Select(k => new RowSpec("unet." + Spec(k).Name, Suite, $"MNIST UNet {Spec(k).Name}, {Settings.ImageSteps} steps, {Settings.ImageSamples} images", "samples/s")),
    ];

    private GaussianSamplerSpec Spec(string kind) => new(kind, Settings.ImageSteps);

    public void Build()
    {
        var recipe = Recipes.Get("mnist");
        var config = recipe.UNet! with { InChannels = 1 };
        _process = new GaussianProcess(NoiseSchedule.Create(recipe.Schedule));
        torch.manual_seed(0);
        _network = new UNet(config) { Precision = Precision };
        _model = new GaussianPosteriorModel(_process, _network, recipe.Prediction, recipe.ClipSample);
        Trainer = new Trainer(_network, (x0, g) => DenoisingObjective.Loss(_process, _model, x0, g), new RandomImages(Shape),
            Timing(recipe.Training, Settings.ImageBatch), "bench", torch.CPU);
    }

    protected override int TrainingBatch => Settings.ImageBatch;

    protected override int StepsPerSample(string id) => Settings.ImageSteps;

    /// <summary>The UNet's convolutions at the training batch, with their FLOPs: the shapes the peak is measured on.</summary>
    public IReadOnlyDictionary<ConvolutionShape, long> Convolutions { get; private set; } = new Dictionary<ConvolutionShape, long>();

    public Tensor Sample(string kind, int steps, int count, long seed)
    {
        var spec = new GaussianSamplerSpec(kind, steps);
        return GaussianSampling.Sample(_process, _model, spec.NeedsGamma ? _gamma : null, spec, count, Shape, new Generator((ulong)seed), torch.CPU);
    }

    public override void Setup()
    {
        Build();
        TrainSteps(Trainer, 3);
        var analytic = Spec("analytic-ddim");
        var grid = GaussianSampling.Grid(analytic, _process.Levels);
        // Untimed: Γ from random images (speed does not depend on its values), 32 draws per level.
        _gamma = new GammaTable(_process.Levels);
        _gamma.Estimate(_model, _process, new RandomImages(Shape), grid, samplesPerLevel: 32, seed: 1);
        Settings.AnalyticVariances["unet"] = AnalyticVariances(analytic, _process.Schedule, _gamma, grid);
        foreach (var kind in Kinds) using (Sample(kind, Settings.ImageSteps, 4, 0)) { }
        using var images = new RandomImages(Shape).Sample(Settings.ImageBatch, new Generator(5));
        using var levels = torch.full(Settings.ImageBatch, 500L, dtype: ScalarType.Int64);
        using var noGrad = torch.no_grad();
        using var counter = FlopCounter.Start();
        _network.forward(images, levels).Dispose();
        ForwardFlopsPerSample = (double)counter.Total / Settings.ImageBatch;
        Convolutions = new Dictionary<ConvolutionShape, long>(counter.Convolutions);
    }

    protected override double MeasureRow(string id, int round)
    {
        if (id == "unet.train") return ToyWorkload.Median(TrainSteps(Trainer, Settings.ImageTrainSteps));
        var kind = id["unet.".Length..];
        return Rate(Settings.ImageSamples, () => { using (Sample(kind, Settings.ImageSteps, Settings.ImageSamples, round + 1)) { } });
    }
}

/// <summary>The mnist-blur recipe: UNet without attention, blur T = 20 (kernel 11, std 7, constant, reflect), L1 loss; random images.</summary>
internal sealed class ColdUNetWorkload(BenchSettings s) : Workload(s)
{
    private static readonly long[] Shape = [1, 28, 28];

    private ColdProcess _process = null!;
    private ColdPosteriorModel _model = null!;
    private Trainer _trainer = null!;
    private UNet _network = null!;
    private Tensor? _degraded;

    public override string Suite => "unet";

    public override nn.Module Network => _network;

    private int Levels => _process?.Levels ?? (Recipes.Get("mnist-blur").Cold ?? new ColdConfig()).Levels;

    protected override IReadOnlyList<RowSpec> BaseRows =>
    [
        new("cold.train", Suite, $"cold blur UNet train step, batch {Settings.ImageBatch}", "ms"),
        new("cold.improved", Suite, $"cold blur UNet TACoS restoration, {Levels} steps, {Settings.ColdSamples} images", "samples/s"),
    ];

    public override void Setup()
    {
        var recipe = Recipes.Get("mnist-blur");
        var cold = recipe.Cold ?? new ColdConfig();
        var config = recipe.UNet! with { InChannels = 1 };
        _process = new ColdProcess(ColdFamilyModel.CreateDegradation(cold), cold.Sigma);
        torch.manual_seed(0);
        _network = new UNet(config) { Precision = Precision };
        _model = new ColdPosteriorModel(_process, _network, cold.Loss);
        _trainer = new Trainer(_network, (x0, g) => DenoisingObjective.Loss(_process, _model, x0, g), new RandomImages(Shape),
            Timing(recipe.Training, Settings.ImageBatch), "bench", torch.CPU);
        TrainSteps(_trainer, 3);
        // Untimed, as the degraded held-out images of `udm sample`: D_T of random images.
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(3);
        var originals = new RandomImages(Shape).Sample(Settings.ColdSamples, generator);
        _degraded = _process.CorruptAt(originals, _process.Levels, _process.SampleNoise(originals, generator)).DetachFromDisposeScope();
        using (Restore()) { }
        CountForward(Settings.ColdSamples, () => _network.forward(_degraded, torch.full(Settings.ColdSamples, 5L, dtype: ScalarType.Int64)).Dispose());
    }

    protected override int TrainingBatch => Settings.ImageBatch;

    protected override int StepsPerSample(string id) => Levels;

    private Tensor Restore()
    {
        var grid = TimeGrid.Parse("leading", _process.Levels, _process.Levels);
        return ColdSampling.Restore(_process, _model, _degraded!, grid, new InvertKernel(), new SamplingContext { Generator = new Generator(1) });
    }

    protected override double MeasureRow(string id, int round) => id switch
    {
        "cold.train" => ToyWorkload.Median(TrainSteps(_trainer, Settings.ImageTrainSteps)),
        "cold.improved" => Rate(Settings.ColdSamples, () => { using (Restore()) { } }),
        _ => throw new ArgumentException(id),
    };
}

/// <summary>The wujue-mask / wujue-edit Transformer (192 wide, 3 layers, 4 heads, MLP 768; V = 3000, l = 20) on random tokens.</summary>
internal sealed class TextWorkload(BenchSettings s) : Workload(s)
{
    public const int Vocab = 3000, Length = 20;

    private Trainer _trainer = null!;
    private TextTransformer _maskNetwork = null!;
    private TokenPosteriorModel _maskModel = null!, _editModel = null!;
    private MaskProcess _mask = null!;
    private EditProcess _edit = null!;

    public override string Suite => "text";

    public override nn.Module Network => _maskNetwork;

    protected override IReadOnlyList<RowSpec> BaseRows =>
    [
        new("text.train", Suite, $"poem Transformer (mask) train step, batch {Settings.TextBatch}", "ms"),
        new("text.mask-improved", Suite, $"poem Transformer mask fill, {Settings.TextSteps} steps, {Settings.TextSamples} poems", "samples/s"),
        new("text.edit-improved", Suite, $"poem Transformer edit repair, {Settings.TextSteps} steps, {Settings.TextSamples} poems", "samples/s"),
    ];

    public override void Setup()
    {
        var recipe = Recipes.Get("wujue-mask");
        var config = recipe.Transformer!;
        _mask = new MaskProcess(Length);
        _edit = new EditProcess(Length, Vocab);
        torch.manual_seed(0);
        _maskNetwork = new TextTransformer(Vocab, Length, config, Length) { Precision = Precision };
        var editNetwork = new TextTransformer(Vocab, Length, config, Length) { Precision = Precision };
        editNetwork.eval();
        _maskModel = new TokenPosteriorModel(_maskNetwork, _mask, Vocab);
        _editModel = new TokenPosteriorModel(editNetwork, _edit, Vocab);
        _trainer = new Trainer(_maskNetwork, (x0, g) => DenoisingObjective.Loss(_mask, _maskModel, x0, g), new RandomTokens(Length, Vocab),
            Timing(recipe.Training, Settings.TextBatch), "bench", torch.CPU);
        TrainSteps(_trainer, 5);
        using (Sample(true, 8, 0)) { }
        using (Sample(false, 8, 0)) { }
        using var tokens = new RandomTokens(Length, Vocab).Sample(8, new Generator(6));
        CountForward(8, () => _maskNetwork.forward(tokens, torch.full(8, 10L, dtype: ScalarType.Int64)).Dispose());
    }

    protected override int TrainingBatch => Settings.TextBatch;

    /// <summary>At most one network evaluation per step (the caching model saves some: the count is an upper bound).</summary>
    protected override int StepsPerSample(string id) => Math.Min(Settings.TextSteps, Length);

    /// <summary>As TokenFamilyModel.Sample: the caching posterior model, the process's improved kernel (fill or repair), a trailing grid.</summary>
    public Tensor Sample(bool mask, int count, long seed, bool cache = true)
    {
        var grid = TimeGrid.Parse("trailing", Length, Math.Min(Settings.TextSteps, Length));
        using var cached = new CachingPosteriorModel(mask ? _maskModel : _editModel, levelFromInput: mask);
        var kernel = mask ? _mask.ImprovedKernel(confident: false) : _edit.ImprovedKernel(confident: false);
        IPosteriorModel<CategoricalPosterior> model = cache ? cached : mask ? _maskModel : _editModel;
        var sampler = new Sampler<CategoricalPosterior>(mask ? _mask : _edit, model, kernel);
        // Sampling runs in eval mode (no dropout), as a trained run's network does.
        using var evaluation = new EvalMode(_maskNetwork);
        return sampler.Sample([count, Length], grid, torch.CPU, new Generator((ulong)seed), new SamplingOptions());
    }

    protected override double MeasureRow(string id, int round) => id switch
    {
        "text.train" => ToyWorkload.Median(TrainSteps(_trainer, Settings.TextTrainSteps)),
        "text.mask-improved" => Rate(Settings.TextSamples, () => { using (Sample(true, Settings.TextSamples, round + 1)) { } }),
        "text.edit-improved" => Rate(Settings.TextSamples, () => { using (Sample(false, Settings.TextSamples, round + 1)) { } }),
        _ => throw new ArgumentException(id),
    };
}
