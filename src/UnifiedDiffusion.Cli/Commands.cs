using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Metrics;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using UnifiedDiffusion.Runs;

namespace UnifiedDiffusion.Cli;

internal static class TrainCommand
{
    /// <summary>Exit code after Ctrl-C (128 + SIGINT), once the checkpoint is saved.</summary>
    public const int Interrupted = 130;

    public static Command Create()
    {
        var recipe = new Argument<string?>("recipe") { Description = $"a recipe ({string.Join(", ", Recipes.Names)}) or a JSON config file; optional with --resume", Arity = ArgumentArity.ZeroOrOne };
        var output = new Option<string>("--out") { Description = "run folder for config, checkpoint, loss curve and TensorBoard logs", Required = true };
        var steps = new Option<int?>("--steps") { Description = "total training steps (overrides the recipe)" };
        var seed = new Option<long?>("--seed") { Description = "seed for initialisation, batches and noise (overrides the recipe)" };
        var lr = new Option<double?>("--lr") { Description = "peak learning rate (overrides the recipe)" };
        var resume = new Option<bool>("--resume") { Description = "continue the checkpoint in --out exactly where it stopped" };
        var keepEvery = new Option<int?>("--keep-every") { Description = $"also keep a copy of every checkpoint at a multiple of these steps in --out/{Checkpoint.KeptFolder}, for `udm eval --checkpoints` (a metric's curve over training)" };
        var device = Options.Device();
        var precision = Options.Precision("the recipe's; if it names none, bf16 for the mask and edit families on a CPU with bf16 units, else fp32; stored in the run's config");
        var threads = Options.Threads();
        var command = new Command("train", "Train a model from a recipe or a JSON config. Ctrl-C saves a checkpoint; --resume continues it.")
        {
            recipe, output, steps, seed, lr, resume, keepEvery, device, precision, threads,
        };
        command.SetAction(r =>
        {
            Platform.SetThreads(r.GetValue(threads));
            string runDir = r.GetValue(output)!;
            string? source = r.GetValue(recipe);
            bool isResume = r.GetValue(resume);
            ExperimentConfig config = source is not null ? Recipes.Resolve(source)
                : isResume ? ExperimentConfig.Load(Path.Combine(runDir, Experiment.Files.Config))
                : throw new UdmException($"name a recipe ({string.Join(", ", Recipes.Names)}) or a JSON config, e.g. `udm train gmm8 --out {runDir}`.");
            config = config with
            {
                Device = r.GetValue(device) ?? config.Device,
                Precision = r.GetValue(precision) ?? config.Precision,
                Training = config.Training with
                {
                    Steps = r.GetValue(steps) ?? config.Training.Steps,
                    Seed = r.GetValue(seed) ?? config.Training.Seed,
                    LearningRate = r.GetValue(lr) ?? config.Training.LearningRate,
                    KeepEvery = r.GetValue(keepEvery) ?? config.Training.KeepEvery,
                },
            };
            if (!isResume) config = config.WithDefaultPrecision();
            Validate(config.Training);
            var trained = Train(config, runDir, isResume, Options.CommandLine(r, runDir));
            return trained.Step < config.Training.Steps ? Interrupted : 0;
        });
        return command;
    }

    public static void Validate(TrainingOptions t)
    {
        if (t.Steps < 1) throw new UdmException($"--steps must be at least 1, got {t.Steps}.");
        if (!(t.LearningRate > 0)) throw new UdmException($"--lr must be positive, got {t.LearningRate}.");
        t.Validate();
    }

    public static Experiment Train(ExperimentConfig config, string runDir, bool resume, string? command = null)
    {
        var experiment = Experiment.Create(config);
        Console.WriteLine($"training in {Precisions.Name(experiment.Precision)}; this CPU's bfloat16 units: {(Precisions.CpuHasBf16 ? string.Join(", ", Precisions.CpuBf16Units) : "none")}");
        using var cts = Options.CancelOnCtrlC();
        var outcome = ProgressView.Run("train", config.Training.Steps, report =>
            experiment.Train(runDir, resume, new SyncProgress<TrainingProgress>(p => report(p.Step, $"loss {p.Loss:F4}")), cts.Token, command));
        Console.WriteLine(outcome == TrainingOutcome.Interrupted
            ? $"interrupted at step {experiment.Step}; checkpoint saved in {runDir}. Continue with `udm train --out {runDir} --resume`."
            : $"trained {experiment.Step} steps in {Precisions.Name(experiment.Precision)}; run folder {runDir} (checkpoint.udm, loss.png, loss.csv, tensorboard/).");
        return experiment;
    }
}

