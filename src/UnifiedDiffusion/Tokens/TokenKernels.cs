using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>Which masked positions the improved mask kernel fills first.</summary>
public enum FillOrder
{
    /// <summary>A uniformly random subset of the masked positions (exact with one position per step).</summary>
    Random,
    /// <summary>The positions whose drawn token has the highest probability (MaskGIT-style); not exact.</summary>
    Confident,
}

/// <summary>
/// The improved mask kernel: keep every unmasked token, fill (masks in x_t) − s of the masked
/// positions with tokens drawn from q(x_0,i | x_t), and leave the others masked. The number of
/// masks is read from x_t per row, so x_s has exactly s masks even when a fixed part made the
/// row's level differ from the grid's. With s = t − 1 and random order this is the chain rule.
/// </summary>
public sealed class MaskImproveKernel(FillOrder order = FillOrder.Random) : IReverseKernel<CategoricalPosterior>
{
    /// <summary>The fill order.</summary>
    public FillOrder Order { get; } = order;

    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, CategoricalPosterior posterior, Generator? generator)
    {
        var mask = process as MaskProcess ?? throw new ArgumentException($"the mask kernel needs a {nameof(MaskProcess)}, got {process.GetType().Name}", nameof(process));
        using var scope = torch.NewDisposeScope();
        var masked = xt.eq(mask.MaskId);
        var fill = (masked.sum(1, type: ScalarType.Int64) - step.S).clamp_min(0);
        var drawn = posterior.Draw(generator);
        // Smallest key first: random keys, or minus the drawn token's probability.
        var keys = Order == FillOrder.Random
            ? torch.rand(masked.shape, dtype: ScalarType.Float64, device: xt.device, generator: generator)
            : -posterior.ProbabilityOf(drawn).to(ScalarType.Float64);
        keys = keys.masked_fill(masked.logical_not(), double.PositiveInfinity);
        var chosen = TokenProcess.ChosenPositions(keys, fill) & masked;
        return torch.where(chosen, drawn, xt).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The improved edit kernel (DESIGN.md): position i is wrong with probability
/// w_i = 1 − q(x_0,i = x_t,i | x_t); pick t − s positions with probability ∝ w_i without
/// replacement (Efraimidis–Spirakis keys u^(1/w)), or greedily the t − s largest w_i; draw each
/// new token from q(x_0,i | x_t) restricted to tokens ≠ x_t,i. Agreeing positions are kept. With
/// exact marginals and one position per step, this is the exact reverse step of the edit process.
/// </summary>
public sealed class EditImproveKernel(bool greedy = false) : IReverseKernel<CategoricalPosterior>
{
    private const double Floor = 1e-12;

    /// <summary>True: repair the least-trusted positions; false: sample them ∝ w_i.</summary>
    public bool Greedy { get; } = greedy;

    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, CategoricalPosterior posterior, Generator? generator)
    {
        var edit = process as EditProcess ?? throw new ArgumentException($"the edit kernel needs an {nameof(EditProcess)}, got {process.GetType().Name}", nameof(process));
        using var scope = torch.NewDisposeScope();
        var p = posterior.Probabilities.to(ScalarType.Float64);
        var wrong = (1 - p.gather(2, xt.unsqueeze(2)).squeeze(2)).clamp_min(Floor);
        Tensor keys = Greedy
            ? -wrong
            : -(torch.rand(wrong.shape, dtype: ScalarType.Float64, device: xt.device, generator: generator).log() / wrong); // −log(u)/w: smallest = largest u^(1/w)
        var repair = TokenProcess.ChosenPositions(keys, ForwardProcessExtensions.Levels(step.T - step.S, xt.shape[0], xt.device));
        // q restricted to tokens ≠ x_t,i and to regular tokens; uniform over them if q gives them no mass.
        var allowed = torch.ones_like(p, dtype: ScalarType.Bool);
        allowed[.., .., ..edit.FirstRegularToken] = false;
        allowed = allowed.scatter(2, xt.unsqueeze(2), torch.zeros_like(xt.unsqueeze(2), dtype: ScalarType.Bool));
        var restricted = p * allowed;
        var mass = restricted.sum(2, keepdim: true);
        restricted = torch.where(mass.gt(Floor), restricted, allowed.to(ScalarType.Float64));
        var drawn = new CategoricalPosterior(restricted / restricted.sum(2, keepdim: true)).Draw(generator);
        return torch.where(repair, drawn, xt).MoveToOuterDisposeScope();
    }
}
