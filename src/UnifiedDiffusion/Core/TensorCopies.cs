using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// Copies of tensors that outlive the dispose scope of the step that made them: the state that
/// multistep kernels, trajectory recorders and meters keep from one step to the next.
/// </summary>
public static class TensorCopies
{
    /// <summary>A detached copy of <paramref name="x"/> outside every dispose scope, on the CPU if <paramref name="toCpu"/>; the caller disposes it.</summary>
    public static Tensor Keep(Tensor x, bool toCpu = false)
    {
        using var scope = torch.NewDisposeScope();
        var detached = x.detach();
        return (toCpu ? detached.cpu() : detached).clone().DetachFromDisposeScope();
    }

    /// <summary>Puts a kept copy of <paramref name="value"/> in <paramref name="slot"/>, disposing the copy that was there.</summary>
    public static void Replace(ref Tensor? slot, Tensor value)
    {
        var copy = Keep(value);
        slot?.Dispose();
        slot = copy;
    }
}