/// <summary>Reports on the calling thread (System.Progress would post to the thread pool and reorder).</summary>
internal sealed class SyncProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}

internal static class SampleCommand
{
    public static Command Create()
    {
        var run = Options.Run();
        var model = Options.Model();
        var samplerSet = new Options.SamplerSet();
        var count = Options.Count(64);
        var seed = Options.Seed("the prior and the sampler noise");
        var output = new Option<string?>("--out") { Description = "output file: .png (image grid or scatter plot), .csv (points) or .txt (text); default RUN/samples-SAMPLER-STEPS.EXT" };
        var inpaint = new Option<string?>("--inpaint") { Description = "image models: a PNG whose pixels are kept where --mask is white; the rest is generated" };
        var mask = new Option<string?>("--mask") { Description = "with --inpaint: a PNG of the same size, white = keep, black = fill" };
        var trajectoryOption = new Option<string?>("--trajectory") { Description = "also record every step of the first samples: a PNG sheet of x_t and x̂_0 rows (images), a strip of scatter plots (points), or a text file with changed positions marked (text)" };
        var fix = new Option<string?>("--fix") { Description = "text models: fixed characters, as a comma list per position (\"春,,,,,夏,,,,,秋,,,,,冬\") or a template with _ for free positions (\"床前明月光_______________\")" };
        var device = Options.Device();
        var precision = Options.Precision("the run's");
        var threads = Options.Threads();
        var command = new Command("sample", "Draw samples from a trained run: a PNG grid of images, a scatter plot or CSV of points, or a text file of sequences. "
            + "Cold runs restore held-out images (a sheet of original, degraded, restored rows) unless --generate is given.")
        {
            run, model, count, seed, output, trajectoryOption, inpaint, mask, fix, device, precision, threads,
        };
        foreach (var option in samplerSet.All) command.Options.Add(option);
        command.SetAction(r =>
        {
            Platform.SetThreads(r.GetValue(threads));
            var request = samplerSet.Build(r);
            int n = Options.Positive(r, count, "--count");
            string? inpaintPath = r.GetValue(inpaint), maskPath = r.GetValue(mask), template = r.GetValue(fix);
            if ((inpaintPath is null) != (maskPath is null)) throw new UdmException("--inpaint and --mask go together: the image and a mask PNG (white = keep, black = fill).");
            string runDir = Options.RequiredRunFolder(r, run, model);
            var experiment = Experiment.Load(runDir, r.GetValue(device), DataProgress(), r.GetValue(precision), forSampling: true);
            var family = experiment.Model;
            string sampler = request.Sampler ?? family.DefaultSampler;
            int steps = request.Steps ?? family.DefaultSteps;
            // A shipped model's run lives in the cache: its samples go to the current folder instead.
            string extension = family.Modality.SampleExtension;
            string path = r.GetValue(output) ?? (r.GetValue(model) is { } modelName
                ? $"samples-{modelName}-{sampler}-{steps}{extension}"
                : Path.Combine(runDir, $"samples-{sampler}-{steps}{extension}"));
            family.Modality.CheckOutput(path, n); // before any sampling
            string? trajectoryPath = r.GetValue(trajectoryOption);
            if (trajectoryPath is not null && !Path.GetExtension(trajectoryPath).Equals(family.Modality.TrajectoryExtension, StringComparison.OrdinalIgnoreCase))
                throw new UdmException($"{trajectoryPath}: a trajectory of {family.Modality.Name} is written as a {family.Modality.TrajectoryExtension} file.") { Subject = "trajectory" };
            using var recorder = trajectoryPath is null ? null : new TrajectoryRecorder(family.Modality.TrajectoryRows);
            long sampleSeed = r.GetValue(seed);
            string title = $"{experiment.Data.Name}, {sampler}, {steps} steps, seed {sampleSeed}" + (template is null ? "" : $", fixed: {template}");
            // On a terminal, texts settle in place while they are sampled.
            var settling = family.Modality is TextModality text && AnsiConsole.Profile.Capabilities.Interactive ? new SettlingView(text) : null;
            long done = 0;
            var written = ProgressView.Run($"sample {sampler}", ProgressView.SamplingSteps(steps, n, family.Modality.SamplingBatch), report =>
            {
                var options = new SamplingOptions
                {
                    OnStep = p => { recorder?.Record(p); settling?.Record(p); report(++done, $"t={p.Step.T}"); },
                    MaxBatch = family.Modality.SamplingBatch,
                };
                if (inpaintPath is not null) options = family.Inpaint(inpaintPath, maskPath!, n, options);
                return family.WriteSamples(path, request, n, sampleSeed, options, title, template);
            }, settling is null ? null : settling.Render);
            if (recorder is not null)
            {
                family.Modality.WriteTrajectory(trajectoryPath!, recorder, title);
                int shown = Math.Min(recorder.Steps.Count, family.Modality.TrajectoryStepsShown);
                string subsampled = shown < recorder.Steps.Count ? $" (the sheet shows {shown} of them, evenly spread and with the last)" : "";
                Console.WriteLine($"wrote the trajectory of {Math.Min(n, recorder.Rows)} samples over {recorder.Steps.Count} steps{subsampled} to {trajectoryPath}");
            }
            Console.WriteLine($"wrote {n} {written} to {path} ({Precisions.Name(experiment.Precision)})");
            return 0;
        });
        return command;
    }

