using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>
/// What the token forward processes share. Noise is a float64 tensor of uniform draws; the
/// "position keys" <c>noise[..., 0]</c> (shape [B, L]) decide which positions a level touches: at
/// level t the t positions with the smallest keys are corrupted (ranks by a stable sort, so ties,
/// of probability zero, go to the lower position). Nested levels therefore corrupt nested sets,
/// and Corrupt is a deterministic function of (x_0, t, noise).
/// </summary>
public abstract class TokenProcess : IForwardProcess
{
    /// <summary>Creates a process over sequences of <paramref name="length"/> tokens (T = length).</summary>
    protected TokenProcess(int length)
    {
        if (length < 1) throw new UdmException($"a token sequence length of {length} is too short; use at least 1.");
        Length = length;
    }

    /// <summary>The sequence length l.</summary>
    public int Length { get; }

    /// <inheritdoc />
    public int Steps => Length;

    /// <inheritdoc />
    public bool IsInvertible => true;

    /// <inheritdoc />
    public abstract Tensor SampleNoise(Tensor x0, Generator? generator);

    /// <inheritdoc />
    public abstract Tensor Corrupt(Tensor x0, Tensor t, Tensor noise);

    /// <inheritdoc />
    public abstract Tensor SamplePrior(long[] shape, Device device, Generator? generator);

    /// <inheritdoc />
    public abstract Tensor InferNoise(Tensor x0, Tensor xt, Tensor t);

    /// <summary>Token families keep known tokens at every level: the fixed part is never corrupted.</summary>
    public Tensor CorruptKnown(Tensor known, int s, Generator? generator) => known.alias();

