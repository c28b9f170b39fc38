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
    private GammaTable? _gamma;

    private Experiment(ExperimentConfig config)
    {
        if (config.Family.ToLowerInvariant() != "gaussian")
            throw new UdmException($"family \"{config.Family}\" is not available; this version trains \"gaussian\".");
        Config = config;
        Device = ParseDevice(config.Device);
        Data = ToyData.Create(config.Data);
        Process = new GaussianProcess(NoiseSchedule.Create(config.Schedule));
        if (Data.SampleShape.Length != 1) throw new UdmException($"data set {Data.Name} is not flat; the MLP denoiser needs vectors.");
        int dimension = (int)Data.SampleShape[0];
        lock (InitLock)
        {
            // Network initialisation draws from the global generator; seed it so a seed fixes the whole run.
            torch.manual_seed(config.Training.Seed);
            Network = new MlpDenoiser(dimension, config.Network);
            EmaNetwork = new MlpDenoiser(dimension, config.Network);
        }
        Network.to(Device);
        EmaNetwork.to(Device);
        EmaNetwork.eval();
        TrainingModel = new GaussianPosteriorModel(Process, Network, config.Prediction, config.ClipSample);
        Model = new GaussianPosteriorModel(Process, EmaNetwork, config.Prediction, config.ClipSample);
    }

    /// <summary>The configuration.</summary>
    public ExperimentConfig Config { get; }

    /// <summary>The device tensors live on.</summary>
    public Device Device { get; }

    /// <summary>The training data.</summary>
    public IDataSource Data { get; }

    /// <summary>The forward process.</summary>
    public GaussianProcess Process { get; }

    /// <summary>The network being trained.</summary>
    public MlpDenoiser Network { get; }

    /// <summary>The EMA copy of the network, used for sampling.</summary>
    public MlpDenoiser EmaNetwork { get; }

    /// <summary>The posterior model over the trained network (used by the loss).</summary>
    public GaussianPosteriorModel TrainingModel { get; }

    /// <summary>The posterior model over the EMA weights (used for sampling and evaluation).</summary>
    public GaussianPosteriorModel Model { get; }

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

    /// <summary>A fresh, untrained run.</summary>
    public static Experiment Create(ExperimentConfig config) => new(config);

    /// <summary>
    /// Loads a trained run folder (config.json and checkpoint.udm); sampling uses the EMA weights.
    /// <paramref name="device"/> overrides the device the run was trained on.
    /// </summary>
    public static Experiment Load(string runDir, string? device = null)
    {
        if (!Directory.Exists(runDir)) throw new UdmException($"run folder {runDir} does not exist; train one with `udm train --out {runDir}`.");
        var config = ExperimentConfig.Load(Path.Combine(runDir, Files.Config));
        if (device is not null) config = config with { Device = device };
        var experiment = new Experiment(config);
        var state = Checkpoint.Load(Path.Combine(runDir, Checkpoint.FileName));
        if (state.ConfigJson != config.ModelIdentity())
            throw new UdmException($"the checkpoint in {runDir} was written for a different config than its config.json; restore the matching config.json or retrain.");
        Trainer.LoadWeights(experiment.Network, state.Model, "model");
        Trainer.LoadWeights(experiment.EmaNetwork, state.Ema, "EMA");
        experiment.RunDirectory = runDir;
        experiment.Step = state.Step;
        return experiment;
    }

    /// <summary>
    /// Trains into <paramref name="runDir"/>. With <paramref name="resume"/>, continues exactly from
    /// the checkpoint there (the loss sequence equals that of an uninterrupted run). Writes
    /// config.json, checkpoint.udm, loss.csv, loss.png and TensorBoard scalars.
    /// </summary>
    public TrainingOutcome Train(string runDir, bool resume = false, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        string checkpointPath = Path.Combine(runDir, Checkpoint.FileName);
        bool hasCheckpoint = File.Exists(checkpointPath);
        if (hasCheckpoint && !resume)
            throw new UdmException($"{runDir} already holds a checkpoint; pass --resume to continue it, or choose another --out folder.");
        if (resume && !hasCheckpoint)
            throw new UdmException($"--resume: no checkpoint in {runDir}; train without --resume first.");
        Directory.CreateDirectory(runDir);
        var trainer = CreateTrainer(Config.Training);
        if (resume) trainer.Restore(Checkpoint.Load(checkpointPath));
        else File.Delete(Path.Combine(runDir, Files.Gamma)); // a Γ table left by an earlier model of the same step count
        AtomicFile.WriteAllText(Path.Combine(runDir, Files.Config), Config.ToJson());
        trainer.OnCheckpoint = dir => WriteLossFiles(dir, trainer.Losses);
        var outcome = trainer.Run(runDir, progress, cancel, new TensorBoardLog(Path.Combine(runDir, Files.TensorBoard)));
        RunDirectory = runDir;
        Step = trainer.Step;
        _gamma = null;
        return outcome;
    }

    /// <summary>A trainer for this run's network and loss with the given optimisation settings (no files written).</summary>
    public Trainer CreateTrainer(TrainingOptions options) =>
        new(Network, EmaNetwork, (x0, g) => DenoisingObjective.Loss(Process, TrainingModel, x0, g), Data, options, Config.ModelIdentity(), Device);

    /// <summary>
    /// The Γ table for Analytic-DPM, covering <paramref name="levels"/>: estimated by Monte Carlo
    /// over the training data (with the EMA model) where missing, and stored in the run folder.
    /// </summary>
    public GammaTable Gamma(IEnumerable<int> levels, int samplesPerLevel = 2000)
    {
        var needed = levels.Where(t => t > 0).ToArray();
        if (_gamma is null && RunDirectory is not null)
            _gamma = GammaTable.Load(Path.Combine(RunDirectory, Files.Gamma), Process.Steps, Step);
        _gamma ??= new GammaTable(Process.Steps);
        // A fixed seed: the table is a property of the model, not of the sampling seed.
        if (_gamma.EstimateMissing(Model, Process, Data, needed, samplesPerLevel, seed: 12345, Device) && RunDirectory is not null)
            _gamma.Save(Path.Combine(RunDirectory, Files.Gamma), Step);
        return _gamma;
    }

    /// <summary>Draws <paramref name="count"/> samples with the given sampler.</summary>
    public Tensor Sample(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
    {
        var gamma = spec.NeedsGamma ? Gamma(GaussianSampling.Grid(spec, Process.Steps)) : null;
        return GaussianSampling.Sample(Process, Model, gamma, spec, count, Data.SampleShape, new Generator((ulong)seed, Device), Device, options);
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
        "cuda" => throw new UdmException("device \"cuda\" is not available on this machine (no CUDA libtorch); use --device cpu."),
        _ => throw new UdmException($"unknown device \"{name}\": use cpu or cuda."),
    };
}