    /// <summary>Fetching and reading data can take a while: say so on stderr.</summary>
    public static IProgress<string> DataProgress() => new SyncProgress<string>(line => Console.Error.WriteLine(line));
}

internal static class EvalCommand
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static Command Create()
    {
        var run = Options.Run();
        var model = Options.Model();
        var oracle = new Option<string?>("--oracle") { Description = "use the exact denoiser of gmm8 or gmm25 instead of a trained model" };
        var samplerSet = new Options.SamplerSet { AllowLists = true };
        var count = Options.Count(5000);
        var seed = Options.Seed("sampling and the reference data");
        var json = new Option<bool>("--json") { Description = "print the metrics as JSON (one object per sampler, metric names in snake_case)" };
        var markdown = new Option<bool>("--markdown") { Description = "print the metrics as a Markdown table (for BENCHMARKS.md)" };
        var churn = new Option<bool>("--churn") { Description = "also measure churn: how far the estimate of x_0 moves between consecutive steps (the share of tokens that change, or the RMS change of images and points), averaged over steps" };
        var churnPlot = new Option<string?>("--churn-plot") { Description = "with --churn: a PNG of churn against step, one line per sampler" };
        var nll = new Option<bool>("--nll") { Description = "also report the negative ELBO of held-out data: gaussian in bits/dim along the same grid (ddpm, analytic-ddpm); mask and edit in bits/token" };
        var checkpoints = new Option<bool>("--checkpoints") { Description = $"evaluate every checkpoint the run kept along training (udm train --keep-every) and its last, with a column training_step" };
        var curve = new Option<string?>("--curve") { Description = "with --checkpoints: a PNG of each sampler's first metric against training step" };
        var record = new Option<bool>("--record") { Description = $"also append the command and its rows to the run's {RunRecords.EvaluationFile}, which udm export turns into the model card's metrics" };
        var device = Options.Device();
        var precision = Options.Precision("the run's");
        var threads = Options.Threads();
        var command = new Command("eval", "Sample and measure with the family's metrics: sliced W2 and log-density for toy data, classifier-FID for images, "
            + "n-gram perplexity, distinct-n and copy rate for text.")
        {
            run, model, oracle, count, seed, json, markdown, nll, churn, churnPlot, checkpoints, curve, record, device, precision, threads,
        };
        foreach (var option in samplerSet.All) command.Options.Add(option);
        command.SetAction(r =>
        {
            Platform.SetThreads(r.GetValue(threads));
            var requests = samplerSet.BuildAll(r);
            int n = Options.Positive(r, count, "--count");
            // Checked before any model or data is opened.
            string? churnPlotPath = r.GetValue(churnPlot);
            bool measureChurn = r.GetValue(churn);
            if (churnPlotPath is not null && !measureChurn) throw new UdmException("--churn-plot plots what --churn measures: add --churn.") { Subject = "churn-plot" };
            if (churnPlotPath is not null && !Path.GetExtension(churnPlotPath).Equals(".png", StringComparison.OrdinalIgnoreCase))
                throw new UdmException($"{churnPlotPath}: the churn plot is written as a .png file.") { Subject = "churn-plot" };
            string? curvePath = r.GetValue(curve);
            bool overCheckpoints = r.GetValue(checkpoints);
            if (curvePath is not null && !overCheckpoints) throw new UdmException("--curve plots a metric over the checkpoints that --checkpoints evaluates: add --checkpoints.") { Subject = "curve" };
            if (curvePath is not null && !Path.GetExtension(curvePath).Equals(".png", StringComparison.OrdinalIgnoreCase))
                throw new UdmException($"{curvePath}: the curve is written as a .png file.") { Subject = "curve" };
            string? oracleName = r.GetValue(oracle);
            if ((r.GetValue(run) is null && r.GetValue(model) is null) == (oracleName is null))
                throw new UdmException("give one of --run DIR (a trained model), --model NAME (a shipped one) or --oracle gmm8|gmm25 (the exact denoiser).");
            string? runDir = Options.RunFolder(r, run, model);
            if (r.GetValue(record) && runDir is null) throw new UdmException("--record writes into a run folder; the exact denoiser has none, so drop --record or give --run.") { Subject = "record" };
            long s = r.GetValue(seed);
            var oracleRun = oracleName is null ? null : new Evaluation.Oracle(oracleName);
            if (oracleName is not null && r.GetValue(precision) is not null)
                throw new UdmException("the exact denoiser is arithmetic in float64, not a network; --precision applies to --run.") { Subject = "precision" };
            if (overCheckpoints && runDir is null) throw new UdmException("--checkpoints evaluates a run's kept checkpoints; give --run.") { Subject = "checkpoints" };
            var kept = overCheckpoints ? Checkpoint.Kept(runDir!) : [];
            if (overCheckpoints && kept.Count == 0)
                throw new UdmException($"{runDir} kept no checkpoints along training; train with --keep-every N (resume with it to keep the rest), then evaluate with --checkpoints.") { Subject = "checkpoints" };
            var churnLines = new List<(string Label, double[] X, double[] Y)>();
            bool churnOfTokens = false;
            var results = new List<EvaluationResult>();
            var experiment = runDir is null ? null : Experiment.Load(runDir, r.GetValue(device), SampleCommand.DataProgress(), r.GetValue(precision));
            // The run's last checkpoint, or with --checkpoints every kept one before it and then the last.
            List<(long? Step, string? Checkpoint)> snapshots = overCheckpoints
                ? [.. kept.Where(k => k.Step < experiment!.Step).Select(k => ((long?)k.Step, (string?)k.Path)), (experiment!.Step, null)]
                : [(null, null)];
            foreach (var (trainingStep, checkpointPath) in snapshots)
            {
                if (overCheckpoints) experiment!.LoadCheckpoint(checkpointPath ?? Path.Combine(runDir!, Checkpoint.FileName));
                var registry = experiment?.Model.Samplers ?? GaussianSamplers.Registry;
                var expanded = requests.SelectMany(q => q.Sampler == "all" ? registry.All.Select(e => q with { Sampler = e.Name }) : [q]).ToList();
                foreach (var request in expanded)
                {
                    if (request.Sampler == FamilyModel.ReferenceSampler)
                    {
                        if (results.All(q => q.Sampler != FamilyModel.ReferenceSampler))
                            results.Add(experiment?.Model.EvaluateReference(n, s) ?? oracleRun!.EvaluateReference(n, s));
                        continue;
                    }
                    int steps = request.Steps ?? experiment?.Model.DefaultSteps ?? 50;
                    using var churnMeter = measureChurn ? new ChurnMeter() : null;
                    long done = 0;
                    int? batch = experiment?.Model.Modality.SamplingBatch;
                    var result = ProgressView.Run($"eval {request.Sampler ?? experiment?.Model.DefaultSampler} {steps} steps", ProgressView.SamplingSteps(steps, n, batch), report =>
                    {
                        var options = new SamplingOptions
                        {
                            OnStep = p => { churnMeter?.Record(p); report(++done, $"t={p.Step.T}"); },
                            MaxBatch = batch,
                        };
                        return oracleRun?.Evaluate(GaussianFamilyModel.ToSpec(request), n, s, options) ?? experiment!.Model.Evaluate(request, n, s, options);
                    });
                    if (churnMeter is { PerStep.Count: > 0 }) // baselines without steps (degraded, direct) have no churn
                    {
                        result = result with { Metrics = new Dictionary<string, double>(result.Metrics) { ["churn"] = churnMeter.Mean } };
                        var perStep = churnMeter.PerStep.ToArray();
                        churnLines.Add(($"{result.Sampler}, {result.Steps} steps", [.. Enumerable.Range(1, perStep.Length).Select(k => (double)k)], perStep));
                        churnOfTokens |= churnMeter.IsShareOfPositions;
                    }
                    if (r.GetValue(nll)) result = WithNll(result, request, experiment, oracleRun, n, s, expanded.Count == 1);
                    if (trainingStep is long step)
                        result = result with { Metrics = new Dictionary<string, double> { [MetricsTables.TrainingStep] = step }.Concat(result.Metrics).ToDictionary() };
                    results.Add(result);
                }
            }
            if (curvePath is not null)
            {
                var curves = results.Where(q => q.Metrics.ContainsKey(MetricsTables.TrainingStep) && q.Metrics.Count > 1).GroupBy(q => (q.Sampler, q.Steps)).Select(g =>
                {
                    string metric = g.First().Metrics.Keys.Skip(1).First();
                    return (Label: $"{g.Key.Sampler}, {g.Key.Steps} steps: {MetricsTables.Heading(metric)}", Metric: metric,
                        X: g.Select(q => q.Metrics[MetricsTables.TrainingStep]).ToArray(), Y: g.Select(q => q.Metrics.GetValueOrDefault(metric, double.NaN)).ToArray());
                }).ToList();
                // Held-out data through the same metric, as a flat line: how far the samples are from real data.
                if (results.FirstOrDefault(q => q.Sampler == FamilyModel.ReferenceSampler) is { } reference && curves.Count > 0)
                {
                    double[] span = [snapshots[0].Step ?? 0, snapshots[^1].Step ?? 0];
                    curves.AddRange(curves.Select(c => c.Metric).Distinct().Where(reference.Metrics.ContainsKey)
                        .Select(m => (Label: $"held-out data: {MetricsTables.Heading(m)}", Metric: m, X: span, Y: new[] { reference.Metrics[m], reference.Metrics[m] })).ToList());
                }
                string metrics = string.Join(", ", curves.Select(c => MetricsTables.Heading(c.Metric)).Distinct());
                Plots.Lines(curvePath, $"{r.GetValue(model) ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(runDir!))}: {metrics} over training",
                    "training step", metrics, [.. curves.Select(c => (c.Label, c.X, c.Y))]);
                Console.Error.WriteLine($"wrote the curve of {curves.Count} samplers over {snapshots.Count} checkpoints to {curvePath}");
            }
            if (churnPlotPath is not null)
            {
                string what = churnOfTokens ? "share of positions whose most likely token changed" : "RMS change of the estimate of x_0";
                Plots.Lines(churnPlotPath, $"Churn: {what}, {r.GetValue(model) ?? (runDir is null ? oracleName : Path.GetFileName(Path.TrimEndingDirectorySeparator(runDir)))}", "step k (from the estimate at step k − 1)", "churn", churnLines);
                Console.Error.WriteLine($"wrote the churn plot of {churnLines.Count} samplers to {churnPlotPath}");
            }
            if (r.GetValue(record))
            {
                RunRecords.Record(runDir!, new EvaluationRecord(DateTime.UtcNow, Options.CommandLine(r, runDir), Platform.CpuDescription(),
                    [.. results.Select(q => MetricsTables.Flatten(q).ToDictionary(e => e.Key, e => JsonSerializer.SerializeToElement(e.Value)))]));
                Console.Error.WriteLine($"recorded in {Path.Combine(runDir!, RunRecords.EvaluationFile)}");
            }
            if (r.GetValue(json))
            {
                var objects = results.Select(MetricsTables.Flatten).ToList();
                Console.WriteLine(objects.Count == 1 ? JsonSerializer.Serialize(objects[0], Json) : JsonSerializer.Serialize(objects, Json));
            }
            else if (r.GetValue(markdown)) Console.Write(MetricsTables.Markdown(results));
            else MetricsTable.Print(oracleName is not null ? $"{oracleName}, exact denoiser" : r.GetValue(model) ?? runDir!, results);
            return 0;
        });
        return command;
    }

    /// <summary>Adds the held-out bound; in a list, a sampler without a likelihood (a deterministic one) keeps its row without it.</summary>
    private static EvaluationResult WithNll(EvaluationResult result, SamplerRequest request, Experiment? experiment, Evaluation.Oracle? oracleRun, int n, long s, bool single)
    {
        (string Metric, double Value)? bound;
        if (oracleRun is not null)
        {
            var spec = GaussianFamilyModel.ToSpec(request);
            bound = spec.Entry.Likelihood is null ? null : ("nll_bits_per_dim", oracleRun.NllBitsPerDim(spec, n, s));
        }
        else bound = experiment!.Model.HeldOutBound(request, n, s);
        if (bound is not { } value)
        {
            string stochastic = string.Join(", ", GaussianSamplers.Registry.Entries.Where(e => e.Likelihood is not null).Select(e => e.Name));
            if (single) throw new UdmException($"a likelihood needs a sampler with a reverse variance ({stochastic}); {request.Sampler ?? "the default sampler"} is deterministic.") { Subject = "nll" };
            return result;
        }
        return result with { Metrics = new Dictionary<string, double>(result.Metrics) { [value.Metric] = value.Value } };
    }
}

