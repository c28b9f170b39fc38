using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>
/// Per-position categorical marginals q(x_0,i | x_t), [B, L, V], rows summing to 1. A
/// non-autoregressive model gives only these marginals, so <see cref="Draw"/> samples every
/// position independently.
/// </summary>
public sealed class CategoricalPosterior : IPosterior
{
    /// <summary>Wraps probabilities [B, L, V] (not copied).</summary>
    public CategoricalPosterior(Tensor probabilities)
    {
        if (probabilities.dim() != 3) throw new ArgumentException($"probabilities must be [B, L, V], got [{string.Join(", ", probabilities.shape)}]", nameof(probabilities));
        Probabilities = probabilities;
    }

    /// <summary>The marginals, [B, L, V].</summary>
    public Tensor Probabilities { get; }

    /// <summary>Draws x̂_0: each position independently from its marginal (int64 [B, L]).</summary>
    public Tensor Draw(Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        long b = Probabilities.shape[0], l = Probabilities.shape[1], v = Probabilities.shape[2];
        var flat = Probabilities.reshape(b * l, v).to(ScalarType.Float64);
        return torch.multinomial(flat, 1, replacement: true, generator: generator).reshape(b, l).MoveToOuterDisposeScope();
    }

    /// <summary>The probability each position gives to the token that x holds there, [B, L].</summary>
    public Tensor ProbabilityOf(Tensor x) => Probabilities.gather(2, x.unsqueeze(2)).squeeze(2);
}
