using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>Optimisation settings shared by every family.</summary>
/// <param name="Steps">Total optimizer steps.</param>
/// <param name="BatchSize">Samples per step.</param>
/// <param name="LearningRate">Peak AdamW learning rate.</param>
/// <param name="WarmupSteps">Linear warm-up from 0 to the peak rate.</param>
/// <param name="WeightDecay">AdamW weight decay.</param>
/// <param name="GradClip">Global gradient-norm clip (0 disables it).</param>
/// <param name="EmaDecay">Decay of the exponential moving average of the weights used for sampling.</param>
/// <param name="Seed">Seeds initialisation, batches, levels and noise: the same seed gives the same run.</param>
/// <param name="CheckpointEvery">Steps between checkpoints (one is always written at the end).</param>
/// <param name="LogEvery">Steps between TensorBoard scalars.</param>
/// <param name="Decay">After warm-up: keep the rate constant, or decay it to 0 along a half cosine.</param>
/// <param name="KeepEvery">Steps between checkpoints kept as copies in <see cref="Checkpoint.KeptFolder"/> (0 keeps none), for a metric's curve over training.</param>
public sealed record TrainingOptions(
    int Steps = 10_000,
    int BatchSize = 512,
    double LearningRate = 1e-3,
    int WarmupSteps = 200,
    double WeightDecay = 0.0,
    double GradClip = 1.0,
    double EmaDecay = 0.999,
    long Seed = 0,
    int CheckpointEvery = 2000,
    int LogEvery = 50,
    LearningRateDecay Decay = LearningRateDecay.Cosine,
    // Left out of the JSON when 0, so that configs and the checkpoints' model identity written before it existed stay the same.
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)] int KeepEvery = 0)
{
    /// <summary>Throws a one-line <see cref="UdmException"/> for a setting no training can use.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message) { if (!ok) throw new UdmException(message); }
        Require(Steps >= 0, $"training steps must be 0 or more, got {Steps}.");
        Require(BatchSize >= 1, $"batch size must be at least 1, got {BatchSize}.");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"the learning rate must be positive, got {LearningRate}.");
        Require(WarmupSteps >= 0, $"warm-up steps must be 0 or more, got {WarmupSteps}.");
        Require(WeightDecay >= 0, $"weight decay must be 0 or more, got {WeightDecay}.");
        Require(GradClip >= 0, $"the gradient clip must be 0 (off) or positive, got {GradClip}.");
        Require(EmaDecay >= 0 && EmaDecay < 1, $"the EMA decay must lie in [0, 1), got {EmaDecay}.");
        Require(CheckpointEvery >= 1, $"checkpointEvery must be at least 1, got {CheckpointEvery}.");
        Require(LogEvery >= 1, $"logEvery must be at least 1, got {LogEvery}.");
        Require(KeepEvery >= 0 && (KeepEvery == 0 || KeepEvery % CheckpointEvery == 0),
            $"--keep-every (keepEvery) keeps checkpoints, so it must be 0 or a multiple of the checkpoint interval (checkpointEvery = {CheckpointEvery}), got {KeepEvery}.");
    }
}

/// <summary>The learning-rate schedule after warm-up.</summary>
[System.Text.Json.Serialization.JsonConverter(typeof(System.Text.Json.Serialization.JsonStringEnumConverter<LearningRateDecay>))]
public enum LearningRateDecay
{
    /// <summary>Constant at the peak rate.</summary>
    Constant,
    /// <summary>Half-cosine decay from the peak rate to 0 at the last step.</summary>
    Cosine,
}

/// <summary>Reported after every training step.</summary>
public readonly record struct TrainingProgress(long Step, long TotalSteps, float Loss, double LearningRate);

/// <summary>How a training run ended.</summary>
public enum TrainingOutcome
{
    /// <summary>All steps were taken.</summary>
    Completed,
    /// <summary>Cancelled (Ctrl-C); a checkpoint was saved first.</summary>
    Interrupted,
}