internal static class MetricsTable
{
    public static void Print(string title, IEnumerable<EvaluationResult> rows)
    {
        var list = rows.ToList();
        // Redirected output has no terminal width; Spectre would wrap every cell at 80 columns.
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 200;
        var metricNames = MetricsTables.MetricNames(list);
        var table = new Table().Title(Markup.Escape(title)).AddColumns("data", "sampler", "steps", "samples");
        foreach (var name in metricNames) table.AddColumn(Markup.Escape(MetricsTables.Heading(name)));
        table.AddColumn("seconds");
        foreach (var q in list)
            table.AddRow([q.Data, Markup.Escape(q.Sampler), q.Steps.ToString(), q.Count.ToString(),
                .. metricNames.Select(m => q.Metrics.TryGetValue(m, out double v) ? MetricsTables.Format(v) : "–"), q.Seconds.ToString("F2")]);
        AnsiConsole.Write(table);
    }
}

internal static class ExportCommand
{
    public static Command Create()
    {
        var run = Options.Run();
        var model = Options.Model();
        var output = new Option<string>("--out") { Description = "the folder to write: config.json, model.safetensors (EMA weights, float32, PyTorch twin names), scheduler_config.json (diffusers keys), README.md", Required = true };
        var force = new Option<bool>("--force") { Description = "replace a non-empty --out folder" };
        var notes = new Option<string?>("--notes") { Description = "a Markdown file for the model card: its first line \"# …\" becomes the card's title, the rest follows the facts table" };
        var command = new Command("export", "Export a trained model as a folder laid out like a diffusers model, for PyTorch (interop/pytorch) or `udm import`.")
        {
            run, model, output, force, notes,
        };
        command.SetAction(r =>
        {
            string folder = r.GetValue(output)!;
            string runDir = Options.RequiredRunFolder(r, run, model);
            var experiment = Experiment.Load(runDir, progress: SampleCommand.DataProgress(), forSampling: true);
            ModelExport.Export(experiment, folder, r.GetValue(force), r.GetValue(notes));
            long bytes = new FileInfo(Path.Combine(folder, ModelExport.Files.Weights)).Length;
            Console.WriteLine($"wrote {folder}: {string.Join(", ", Directory.GetFiles(folder).Select(Path.GetFileName).Order())} ({bytes / 1e6:0.0} MB of weights)");
            return 0;
        });
        return command;
    }
}

