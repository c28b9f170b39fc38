using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>
/// A constraint for infilling: some positions fixed to given characters, the rest free. Parse it
/// with <see cref="Parse"/>, then hand <see cref="ToFixedPart"/> to the core sampler and build the
/// grid with <see cref="Grid"/>: with k known tokens the mask process starts at level l − k.
/// </summary>
public sealed class TokenTemplate
{
    /// <summary>Placeholder characters for a free position in a template string.</summary>
    public static IReadOnlyList<string> Placeholders { get; } = ["_", "＿"];

    private TokenTemplate(long[] known, bool[] fixedPositions)
    {
        Known = known;
        IsFixed = fixedPositions;
    }

    /// <summary>Token ids per position ([MASK] where free).</summary>
    public IReadOnlyList<long> Known { get; }

    /// <summary>True where the position is fixed.</summary>
    public IReadOnlyList<bool> IsFixed { get; }

    /// <summary>The sequence length.</summary>
    public int Length => Known.Count;

    /// <summary>The number of free positions: the mask process's start level.</summary>
    public int FreeCount => IsFixed.Count(f => !f);

    /// <summary>
    /// Parses a template of at most <paramref name="length"/> characters; positions after its end
    /// are free. Two forms:
    /// a comma list, one entry per position, an empty entry free ("春,,,,,夏,,,,,秋,,,,,冬" fixes
    /// positions 1, 6, 11 and 16); or a string with '_' or '＿' for free positions ("床前__光").
    /// </summary>
    public static TokenTemplate Parse(string template, Vocabulary vocabulary, int length)
    {
        if (string.IsNullOrWhiteSpace(template)) throw new UdmException("the template is empty; give characters and '_' for free positions, e.g. \"春____\".");
        var entries = template.Contains(',')
            ? template.Split(',').Select(e => e.Trim()).ToArray()
            : Vocabulary.Characters(template).Select(c => Placeholders.Contains(c) ? "" : c).ToArray();
        if (entries.Length > length)
            throw new UdmException($"the template has {entries.Length} positions but sequences hold {length}; shorten it to at most {length}.");
        var known = Enumerable.Repeat((long)Vocabulary.MaskId, length).ToArray();
        var isFixed = new bool[length];
        for (int i = 0; i < entries.Length; i++)
        {
            if (entries[i].Length == 0) continue;
            var characters = Vocabulary.Characters(entries[i]);
            if (characters.Length != 1)
                throw new UdmException($"template entry {i + 1} \"{entries[i]}\" is not one character; separate characters with commas or use '_' for free positions.");
            if (!vocabulary.Contains(characters[0]))
                throw new UdmException($"template character \"{characters[0]}\" (position {i + 1}) is not in the model's vocabulary; choose another character.");
            known[i] = vocabulary.IdOf(characters[0]);
            isFixed[i] = true;
        }
        if (isFixed.All(f => f)) throw new UdmException("the template fixes every position, so there is nothing to generate; leave at least one position free.");
        return new TokenTemplate(known, isFixed);
    }

    /// <summary>The fixed part for a batch of <paramref name="batch"/> samples (Known int64 [B, L], Mask bool [B, L]).</summary>
    public FixedPart ToFixedPart(long batch, Device? device = null)
    {
        var known = torch.tensor(Known.ToArray(), dtype: ScalarType.Int64, device: device ?? torch.CPU).unsqueeze(0).expand(batch, Length).contiguous();
        var mask = torch.tensor(IsFixed.ToArray(), device: device ?? torch.CPU).unsqueeze(0).expand(batch, Length).contiguous();
        return new FixedPart(known, mask);
    }

    /// <summary>
    /// A sampling grid over the free positions: levels <see cref="FreeCount"/> .. 0, so that the
    /// level of each step equals the number of [MASK] tokens once the known tokens are in place.
    /// </summary>
    public int[] Grid(int steps, TimeSpacing spacing = TimeSpacing.Trailing) => TimeGrid.Create(FreeCount, Math.Min(steps, FreeCount), spacing);
}

/// <summary>
/// Makes a posterior model respect a fixed part: at fixed positions the marginal becomes the point
/// mass on the known token. The sampler already keeps known tokens; this also tells the kernels:
/// the edit kernel then gives those positions w_i = 0 and never spends a repair on them, and the
/// number of repairs per step stays t − s on the free positions. The network itself is unchanged.
/// </summary>
public sealed class ConstrainedPosteriorModel(IPosteriorModel<CategoricalPosterior> inner, FixedPart fixedPart) : IPosteriorModel<CategoricalPosterior>
{
    /// <inheritdoc />
    public CategoricalPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        using var scope = torch.NewDisposeScope();
        var probabilities = inner.Predict(xt, t, context).Probabilities;
        var known = nn.functional.one_hot(fixedPart.Known.to(ScalarType.Int64), probabilities.shape[2]).to(probabilities.dtype);
        var mask = fixedPart.Mask.to(ScalarType.Bool).unsqueeze(-1);
        return new CategoricalPosterior(torch.where(mask, known, probabilities).MoveToOuterDisposeScope());
    }
}