/// <summary>
/// The exponential moving average of a network's parameters, θ̄ ← d·θ̄ + (1 − d)·θ after every
/// step, kept as a shadow beside the one network (as diffusers' EMAModel): <see cref="Store"/> the
/// trained weights, <see cref="CopyTo"/> the average into the network for sampling or evaluation,
/// and <see cref="Restore"/> the trained weights to continue training.
/// </summary>
public sealed class EmaShadow : IDisposable
{
    private readonly TorchSharp.Modules.Parameter[] _parameters;
    private readonly Tensor[] _shadow;
    private Tensor[]? _stored;

    /// <summary>A shadow of <paramref name="network"/>'s parameters, starting equal to them.</summary>
    public EmaShadow(nn.Module network)
    {
        _parameters = network.parameters().ToArray();
        _shadow = Snapshot();
    }

    /// <summary>Copies of the network's current parameters, outside any dispose scope.</summary>
    private Tensor[] Snapshot()
    {
        using var noGrad = torch.no_grad();
        return [.. _parameters.Select(p => TensorCopies.Keep(p))];
    }

    /// <summary>θ̄ ← d·θ̄ + (1 − d)·θ for every parameter.</summary>
    public void Update(double decay)
    {
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _shadow.Length; i++) _shadow[i].mul_(decay).add_(_parameters[i], alpha: 1 - decay);
    }

    /// <summary>Keeps a copy of the network's current (trained) parameters for <see cref="Restore"/>.</summary>
    public void Store()
    {
        Free(_stored);
        _stored = Snapshot();
    }

    /// <summary>Writes the average into the network's parameters.</summary>
    public void CopyTo() => Assign(_shadow);

    /// <summary>Puts back the parameters kept by <see cref="Store"/>.</summary>
    public void Restore()
    {
        if (_stored is null) throw new InvalidOperationException("Restore needs a Store first.");
        Assign(_stored);
        Free(_stored);
        _stored = null;
    }

    /// <summary>Store, then CopyTo; disposing the result restores the trained weights.</summary>
    public IDisposable SwapIn()
    {
        Store();
        CopyTo();
        return new Swap(this);
    }

    /// <summary>Takes the network's current parameters as the average (after loading an EMA checkpoint into it).</summary>
    public void CopyFrom()
    {
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _shadow.Length; i++) _shadow[i].copy_(_parameters[i]);
    }

    private void Assign(Tensor[] values)
    {
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _parameters.Length; i++) _parameters[i].copy_(values[i]);
    }

    private static void Free(Tensor[]? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors) t.Dispose();
    }

    /// <summary>Frees the shadow (and any stored copy).</summary>
    public void Dispose()
    {
        Free(_shadow);
        Free(_stored);
        _stored = null;
    }

    private sealed class Swap(EmaShadow owner) : IDisposable
    {
        public void Dispose() => owner.Restore();
    }
}

/// <summary>
/// The one training loop: AdamW with linear warm-up, gradient clipping, an EMA shadow of the
/// weights, periodic atomic checkpoints and exact resume. The family supplies only the loss of a
/// batch and its one network.
/// </summary>
public sealed class Trainer
{
    private readonly nn.Module _network;
    private readonly Func<Tensor, Tensor?, Generator, Tensor> _loss;
    private readonly IDataSource _data;
    private readonly string _configJson;
    private readonly Device _device;
    private readonly TorchSharp.Modules.AdamW _optimizer;
    private readonly Generator _generator;
    private readonly List<float> _losses = [];

    /// <summary>Creates a trainer of <paramref name="network"/>; its EMA shadow starts equal to it.</summary>
    public Trainer(nn.Module network, Func<Tensor, Generator, Tensor> loss, IDataSource data,
        TrainingOptions options, string configJson, Device? device = null)
        : this(network, (x0, _, generator) => loss(x0, generator), data, options, configJson, device)
    {
    }