internal static class ModelsCommand
{
    public static Command Create()
    {
        var command = new Command("models", "List the shipped pretrained models that --model NAME takes (in sample, eval and export), with their checksums checked.");
        command.SetAction(_ =>
        {
            var models = ShippedModels.List();
            if (models.Count == 0)
            {
                Console.WriteLine($"no shipped models found: run udm inside a clone of the repository, or set {ShippedModels.FolderVariable} to a folder of exported models.");
                return 0;
            }
            // Plain aligned lines, so that the list reads the same in a terminal, a pipe and a test.
            Console.WriteLine($"shipped models in {ShippedModels.Folder}:");
            int width = models.Max(m => m.Name.Length);
            foreach (var m in models)
            {
                string status;
                try { ModelExport.VerifyChecksum(m.Folder); status = ModelExport.RecordedChecksum(m.Folder) is null ? "checksum not recorded" : "checksum ok"; }
                catch (UdmException) { status = "DAMAGED (checksum differs)"; }
                Console.WriteLine(FormattableString.Invariant($"  {m.Name.PadRight(width)}  {m.WeightBytes / 1e6,6:0.0} MB  {status,-26}  {m.Title}"));
            }
            Console.WriteLine("use one with --model NAME, e.g. udm sample --model " + models[0].Name);
            return 0;
        });
        return command;
    }
}

