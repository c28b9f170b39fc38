using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// Deterministic DDIM inversion, data → noise: the DDIM update run upwards along an ascending
/// grid s_0 &lt; s_1 &lt; … (usually the reverse of a sampling grid, starting at 0). A step s → t
/// asks the model for ε̂ = ε̂(x_s, t), i.e. the noise prediction at the target level t evaluated at
/// the current point (the convention of diffusers' DDIMInverseScheduler), then sets
/// <code>x̂_0 = (x_s − β̄_s ε̂)/ᾱ_s,   x_t = ᾱ_t x̂_0 + β̄_t ε̂.</code>
/// Generating back is the ordinary <see cref="Sampler{TPosterior}"/> with <see cref="GaussianKernels.Ddim"/>
/// on the reversed grid; the round trip is exact only in the limit of small steps, because the
/// sampler evaluates ε̂ at x_t and the inversion at x_s.
/// </summary>
public static class DdimInversion
{
    /// <summary>
    /// Runs the inversion from <paramref name="x"/>, taken to be at level <paramref name="ascending"/>[0],
    /// up to level <paramref name="ascending"/>[^1]. The input is not disposed; the result is a new tensor.
    /// ε̂ is the model's own <see cref="GaussianPosterior.RawNoise"/> (before any clipping of x̂_0).
    /// </summary>
    /// <exception cref="UdmException">The grid is not strictly ascending within 0..T, or has fewer than two levels.</exception>
    public static Tensor Invert(GaussianProcess process, IPosteriorModel<GaussianPosterior> model, Tensor x, IReadOnlyList<int> ascending)
    {
        Validate(ascending, process.Levels);
        var schedule = process.Schedule;
        using var noGrad = torch.no_grad();
        var current = x;
        for (int i = 0; i + 1 < ascending.Count; i++)
        {
            using var scope = torch.NewDisposeScope();
            int s = ascending[i], t = ascending[i + 1];
            var eps = model.Predict(current, ForwardProcessExtensions.LevelTensor(t, current.shape[0], current.device)).RawNoise;
            var x0 = GaussianProcess.CleanOf(current, eps, schedule.Signal(s), schedule.Noise(s));
            var next = (x0 * schedule.Signal(t) + eps * schedule.Noise(t)).MoveToOuterDisposeScope();
            if (!ReferenceEquals(current, x)) current.Dispose();
            current = next;
        }
        return ReferenceEquals(current, x) ? x.clone() : current;
    }

    /// <summary>The ascending inversion grid that undoes a descending sampling grid (e.g. from <see cref="TimeGrid.Create"/>).</summary>
    public static int[] AscendingGrid(IReadOnlyList<int> samplingGrid) => samplingGrid.Reverse().ToArray();

    private static void Validate(IReadOnlyList<int> ascending, int levels)
    {
        if (ascending.Count < 2)
            throw new UdmException("a DDIM inversion grid needs at least two levels, e.g. \"0,500,1000\".");
        for (int i = 0; i < ascending.Count; i++)
        {
            if (ascending[i] < 0 || ascending[i] > levels)
                throw new UdmException($"inversion grid level {ascending[i]} is outside 0..{levels}; give levels of this process.");
            if (i > 0 && ascending[i] <= ascending[i - 1])
                throw new UdmException($"an inversion grid must be strictly ascending, but {ascending[i - 1]} is followed by {ascending[i]}.");
        }
    }
}
