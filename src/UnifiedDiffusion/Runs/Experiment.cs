using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// A run: config → data, forward process, network and posterior model → trainer → checkpoint →
/// sampler. This is the high-level API that the CLI uses; the pieces are public for custom work.
/// </summary>
public sealed class Experiment
{
    private static readonly Lock InitLock = new();

    private Experiment(ExperimentConfig config, IProgress<string>? progress, OpenedData? data = null)
    {
        Config = config;
        Device = ParseDevice(config.Device);
        Precision = Precisions.Parse(config.Precision);
        Opened = data ?? DataSets.Open(config.Data, config.Text, progress: progress);
        lock (InitLock)
        {
            // Network initialisation draws from the global generator; seed it so a seed fixes the whole run.
            torch.manual_seed(config.Training.Seed);
            Model = CreateFamily(config, Opened, Device);
        }
        Model.Network.to(Device);
        Model.Network.eval();
        Precisions.Apply(Model.Network, Precision);
    }

    /// <summary>The arithmetic the network computes in (the config's, or the override given to <see cref="Load"/>).</summary>
    public Precision Precision { get; }

    /// <summary>The family names a config may use.</summary>
    public static IReadOnlyList<string> Families { get; } = ["gaussian", "cold", "mask", "edit", "encoding"];

    /// <summary>The family a config names, composed with the data's modality.</summary>
    private static FamilyModel CreateFamily(ExperimentConfig config, OpenedData data, Device device)
    {
        var modality = Modality.For(data, device);
        string family = config.Family.Trim().ToLowerInvariant();
        return (family, modality) switch
        {
            ("gaussian", _) => new GaussianFamilyModel(config, modality),
            ("cold", ImageModality images) => new ColdFamilyModel(config, images),
            ("mask" or "edit", TextModality text) => new TokenFamilyModel(config, text),
            ("encoding", ImageModality images) => new ImageEncodingFamilyModel(config, images),
            ("encoding", TextModality text) => new TextEncodingFamilyModel(config, text),
            ("cold", _) => throw new UdmException($"the cold family restores images; {data.Train.Name} holds {modality.Name}.") { Subject = "data" },
            ("mask" or "edit", _) => throw new UdmException($"the {family} family works on text; {data.Train.Name} holds {modality.Name}, not a text set (use wujue, qijue, line5, moby-dick, names or text:FILE).") { Subject = "data" },
            ("encoding", _) => throw new UdmException($"the encoding family works on images or text, not on the toy set {data.Train.Name}; use mnist, digits, wujue, names or moby-dick.") { Subject = "data" },
            _ => throw new UdmException($"family \"{config.Family}\" is not available; use {string.Join(", ", Families)}.") { Subject = "family" },
        };
    }

    /// <summary>The configuration.</summary>
    public ExperimentConfig Config { get; }

    /// <summary>The device tensors live on.</summary>
    public Device Device { get; }

    /// <summary>The training data.</summary>
    public IDataSource Data => Opened.Train;

    /// <summary>The training and held-out data.</summary>
    public OpenedData Opened { get; }

    /// <summary>The family-specific half of the run: process, networks, samplers and metrics.</summary>
    public FamilyModel Model { get; }

    /// <summary>The forward process.</summary>
    public IForwardProcess Process => Model.Process;

    /// <summary>The run folder, once trained or loaded.</summary>
    public string? RunDirectory { get; private set; }

    /// <summary>Training steps the weights have seen.</summary>
    public long Step { get; private set; }

    /// <summary>The file names inside a run folder.</summary>
    public static class Files
    {
        /// <summary>The run's configuration.</summary>
        public const string Config = "config.json";
        /// <summary>Per-step losses as CSV.</summary>
        public const string LossCsv = "loss.csv";
        /// <summary>The loss curve.</summary>
        public const string LossPng = "loss.png";
        /// <summary>Analytic-DPM's Γ table.</summary>
        public const string Gamma = "analytic-gamma.json";
        /// <summary>TensorBoard event files.</summary>
        public const string TensorBoard = "tensorboard";
    }