internal static class ImportCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("folder") { Description = "a folder written by `udm export` (model.safetensors, or a PyTorch model.pth state dict, with config.json)" };
        var output = new Option<string>("--out") { Description = "the new run folder", Required = true };
        var command = new Command("import", "Turn an exported model folder into a run that `udm sample` and `udm eval` take (weights checked tensor by tensor first).")
        {
            folder, output,
        };
        command.SetAction(r =>
        {
            string runDir = r.GetValue(output)!;
            var experiment = ModelExport.Import(r.GetValue(folder)!, runDir, SampleCommand.DataProgress());
            Console.WriteLine($"wrote run {runDir}: {experiment.Config.Family} on {experiment.Config.Data}, {NetworkInfo.ParameterCount(experiment.Model.Network):N0} parameters; try `udm sample --run {runDir}`");
            return 0;
        });
        return command;
    }
}

internal static class LossCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs") { Description = "run folders written by `udm train`", Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "the PNG to write", Required = true };
        var command = new Command("loss", "Overlay the training-loss curves of several runs in one PNG (moving averages on a log scale), e.g. the same recipe in fp32 and bf16.")
        {
            runs, output,
        };
        command.SetAction(r =>
        {
            var curves = r.GetValue(runs)!.Select(run => (Label: Path.GetFileName(Path.TrimEndingDirectorySeparator(run)), Losses: Experiment.ReadLosses(run))).ToList();
            string path = r.GetValue(output)!;
            Plots.LossCurves(path, curves);
            Console.WriteLine($"wrote {path}: {string.Join(", ", curves.Select(c => $"{c.Label} ({c.Losses.Count} steps, last 100 mean {c.Losses.TakeLast(100).Average():F4})"))}");
            return 0;
        });
        return command;
    }
}