    /// <summary>
    /// Creates a trainer whose loss also receives the batch's labels: int64 [B] when
    /// <paramref name="data"/> is an <see cref="ILabeledDataSource"/>, otherwise null.
    /// </summary>
    public Trainer(nn.Module network, Func<Tensor, Tensor?, Generator, Tensor> loss, IDataSource data,
        TrainingOptions options, string configJson, Device? device = null)
    {
        options.Validate();
        _network = network;
        _loss = loss;
        _data = data;
        _configJson = configJson;
        _device = device ?? torch.CPU;
        Options = options;
        _optimizer = optim.AdamW(network.parameters(), lr: options.LearningRate, weight_decay: options.WeightDecay);
        _generator = new Generator((ulong)options.Seed, _device);
        Ema = new EmaShadow(network);
    }

    /// <summary>The EMA shadow of the network's weights (swap it in to sample).</summary>
    public EmaShadow Ema { get; }

    /// <summary>The optimisation settings (validated when set).</summary>
    public TrainingOptions Options
    {
        get => _options;
        set
        {
            value.Validate();
            _options = value;
        }
    }

    private TrainingOptions _options = null!;

    /// <summary>Steps taken so far.</summary>
    public long Step { get; private set; }

    /// <summary>The loss of every step so far.</summary>
    public IReadOnlyList<float> Losses => _losses;

    /// <summary>Called after every checkpoint write with the run folder (for loss curves and logs).</summary>
    public Action<string>? OnCheckpoint { get; set; }

    /// <summary>Restores a checkpoint: weights, EMA, optimizer, step, generator and loss history.</summary>
    public void Restore(CheckpointState state)
    {
        if (state.ConfigJson != _configJson)
            throw new UdmException("the checkpoint was written for a different configuration; resume with the run's own config (see config.json in the run folder) or start a new run folder.");
        LoadWeights(_network, state.Ema, "EMA");
        Ema.CopyFrom();
        LoadWeights(_network, state.Model, "model");
        using (var reader = new BinaryReader(new MemoryStream(state.Optimizer))) _optimizer.load_state_dict(reader);
        _generator.set_state(torch.tensor(state.Rng, dtype: ScalarType.Byte));
        Step = state.Step;
        _losses.Clear();
        _losses.AddRange(state.Losses);
    }

    /// <summary>The current state, as a checkpoint would hold it.</summary>
    public CheckpointState Capture()
    {
        using var rng = _generator.get_state();
        byte[] ema;
        using (Ema.SwapIn()) ema = Serialize(w => _network.save(w));
        return new CheckpointState(Step, _configJson, Serialize(w => _network.save(w)), ema,
            Serialize(w => _optimizer.save_state_dict(w)), rng.bytes.ToArray(), [.. _losses]);
    }

