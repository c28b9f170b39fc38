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
/// A token sampler: a kernel built with its process, or <c>data</c> (held-out sequences, the
/// reference row of a results table), which runs no kernel.
/// </summary>
/// <param name="Name">The sampler's name.</param>
/// <param name="Summary">What it is, for help text.</param>
/// <param name="Accepts">The options it takes.</param>
/// <param name="Aliases">Other names for it.</param>
/// <param name="Kernel">(process, confident order) → the kernel; null for <c>data</c>.</param>
public sealed record TokenSamplerEntry(string Name, string Summary, SamplerOption Accepts, IReadOnlyList<string> Aliases,
    Func<TokenProcess, bool, IReverseKernel<CategoricalPosterior>>? Kernel)
    : SamplerEntry(Name, Summary, Accepts, Aliases);

/// <summary>The token families' sampler registries.</summary>
public static class TokenSamplers
{
    /// <summary>
    /// A token family's samplers: its improved kernel under its own name (alias <c>improved</c>, the
    /// default), <c>recorrupt</c> (draw x̂_0 and corrupt it again: the baseline) and <c>data</c>.
    /// </summary>
    public static SamplerRegistry<TokenSamplerEntry> Create(string family, string improved, string summary) => new(family, improved,
        new(improved, summary, SamplerOption.Order, ["improved"], (process, confident) => process.ImprovedKernel(confident)),
        new("recorrupt", "draw x̂_0, corrupt it again (the baseline)", SamplerOption.None, [], (_, _) => new ReCorruptKernel()),
        new("data", "held-out sequences: the reference row", SamplerOption.None, [], null));
}

/// <summary>
/// The mask model's improved kernel, Gibbs-like filling: keep every unmasked token, fill (masks in
/// x_t) − s of the masked positions with tokens drawn from q(x_0,i | x_t), and leave the others
/// masked. The number of masks is read from x_t per row, so x_s has exactly s masks even when a
/// fixed part made the row's level differ from the grid's. With s = t − 1 and random order this
/// is the chain rule.
/// </summary>
public sealed class MaskFillKernel(MaskProcess process, FillOrder order = FillOrder.Random) : IReverseKernel<CategoricalPosterior>
{
    /// <summary>The fill order.</summary>
    public FillOrder Order { get; } = order;

    /// <inheritdoc />
    /// <remarks>Steps with the process the kernel was built with; the given one is the same mask process.</remarks>
    public Tensor Step(IForwardProcess trajectory, Tensor xt, ReverseStep step, CategoricalPosterior posterior, SamplingContext context)
    {
        var generator = context.Generator;
        using var scope = torch.NewDisposeScope();
        var masked = xt.eq(process.MaskId);
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
/// The edit model's improved kernel, weighted repair: position i is wrong with probability
/// w_i = 1 − q(x_0,i = x_t,i | x_t) (<see cref="EditProcess.RepairWeights"/>); pick t − s positions
/// with probability ∝ w_i without replacement (Efraimidis–Spirakis keys u^(1/w)), or greedily the
/// t − s largest w_i; draw each new token from q(x_0,i | x_t) restricted to tokens ≠ x_t,i.
/// Agreeing positions are kept. With exact marginals and one position per step, this is the exact
/// reverse step of the edit process.
/// </summary>
public sealed class EditRepairKernel(EditProcess process, bool greedy = false) : IReverseKernel<CategoricalPosterior>
{
    private const double Floor = 1e-12;

    /// <summary>True: repair the least-trusted positions; false: sample them ∝ w_i.</summary>
    public bool Greedy { get; } = greedy;

    /// <inheritdoc />
    /// <remarks>Steps with the process the kernel was built with; the given one is the same edit process.</remarks>
    public Tensor Step(IForwardProcess trajectory, Tensor xt, ReverseStep step, CategoricalPosterior posterior, SamplingContext context)
    {
        var generator = context.Generator;
        using var scope = torch.NewDisposeScope();
        var p = posterior.Probabilities.to(ScalarType.Float64);
        var wrong = EditProcess.RepairWeights(p, xt).clamp_min(Floor);
        Tensor keys = Greedy
            ? -wrong
            : -(torch.rand(wrong.shape, dtype: ScalarType.Float64, device: xt.device, generator: generator).log() / wrong); // −log(u)/w: smallest = largest u^(1/w)
        var repair = TokenProcess.ChosenPositions(keys, ForwardProcessExtensions.LevelTensor(step.T - step.S, xt.shape[0], xt.device));
        // q restricted to tokens ≠ x_t,i and to regular tokens; uniform over them if q gives them no mass.
        var allowed = torch.ones_like(p, dtype: ScalarType.Bool);
        allowed[.., .., ..process.FirstRegularToken] = false;
        allowed = allowed.scatter(2, xt.unsqueeze(2), torch.zeros_like(xt.unsqueeze(2), dtype: ScalarType.Bool));
        var restricted = p * allowed;
        var mass = restricted.sum(2, keepdim: true);
        restricted = torch.where(mass.gt(Floor), restricted, allowed.to(ScalarType.Float64));
        var drawn = new CategoricalPosterior(restricted / restricted.sum(2, keepdim: true)).Draw(generator);
        return torch.where(repair, drawn, xt).MoveToOuterDisposeScope();
    }
}