internal static class RecipesCommand
{
    public static Command Create()
    {
        var name = new Argument<string?>("name") { Description = "print this recipe's JSON config", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("recipes", "List the built-in recipes, or print one as a JSON config to edit and pass to `udm train`.") { name };
        command.SetAction(r =>
        {
            if (r.GetValue(name) is string n) Console.WriteLine(Recipes.Get(n).ToJson());
            else foreach (var recipe in Recipes.Names) Console.WriteLine($"{recipe,-22}{Recipes.Get(recipe).Family,-9}{Recipes.Get(recipe).Data,-14}{Recipes.Get(recipe).Training.Steps,7} steps  {Recipes.Summary(recipe)}");
            return 0;
        });
        return command;
    }
}

internal static class DemoCommand
{
    public static readonly int[] StepCounts = [10, 20, 50, 100];
    public static readonly string[] Samplers = ["ddpm", "ddim", "analytic-ddim"];

    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "run folder; an existing finished demo run is reused", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var seed = Options.Seed("training and sampling");
        var count = Options.Count(4000);
        var trainSteps = new Option<int?>("--train-steps") { Description = $"training steps (default {Recipes.Get("demo").Training.Steps})" };
        var threads = Options.Threads();
        var command = new Command("demo", "The main job, on built-in data with no download: train a toy model on the 8-Gaussian ring (2–4 min on 2 cores), "
            + "sample it with DDPM, DDIM and Analytic-DDIM at 10-100 steps, write a scatter-plot PNG and print a metrics table.")
        {
            output, seed, count, trainSteps, threads,
        };
        command.SetAction(r =>
        {
            Platform.SetThreads(r.GetValue(threads));
            string runDir = r.GetValue(output)!;
            int n = Options.Positive(r, count, "--count");
            long s = r.GetValue(seed);
            var recipe = Recipes.Get("demo");
            var config = recipe with { Training = recipe.Training with { Seed = s, Steps = r.GetValue(trainSteps) ?? recipe.Training.Steps } };
            TrainCommand.Validate(config.Training);
            var experiment = ReuseOrTrain(config, runDir);
            if (experiment is null) return TrainCommand.Interrupted;

            var rows = new List<EvaluationResult>();
            var panels = new List<(string, torch.Tensor)> { ("training data (gmm8)", experiment.Data.Sample(n, new torch.Generator((ulong)s + 1))) };
            ProgressView.Run("sample", Samplers.Length * StepCounts.Length, report =>
            {
                int done = 0;
                foreach (var name in Samplers)
                    foreach (int k in StepCounts)
                    {
                        var request = new SamplerRequest(name, k);
                        rows.Add(experiment.Model.Evaluate(request, n, s));
                        if (k == 10 || k == 100) panels.Add(($"{name}, {k} steps", experiment.Model.Sample(request, n, s)));
                        report(++done, $"{name} {k} steps");
                    }
                return 0;
            });
            string png = Path.Combine(runDir, "demo.png");
            Plots.ScatterGrid(png, panels);
            MetricsTable.Print($"gmm8, {n} samples per row, model trained {experiment.Step} steps", rows);
            Console.WriteLine($"scatter plots: {png}; loss curve: {Path.Combine(runDir, Experiment.Files.LossPng)}");
            foreach (var (_, t) in panels) t.Dispose();
            PointAtShippedModels();
            return 0;
        });
        return command;
    }