    /// <summary>
    /// Trains until <see cref="TrainingOptions.Steps"/>, writing checkpoints to
    /// <paramref name="runDir"/> (if not null). Cancellation saves a checkpoint and returns
    /// <see cref="TrainingOutcome.Interrupted"/>. A non-finite loss throws a
    /// <see cref="UdmException"/> and writes nothing, so the last good checkpoint stays intact.
    /// </summary>
    public TrainingOutcome Run(string? runDir, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default,
        TensorBoardLog? log = null)
    {
        _network.train();
        var parameters = _network.parameters().ToArray();
        while (Step < Options.Steps)
        {
            if (cancel.IsCancellationRequested)
            {
                if (runDir is not null) SaveCheckpoint(runDir);
                return TrainingOutcome.Interrupted;
            }
            using var scope = torch.NewDisposeScope();
            double lr = LearningRateAt(Step);
            foreach (var group in _optimizer.ParamGroups) group.LearningRate = lr;
            var (x0, labels) = _data is ILabeledDataSource labeled
                ? labeled.SampleLabeled(Options.BatchSize, _generator, _device)
                : (_data.Sample(Options.BatchSize, _generator, _device), null);
            _optimizer.zero_grad();
            var loss = _loss(x0, labels, _generator);
            float value = loss.item<float>();
            if (!float.IsFinite(value))
            {
                string kept = runDir is not null && File.Exists(Path.Combine(runDir, Checkpoint.FileName))
                    ? "nothing was saved, so the last checkpoint is intact; lower the learning rate or the gradient clip, then resume"
                    : "no checkpoint had been written yet; lower the learning rate or the gradient clip and train again";
                throw new UdmException($"the loss became {value} at step {Step + 1}; {kept}.") { Subject = "learningRate" };
            }
            loss.backward();
            if (Options.GradClip > 0) nn.utils.clip_grad_norm_(parameters, Options.GradClip);
            _optimizer.step();
            Ema.Update(Options.EmaDecay);
            Step++;
            _losses.Add(value);
            progress?.Report(new TrainingProgress(Step, Options.Steps, value, lr));
            if (log is not null && Step % Options.LogEvery == 0)
            {
                log.Scalar("train/loss", value, Step);
                log.Scalar("train/lr", (float)lr, Step);
            }
            if (runDir is not null && (Step % Options.CheckpointEvery == 0 || Step == Options.Steps)) SaveCheckpoint(runDir);
            if (Step % ReleaseMemoryEvery == 0) Platform.ReleaseFreeMemory();
        }
        return TrainingOutcome.Completed;
    }

    /// <summary>
    /// Steps between returns of free heap memory to the OS. With glibc trimming disabled (the
    /// allocator fix), the heap of a toy MLP run was measured growing by ~200 KB per step although
    /// no tensor leaks (1.5 GB after 2k steps, 2.2 GB plateau); a malloc_trim every 500 steps keeps
    /// it bounded at no measurable cost in step time.
    /// </summary>
    public const int ReleaseMemoryEvery = 500;

    /// <summary>Linear warm-up to the peak rate, then constant or cosine decay (see <see cref="TrainingOptions.Decay"/>).</summary>
    public double LearningRateAt(long step)
    {
        if (Options.WarmupSteps > 0 && step < Options.WarmupSteps) return Options.LearningRate * (step + 1) / Options.WarmupSteps;
        if (Options.Decay == LearningRateDecay.Constant) return Options.LearningRate;
        double progress = Math.Clamp((double)(step - Options.WarmupSteps) / Math.Max(1, Options.Steps - Options.WarmupSteps), 0, 1);
        return Options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }

    private void SaveCheckpoint(string runDir)
    {
        var state = Capture();
        Checkpoint.Save(Path.Combine(runDir, Checkpoint.FileName), state);
        if (Options.KeepEvery > 0 && Step % Options.KeepEvery == 0)
        {
            string kept = Checkpoint.KeptPath(runDir, Step);
            Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
            Checkpoint.Save(kept, state);
        }
        OnCheckpoint?.Invoke(runDir);
    }

    internal static void LoadWeights(nn.Module module, byte[] weights, string what)
    {
        try
        {
            using var reader = new BinaryReader(new MemoryStream(weights));
            module.load(reader, strict: true);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or IOException)
        {
            throw new UdmException($"the checkpoint's {what} weights do not fit this network ({e.Message.Split('\n')[0]}); the checkpoint belongs to another configuration.", e);
        }
    }

    private static byte[] Serialize(Action<BinaryWriter> save)
    {
        var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true)) save(writer);
        return stream.ToArray();
    }
}

/// <summary>TensorBoard scalars through TorchSharp's SummaryWriter.</summary>
public sealed class TensorBoardLog(string folder)
{
    private readonly TorchSharp.Modules.SummaryWriter _writer = torch.utils.tensorboard.SummaryWriter(folder);

    /// <summary>Writes one scalar.</summary>
    public void Scalar(string tag, float value, long step) => _writer.add_scalar(tag, value, (int)step);
}