    /// <summary>A fresh, untrained run; real data sets are fetched into the cache first, reported to <paramref name="progress"/>.</summary>
    public static Experiment Create(ExperimentConfig config, IProgress<string>? progress = null) => new(config, progress);

    /// <summary>A fresh run on <paramref name="data"/> when given (a data card's stand-ins), else on the data set the config names.</summary>
    internal static Experiment Create(ExperimentConfig config, IProgress<string>? progress, OpenedData? data) => new(config, progress, data);

    /// <summary>
    /// Loads a trained run folder (config.json and checkpoint.udm) with the EMA weights in the
    /// network, for sampling. <paramref name="device"/> and <paramref name="precision"/> override the
    /// device and precision the run was trained with (checkpoints are float32 whatever the precision);
    /// without an override, a bf16 run loads in fp32 on a CPU without bfloat16 units.
    /// With <paramref name="forSampling"/>, a data set that is not on this machine is not fetched: the
    /// run's data card (<see cref="DataCard"/>) stands in for it, which is all that sampling from the
    /// prior needs; whatever needs real samples then says how to fetch them.
    /// </summary>
    public static Experiment Load(string runDir, string? device = null, IProgress<string>? progress = null, string? precision = null, bool forSampling = false)
    {
        if (File.Exists(runDir))
            throw new UdmException($"{runDir} is a file; --run takes the run folder that holds it, {Path.GetDirectoryName(Path.GetFullPath(runDir))}.") { Subject = "run" };
        if (!Directory.Exists(runDir))
            throw new UdmException($"run folder {runDir} does not exist; train one, e.g. `udm train gmm8 --out {runDir}` (all recipes: `udm recipes`).") { Subject = "run" };
        if (!File.Exists(Path.Combine(runDir, Files.Config)))
            throw new UdmException($"{runDir} holds no {Files.Config}, so it is not a run folder; give a folder that udm train or udm import wrote, or train one, e.g. `udm train gmm8 --out {runDir}`.") { Subject = "run" };
        var config = ExperimentConfig.Load(Path.Combine(runDir, Files.Config)).ForSamplingOnThisCpu();
        if (device is not null) config = config with { Device = device };
        if (precision is not null) config = config with { Precision = precision };
        // The checkpoint is checked before the experiment opens its data, which may mean a download.
        var state = Checkpoint.Load(Path.Combine(runDir, Checkpoint.FileName));
        if (state.ConfigJson != config.ModelIdentity())
            throw new UdmException($"the checkpoint in {runDir} was written for a different config than its config.json; restore the matching config.json or retrain.");
        var standIns = forSampling ? DataCard.StandInsUnlessOnThisMachine(runDir, config.Data) : null;
        var experiment = new Experiment(config, progress, standIns) { RunDirectory = runDir };
        experiment.UseWeights(state);
        return experiment;
    }

    /// <summary>
    /// Puts the EMA weights of another checkpoint of this run into the network, e.g. one kept along
    /// training (<see cref="Checkpoint.Kept"/>), so that one loaded experiment samples each in turn.
    /// </summary>
    public void LoadCheckpoint(string checkpoint)
    {
        var state = Checkpoint.Load(checkpoint);
        if (state.ConfigJson != Config.ModelIdentity())
            throw new UdmException($"the checkpoint {checkpoint} was written for a different config than this run's; give a checkpoint of the same run.");
        UseWeights(state);
    }

    private void UseWeights(CheckpointState state)
    {
        Trainer.LoadWeights(Model.Network, state.Ema, "EMA");
        Step = state.Step;
        Model.WeightsChanged(RunDirectory, state.Step);
    }

