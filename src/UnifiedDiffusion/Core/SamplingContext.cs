using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// What a class-conditional network is asked for: class labels, with classifier-free guidance.
/// </summary>
/// <param name="Labels">Class labels, int64 [B]; the network's class count means "no label" (∅). Null: unconditional.</param>
/// <param name="Guidance">The guidance scale w ≥ 0 of (1 + w)·ε(y) − w·ε(∅); 0 is the conditional model alone.</param>
public sealed record Conditioning(Tensor? Labels, double Guidance = 0)
{
    /// <summary>The same conditioning for rows first..first+count of a batch of <paramref name="batch"/>.</summary>
    public Conditioning Slice(long first, long count, long batch) =>
        Labels is not null && Labels.shape[0] == batch && count < batch ? this with { Labels = Labels.narrow(0, first, count) } : this;
}

/// <summary>
/// The per-trajectory inputs of one sampling run, passed through <see cref="Sampler{TPosterior}.Run"/>
/// to <see cref="IPosteriorModel{TPosterior}.Predict"/> and <see cref="IReverseKernel{TPosterior}.Step"/>,
/// in the spirit of k-diffusion's <c>extra_args</c>. Models and kernels keep no per-trajectory state
/// of their own: whatever one trajectory needs travels here.
/// </summary>
public sealed record SamplingContext
{
    /// <summary>The generator of every random draw of the trajectory (prior, kernels, posterior draws).</summary>
    public Generator? Generator { get; init; }

    /// <summary>Class labels and guidance for a class-conditional network, or null.</summary>
    public Conditioning? Conditioning { get; init; }

    /// <summary>
    /// The part of ε that holds for the whole trajectory (a random mask centre), drawn by
    /// <see cref="IForwardProcess.SampleTrajectoryNoise"/>; null when the process has none. The
    /// sampler runs the process <see cref="IForwardProcess.WithTrajectoryNoise"/> gives for it.
    /// </summary>
    public Tensor? TrajectoryNoise { get; init; }

    /// <summary>What multistep kernels remember of this trajectory's earlier steps (a fresh one per context).</summary>
    public KernelHistory History { get; init; } = new();
}

/// <summary>
/// The memory of a multistep kernel along one trajectory: the previous step's x̂_0. It lives outside
/// every step's dispose scope and is released by <see cref="Clear"/> (the sampler clears it at the
/// start and end of each run).
/// </summary>
public sealed class KernelHistory
{
    private Tensor? _previousClean;

    /// <summary>The x̂_0 of the previous step, or null before the first.</summary>
    public Tensor? PreviousClean => _previousClean;

    /// <summary>Keeps a copy of <paramref name="clean"/> as the previous step's x̂_0 (replacing the older one).</summary>
    public void Remember(Tensor clean) => TensorCopies.Replace(ref _previousClean, clean);

    /// <summary>Forgets everything.</summary>
    public void Clear()
    {
        _previousClean?.Dispose();
        _previousClean = null;
    }
}