    /// <summary>
    /// Boolean [B, L]: true at the t positions with the smallest keys, per row (t int64 [B]).
    /// </summary>
    public static Tensor ChosenPositions(Tensor keys, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var order = keys.sort(dim: 1, stable: true).Indices;
        var ranks = order.sort(dim: 1, stable: true).Indices;
        // t may be a 0-dim tensor: the core kernels call Corrupt(x0, int, noise), which C# binds to this
        // member through TorchSharp's implicit int → Tensor conversion rather than to the [B] extension.
        return ranks.lt(t.to(ScalarType.Int64).reshape(-1, 1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Keys that rank the given positions first, in position order, and the others after them (for
    /// <see cref="InferNoise"/>): key = (rank among the chosen + 0.5)/(2L) for chosen positions,
    /// 0.5 + (position + 0.5)/(2L) otherwise.
    /// </summary>
    protected static Tensor KeysRankingFirst(Tensor chosen)
    {
        using var scope = torch.NewDisposeScope();
        long length = chosen.shape[1];
        var rankAmongChosen = chosen.to(ScalarType.Int64).cumsum(1, ScalarType.Int64) - 1;
        var position = torch.arange(length, dtype: ScalarType.Int64, device: chosen.device).unsqueeze(0).expand_as(rankAmongChosen);
        var first = (rankAmongChosen.to(ScalarType.Float64) + 0.5) / (2.0 * length);
        var rest = (position.to(ScalarType.Float64) + 0.5) / (2.0 * length) + 0.5;
        return torch.where(chosen, first, rest).MoveToOuterDisposeScope();
    }

    /// <summary>Validates a batch of sequences: int64 [B, L].</summary>
    protected void CheckBatch(Tensor x, string name)
    {
        if (x.dim() != 2 || x.shape[1] != Length || x.dtype != ScalarType.Int64)
            throw new ArgumentException($"{name} must be int64 [B, {Length}], got {x.dtype} [{string.Join(", ", x.shape)}]", name);
    }
}

/// <summary>
/// The mask (absorbing) process: level t = the number of [MASK] tokens, T = l. F_t(x_0, ε) masks
/// the t positions with the smallest keys ε (uniform draws, float64 [B, L]), so the masked set is
/// a uniformly random t-subset. The prior is all [MASK]. InferNoise recovers which positions are
/// masked (those of x_t holding [MASK] where x_0 does not): they get the smallest keys, in position
/// order.
/// </summary>
public sealed class MaskProcess(int length, int maskId = Vocabulary.MaskId) : TokenProcess(length)
{
    /// <summary>The [MASK] token id.</summary>
    public int MaskId { get; } = maskId;

    /// <summary>Uniform position keys, float64 [B, L].</summary>
    public override Tensor SampleNoise(Tensor x0, Generator? generator) =>
        torch.rand([x0.shape[0], Length], dtype: ScalarType.Float64, device: x0.device, generator: generator);

    /// <inheritdoc />
    public override Tensor Corrupt(Tensor x0, Tensor t, Tensor noise)
    {
        CheckBatch(x0, nameof(x0));
        using var scope = torch.NewDisposeScope();
        var masked = ChosenPositions(noise, t);
        return x0.masked_fill(masked, MaskId).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor SamplePrior(long[] shape, Device device, Generator? generator) =>
        torch.full(shape, MaskId, dtype: ScalarType.Int64, device: device);

    /// <inheritdoc />
    public override Tensor InferNoise(Tensor x0, Tensor xt, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        return KeysRankingFirst(xt.eq(MaskId) & x0.ne(MaskId)).MoveToOuterDisposeScope();
    }

    /// <summary>The actual level of each sequence: its number of [MASK] tokens (int64 [B]).</summary>
    public Tensor LevelOf(Tensor xt) => xt.eq(MaskId).sum(1, type: ScalarType.Int64);
}

/// <summary>
/// The edit (substitution) process: F_t(x_0, ε) replaces the t positions with the smallest keys,
/// each with a regular token DIFFERENT from the original, uniform over the other regular tokens.
/// Noise is float64 [B, L, 2]: [..., 0] the position keys, [..., 1] a uniform u that picks the
/// replacement: with R regular tokens starting at f, a regular x_0 becomes
/// f + (x_0 − f + 1 + ⌊u(R − 1)⌋) mod R (never itself), a special x_0 becomes f + ⌊uR⌋.
/// The default prior is l uniform regular tokens; <see cref="WithExactPrior"/> gives the exact
/// prior (draw x_0 from data, then replace every position), which the oracle tests need.
/// </summary>
public sealed class EditProcess : TokenProcess
{
    private readonly IDataSource? _priorData;

    /// <summary>Creates the process for a vocabulary of <paramref name="vocabSize"/> tokens whose regular tokens start at <paramref name="firstRegularToken"/>.</summary>
    public EditProcess(int length, int vocabSize, int firstRegularToken = Vocabulary.FirstRegularId) : this(length, vocabSize, firstRegularToken, null) { }

    private EditProcess(int length, int vocabSize, int firstRegularToken, IDataSource? priorData) : base(length)
    {
        if (firstRegularToken < 0 || vocabSize - firstRegularToken < 2)
            throw new UdmException($"the edit process needs at least 2 regular tokens, but the vocabulary has {vocabSize - firstRegularToken}; use more training text.");
        VocabSize = vocabSize;
        FirstRegularToken = firstRegularToken;
        _priorData = priorData;
    }

    /// <summary>The vocabulary size V.</summary>
    public int VocabSize { get; }

    /// <summary>The first regular token id f; ids f..V−1 are regular.</summary>
    public int FirstRegularToken { get; }

    /// <summary>The number of regular tokens R = V − f.</summary>
    public int RegularCount => VocabSize - FirstRegularToken;

    /// <summary>True when the prior is the exact one (data with every position replaced).</summary>
    public bool HasExactPrior => _priorData is not null;

    /// <summary>The same process whose prior draws x_0 from <paramref name="data"/> and replaces every position (the exact x_T).</summary>
    public EditProcess WithExactPrior(IDataSource data) => new(Length, VocabSize, FirstRegularToken, data);

    /// <summary>Position keys and replacement draws, float64 [B, L, 2].</summary>
    public override Tensor SampleNoise(Tensor x0, Generator? generator) =>
        torch.rand([x0.shape[0], Length, 2], dtype: ScalarType.Float64, device: x0.device, generator: generator);

    /// <inheritdoc />
    public override Tensor Corrupt(Tensor x0, Tensor t, Tensor noise)
    {
        CheckBatch(x0, nameof(x0));
        using var scope = torch.NewDisposeScope();
        var changed = ChosenPositions(noise[.., .., 0], t);
        return torch.where(changed, Replacement(x0, noise[.., .., 1]), x0).MoveToOuterDisposeScope();
    }

    /// <summary>The replacement of every position given u (see the class remarks).</summary>
    public Tensor Replacement(Tensor x0, Tensor u)
    {
        using var scope = torch.NewDisposeScope();
        long r = RegularCount;
        var regular = x0.ge(FirstRegularToken);
        var offset = (u * (r - 1)).floor().to(ScalarType.Int64).clamp(0, r - 2) + 1;
        var fromRegular = (x0 - FirstRegularToken + offset).remainder(r) + FirstRegularToken;
        var fromSpecial = (u * r).floor().to(ScalarType.Int64).clamp(0, r - 1) + FirstRegularToken;
        return torch.where(regular, fromRegular, fromSpecial).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override Tensor SamplePrior(long[] shape, Device device, Generator? generator)
    {
        if (_priorData is null)
            return torch.randint(FirstRegularToken, VocabSize, shape, dtype: ScalarType.Int64, device: device, generator: generator);
        using var scope = torch.NewDisposeScope();
        var g = generator ?? new Generator((ulong)Random.Shared.NextInt64(), device);
        var x0 = _priorData.Sample((int)shape[0], g, device);
        return Corrupt(x0, ForwardProcessExtensions.Levels(Length, shape[0], device), SampleNoise(x0, g)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Keys that rank the positions where x_0 and x_t differ first (in position order), and the u
    /// that reproduces each replacement: Corrupt(x_0, t, InferNoise(x_0, x_t, t)) = x_t whenever
    /// they differ in exactly t positions.
    /// </summary>
    public override Tensor InferNoise(Tensor x0, Tensor xt, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        long r = RegularCount;
        var keys = KeysRankingFirst(x0.ne(xt));
        var offset = (xt - x0).remainder(r); // 1..R−1 for a regular x_0 and a changed position
        var uRegular = (offset.to(ScalarType.Float64) - 0.5) / (r - 1);
        var uSpecial = ((xt - FirstRegularToken).to(ScalarType.Float64) + 0.5) / r;
        var u = torch.where(x0.ge(FirstRegularToken), uRegular, uSpecial).clamp(0, 1 - 1e-12);
        return torch.stack([keys, u], 2).MoveToOuterDisposeScope();
    }
}