    /// <summary>
    /// Trains into <paramref name="runDir"/>. With <paramref name="resume"/>, continues exactly from
    /// the checkpoint there (the loss sequence equals that of an uninterrupted run). Writes
    /// config.json, checkpoint.udm, loss.csv, loss.png, TensorBoard scalars and the session's wall
    /// time (<see cref="RunRecords.TrainingFile"/>, with <paramref name="command"/>, the command line
    /// that started it, if given). Afterwards the network holds the EMA weights, ready to sample.
    /// </summary>
    public TrainingOutcome Train(string runDir, bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default, string? command = null)
    {
        string checkpointPath = Path.Combine(runDir, Checkpoint.FileName);
        bool hasCheckpoint = File.Exists(checkpointPath);
        if (hasCheckpoint && !resume)
            throw new UdmException($"{runDir} already holds a checkpoint; resume it, or train into another folder.") { Subject = "resume" };
        if (resume && !hasCheckpoint)
            throw new UdmException($"there is no checkpoint in {runDir} to resume; train without resuming first.") { Subject = "resume" };
        Directory.CreateDirectory(runDir);
        using var runLock = RunLock.Acquire(runDir);
        var trainer = CreateTrainer(Config.Training);
        if (resume) trainer.Restore(Checkpoint.Load(checkpointPath));
        else File.Delete(Path.Combine(runDir, Files.Gamma)); // a Γ table left by an earlier model of the same step count
        // A resumed run's new options (learning rate, steps) reach config.json only with the first
        // checkpoint trained under them, so a run that stops before it (a NaN) keeps its config.
        string configPath = Path.Combine(runDir, Files.Config);
        bool configWritten = !resume;
        if (!resume) AtomicFile.WriteAllText(configPath, Config.ToJson());
        if (!resume || !File.Exists(Path.Combine(runDir, DataCard.FileName))) DataCard.Of(Config.Data, Opened).Save(runDir);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var session = new TrainingSession(DateTime.UtcNow, trainer.Step, trainer.Step, 0, Precisions.Name(Precision), torch.get_num_threads(), Platform.CpuDescription(), command);
        trainer.OnCheckpoint = dir =>
        {
            if (!configWritten) AtomicFile.WriteAllText(configPath, Config.ToJson());
            configWritten = true;
            WriteLossFiles(dir, trainer.Losses);
            RunRecords.Record(dir, session with { LastStep = trainer.Step, Seconds = Math.Round(clock.Elapsed.TotalSeconds, 3) });
        };
        var outcome = trainer.Run(runDir, progress, cancel, new TensorBoardLog(Path.Combine(runDir, Files.TensorBoard)));
        trainer.Ema.CopyTo();
        trainer.Ema.Dispose();
        Model.Network.eval();
        RunDirectory = runDir;
        Step = trainer.Step;
        Model.WeightsChanged(runDir, Step);
        return outcome;
    }

    /// <summary>A trainer for this run's network and loss with the given optimisation settings (no files written).</summary>
    public Trainer CreateTrainer(TrainingOptions options) =>
        new(Model.Network, Model.Loss, Data, options, Config.ModelIdentity(), Device);

    /// <summary>Draws <paramref name="count"/> samples with any sampler of the run's family.</summary>
    public Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null) => Model.Sample(request, count, seed, options);

    /// <summary>The per-step training losses a run folder's loss.csv holds (written at every checkpoint).</summary>
    public static IReadOnlyList<float> ReadLosses(string runDir)
    {
        string path = Path.Combine(runDir, Files.LossCsv);
        if (!File.Exists(path))
            throw new UdmException($"{runDir} has no {Files.LossCsv}: name a run folder written by `udm train`.");
        return File.ReadLines(path).Skip(1).Where(l => l.Length > 0)
            .Select(l => float.Parse(l[(l.IndexOf(',') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).ToList();
    }

    private static void WriteLossFiles(string runDir, IReadOnlyList<float> losses)
    {
        AtomicFile.WriteAllText(Path.Combine(runDir, Files.LossCsv),
            "step,loss\n" + string.Join("\n", losses.Select((l, i) => FormattableString.Invariant($"{i + 1},{l:R}"))) + "\n");
        Plots.LossCurve(Path.Combine(runDir, Files.LossPng), losses);
    }

    private static Device ParseDevice(string name) => name.ToLowerInvariant() switch
    {
        "cpu" => torch.CPU,
        "cuda" when torch.cuda.is_available() => torch.CUDA,
        "cuda" => throw new UdmException("device \"cuda\" is not available on this machine (no CUDA libtorch); use the cpu device.") { Subject = "device" },
        _ => throw new UdmException($"unknown device \"{name}\": use cpu or cuda.") { Subject = "device" },
    };
}
