using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// A UDM forward process <c>x_t = F_t(x_0, ε)</c>, <c>ε ~ q(ε)</c>, for integer levels
/// <c>t = 0..T</c>. At t = 0 the data is untouched; at T it is fully destroyed and x_T can be
/// drawn from <see cref="SamplePrior"/>. Levels are per-sample int64 tensors of shape [B].
/// </summary>
/// <remarks>
/// A random choice of F_t that holds for a whole trajectory (the centre of a random mask) is part
/// of ε too, drawn apart by <see cref="SampleTrajectoryNoise"/> and fixed by
/// <see cref="WithTrajectoryNoise"/>: training draws it per batch, a sampler once per trajectory,
/// so that re-corrupt and invert steps keep it.
/// </remarks>
public interface IForwardProcess
{
    /// <summary>The number of levels T; valid levels are 0..T.</summary>
    int Levels { get; }

    /// <summary>Draws ε ~ q(ε) for a batch shaped like <paramref name="x0"/>.</summary>
    Tensor SampleNoise(Tensor x0, Generator? generator);

    /// <summary>F_t(x_0, ε) with a per-sample level <paramref name="t"/> (int64, shape [B]).</summary>
    Tensor Corrupt(Tensor x0, Tensor t, Tensor noise);

    /// <summary>Draws x_T from the prior, for a batch of the given shape.</summary>
    Tensor SamplePrior(long[] shape, Device device, Generator? generator);

    /// <summary>True when <see cref="InferNoise"/> is available (F_t invertible in ε).</summary>
    bool IsInvertible { get; }

    /// <summary>F_t⁻¹(x_0, x_t): the noise that takes x_0 to x_t at level t.</summary>
    Tensor InferNoise(Tensor x0, Tensor xt, Tensor t);

    /// <summary>
    /// The known part of x at level <paramref name="s"/> when sampling with a fixed part
    /// (inpainting, infilling). By default the known data is pushed through F_s with fresh noise,
    /// as continuous families need; token families override this to keep the known tokens.
    /// </summary>
    Tensor CorruptKnown(Tensor known, int s, Generator? generator) =>
        s == 0 ? known : Corrupt(known, ForwardProcessExtensions.LevelTensor(s, known.shape[0], known.device), SampleNoise(known, generator));

    /// <summary>Draws the part of ε that holds for a whole trajectory of <paramref name="batch"/> samples, or null when F_t has none.</summary>
    Tensor? SampleTrajectoryNoise(long batch, Device device, Generator? generator) => null;

    /// <summary>This process with the trajectory part of ε fixed to <paramref name="trajectoryNoise"/> (null: unchanged).</summary>
    IForwardProcess WithTrajectoryNoise(Tensor? trajectoryNoise) => this;
}

/// <summary>Helpers shared by every forward process.</summary>
public static class ForwardProcessExtensions
{
    /// <summary>A per-sample level tensor filled with one level.</summary>
    public static Tensor LevelTensor(int t, long batch, Device device) =>
        torch.full(batch, t, dtype: ScalarType.Int64, device: device);

    /// <summary>F_t(x_0, ε) with one level for the whole batch.</summary>
    public static Tensor CorruptAt(this IForwardProcess process, Tensor x0, int t, Tensor noise) =>
        process.Corrupt(x0, LevelTensor(t, x0.shape[0], x0.device), noise);

    /// <summary>F_t⁻¹(x_0, x_t) with one level for the whole batch.</summary>
    public static Tensor InferNoiseAt(this IForwardProcess process, Tensor x0, Tensor xt, int t)
    {
        if (!process.IsInvertible)
            throw new NotSupportedException($"{process.GetType().Name} cannot infer its noise; use the re-corrupt kernel.");
        return process.InferNoise(x0, xt, LevelTensor(t, x0.shape[0], x0.device));
    }
}