    /// <summary>The demo's last lines: where the pretrained models are, when the repository ships some.</summary>
    private static void PointAtShippedModels()
    {
        var models = ShippedModels.List();
        if (models.Count == 0) return;
        Console.WriteLine($"pretrained models, no training needed: {string.Join(", ", models.Select(m => m.Name))} (`udm models` describes them); e.g.");
        string example = models.Any(m => m.Name == "mnist") ? "udm sample --model mnist --label 7 --steps 20 --out seven.png" : $"udm sample --model {models[0].Name}";
        Console.WriteLine("  " + example);
    }

    private static Experiment? ReuseOrTrain(ExperimentConfig config, string runDir)
    {
        if (File.Exists(Path.Combine(runDir, Checkpoint.FileName)))
        {
            try
            {
                var existing = Experiment.Load(runDir);
                if (existing.Config == config && existing.Step >= config.Training.Steps)
                {
                    Console.WriteLine($"using the trained demo model in {runDir} (delete the folder to retrain)");
                    return existing;
                }
                if (existing.Config.ModelIdentity() == config.ModelIdentity() && existing.Step < config.Training.Steps)
                    return Resume(config, runDir);
            }
            catch (UdmException e)
            {
                throw new UdmException($"{runDir} holds a run that the demo cannot use ({e.Message}); delete it or pass another --out.");
            }
            throw new UdmException($"{runDir} holds a different run; delete it or pass another --out.");
        }
        var trained = TrainCommand.Train(config, runDir, resume: false);
        return trained.Step >= config.Training.Steps ? trained : null;
    }

    private static Experiment? Resume(ExperimentConfig config, string runDir)
    {
        Console.WriteLine($"continuing the unfinished demo run in {runDir}");
        var trained = TrainCommand.Train(config, runDir, resume: true);
        return trained.Step >= config.Training.Steps ? trained : null;
    }
}
