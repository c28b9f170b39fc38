using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>One reverse step t → s inside a sampling grid.</summary>
/// <param name="T">The level the step starts from.</param>
/// <param name="S">The level the step lands on (S &lt; T).</param>
/// <param name="Index">0 for the first step of the grid.</param>
/// <param name="Grid">The whole descending grid, ending at 0.</param>
public readonly record struct ReverseStep(int T, int S, int Index, IReadOnlyList<int> Grid)
{
    /// <summary>Number of steps in the grid.</summary>
    public int Count => Grid.Count - 1;

    /// <summary>True for the step that lands on t = 0.</summary>
    public bool IsFinal => S == 0;

    /// <summary>True for the step that lands on the lowest nonzero level of the grid.</summary>
    public bool LandsOnLowestLevel => Index + 2 < Grid.Count && Grid[Index + 2] == 0;
}

/// <summary>
/// A reverse kernel p(x_s | x_t, x_0 = x̂_0) that keeps the forward marginals. It receives the
/// model's posterior rather than a single x̂_0, so that family kernels can use the whole
/// distribution (Analytic-DPM's variance, token marginals), and the trajectory's
/// <see cref="SamplingContext"/> for its random draws. Kernels hold no per-trajectory state.
/// </summary>
public interface IReverseKernel<in TPosterior> where TPosterior : IPosterior
{
    /// <summary>Moves x_t to x_s given the posterior q(x_0 | x_t).</summary>
    Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, TPosterior posterior, SamplingContext context);
}

/// <summary>Re-corrupt: x_s = F_s(x̂_0, fresh ε). Valid for every family, and the weakest.</summary>
public sealed class ReCorruptKernel : IReverseKernel<IPosterior>
{
    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, IPosterior posterior, SamplingContext context)
    {
        var x0 = posterior.Draw(context.Generator);
        return step.IsFinal ? x0 : process.CorruptAt(x0, step.S, process.SampleNoise(x0, context.Generator));
    }
}

/// <summary>
/// Invert: x_s = F_s(x̂_0, F_t⁻¹(x̂_0, x_t)). The noise is inferred, not redrawn, so the step is
/// deterministic given x̂_0 (DDIM for Gaussian processes, TACoS for cold ones).
/// </summary>
public sealed class InvertKernel : IReverseKernel<IPosterior>
{
    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, IPosterior posterior, SamplingContext context)
    {
        var x0 = posterior.Draw(context.Generator);
        if (step.IsFinal) return x0;
        return process.CorruptAt(x0, step.S, process.InferNoiseAt(x0, xt, step.T));
    }
}

/// <summary>
/// Interpolate (Gaussian ε only): x_s = F_s(x̂_0, √(1−σ̃²)·F_t⁻¹(x̂_0, x_t) + σ̃·ε). σ̃ = 0 is
/// <see cref="InvertKernel"/>; σ̃ = 1 is <see cref="ReCorruptKernel"/>. σ̃ may depend on (t, s):
/// DDPM and DDIM-η are this kernel with a particular σ̃.
/// </summary>
public sealed class InterpolateKernel(Func<int, int, double> noiseFraction) : IReverseKernel<IPosterior>
{
    /// <summary>A kernel with one σ̃ for every step.</summary>
    public InterpolateKernel(double noiseFraction) : this((_, _) => noiseFraction) { }

    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, IPosterior posterior, SamplingContext context)
    {
        var x0 = posterior.Draw(context.Generator);
        if (step.IsFinal) return x0;
        double fraction = noiseFraction(step.T, step.S);
        if (fraction < 0 || fraction > 1 || double.IsNaN(fraction))
            throw new ArgumentOutOfRangeException(nameof(noiseFraction), $"σ̃ = {fraction} at t={step.T}→s={step.S}; it must lie in [0, 1].");
        var inferred = process.InferNoiseAt(x0, xt, step.T);
        var noise = fraction == 0 ? inferred : inferred.mul(Math.Sqrt(1 - fraction * fraction)).add_(process.SampleNoise(x0, context.Generator).mul_(fraction));
        return process.CorruptAt(x0, step.S, noise);
    }
}

/// <summary>
/// A multistep kernel: an inner kernel (invert, or interpolate) applied to an extrapolated clean
/// estimate D = (1 + w)·x̂_0 − w·x̂_0' that also uses the previous step's x̂_0', with the weight
/// w(t', t, s) of the previous level t', this one and the next. The first step has no x̂_0' and is
/// the inner kernel itself; the step onto the lowest nonzero level is first order too (the DPM-Solver
/// code's lower_order_final), and the final step onto level 0 returns x̂_0. Nothing in it is Gaussian but the weights: for the Gaussian process with
/// w = 1/(2r), r = h'/h over λ = log(ᾱ/β̄), it is DPM-Solver++(2M) (Lu et al., 2022). The history
/// travels in <see cref="SamplingContext.History"/>.
/// </summary>
public sealed class MultistepKernel(IReverseKernel<IPosterior> inner, Func<int, int, int, double> weight) : IReverseKernel<IPosterior>
{
    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, IPosterior posterior, SamplingContext context)
    {
        var x0 = posterior.Draw(context.Generator);
        if (step.IsFinal) return inner.Step(process, xt, step, new PointPosterior(x0), context);
        // The step onto the lowest nonzero level is first order, as the DPM-Solver code's lower_order_final:
        // its h dwarfs the previous one there, and the extrapolation would overshoot.
        bool lowerOrderFinal = step.Index == step.Grid.Count - 3;
        var extrapolated = step.Index > 0 && !lowerOrderFinal && context.History.PreviousClean is { } previous
            ? Extrapolate(x0, previous, weight(step.Grid[step.Index - 1], step.T, step.S))
            : x0;
        context.History.Remember(x0);
        return inner.Step(process, xt, step, new PointPosterior(extrapolated), context);
    }

    /// <summary>D = (1 + w)·x̂_0 − w·x̂_0'.</summary>
    public static Tensor Extrapolate(Tensor clean, Tensor previousClean, double weight) => clean.mul(1 + weight).sub_(previousClean.mul(weight));
}
