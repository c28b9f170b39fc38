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
/// <remarks>
/// Everything in which the mask and edit models differ lives here, as members each process
/// overrides: the level a network is conditioned on, the carry-over of known tokens, the positions
/// the loss covers, the improved kernel and its samplers, the held-out bound, and which strings
/// can reach a given x_t (the exact oracle's support).
/// </remarks>
public abstract class TokenProcess : IForwardProcess
{
    /// <summary>Creates a process over sequences of <paramref name="length"/> tokens (T = length).</summary>
    protected TokenProcess(int length)
    {
        if (length < 1) throw new UdmException($"a token sequence length of {length} is too short; use at least 1.") { Subject = "length" };
        Length = length;
    }

    /// <summary>The sequence length l.</summary>
    public int Length { get; }

    /// <inheritdoc />
    public int Levels => Length;

    /// <summary>The family's name in configs: mask or edit.</summary>
    public abstract string Family { get; }

    /// <summary>The family's samplers: the improved kernel (by its own name, alias improved), recorrupt and data.</summary>
    public abstract SamplerRegistry<TokenSamplerEntry> Samplers { get; }

    /// <summary>The family's improved kernel, with its positions chosen at random or most confident first.</summary>
    public abstract IReverseKernel<CategoricalPosterior> ImprovedKernel(bool confident);

    /// <summary>The level a network is conditioned on, given x_t and the grid's level t (int64 [B]).</summary>
    public abstract Tensor ConditioningLevel(Tensor xt, Tensor t);

    /// <summary>True when <see cref="ConditioningLevel"/> depends on x_t alone (so equal x_t give equal outputs).</summary>
    public abstract bool LevelFollowsFromState { get; }

    /// <summary>The marginals [B, L, V] with what x_t already determines made certain; <paramref name="probabilities"/> may be changed in place.</summary>
    public abstract Tensor CarryOver(Tensor probabilities, Tensor xt);

    /// <summary>The training loss from the per-position −log q(x_0,i | x_t) [B, L]: which positions count, and how.</summary>
    public abstract Tensor TrainingLoss(Tensor nll, Tensor xt, Tensor t, MaskLossWeighting weighting);

    /// <summary>
    /// The negative ELBO of held-out <paramref name="data"/> under <paramref name="model"/>, with one
    /// Monte Carlo draw per level and sequence from a generator seeded with <paramref name="seed"/>.
    /// </summary>
    public abstract TokenBound HeldOutBound(TokenPosteriorModel model, Tensor data, ulong seed, int batchSize = 256);

    /// <summary>Boolean [B, S]: which of the strings [S, L] can be corrupted into x_t [B, L] at levels t [B].</summary>
    public abstract Tensor CanReach(Tensor strings, Tensor xt, Tensor t);

    /// <summary>Evaluates a per-sequence bound in batches, in eval mode and without gradients; returns its mean.</summary>
    protected static TokenBound MeanBound(TokenPosteriorModel model, Tensor data, int batchSize, ulong seed, int length, Func<Tensor, Generator, Tensor> perSequence)
    {
        if (data.shape[0] == 0) throw new UdmException("the likelihood needs at least one held-out sequence.") { Subject = "count" };
        bool training = model.Network.training;
        model.Network.eval();
        try
        {
            using var noGrad = torch.no_grad();
            var generator = new Generator(seed);
            double sum = 0;
            for (long start = 0; start < data.shape[0]; start += batchSize)
            {
                using var scope = torch.NewDisposeScope();
                var x0 = data.narrow(0, start, Math.Min(batchSize, data.shape[0] - start));
                sum += perSequence(x0, generator).sum().item<double>();
            }
            double nats = sum / data.shape[0];
            return new TokenBound(nats, nats / (length * Math.Log(2)));
        }
        finally
        {
            if (training) model.Network.train();
        }
    }

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

/// <summary>A likelihood bound: nats per sequence and bits per token (position).</summary>
/// <param name="NatsPerSequence">−ELBO in nats per sequence.</param>
/// <param name="BitsPerToken">−ELBO / (L ln 2).</param>
public readonly record struct TokenBound(double NatsPerSequence, double BitsPerToken);

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

    /// <summary>The mask model's samplers: fill (alias improved), recorrupt and data.</summary>
    public static SamplerRegistry<TokenSamplerEntry> Registry { get; } =
        TokenSamplers.Create("mask", "fill", "Gibbs-like: keep the unmasked tokens, fill t − s masked ones from q");

    /// <inheritdoc />
    public override string Family => "mask";

    /// <inheritdoc />
    public override SamplerRegistry<TokenSamplerEntry> Samplers => Registry;

    /// <inheritdoc />
    public override IReverseKernel<CategoricalPosterior> ImprovedKernel(bool confident) => new MaskFillKernel(this, confident ? FillOrder.Confident : FillOrder.Random);

    /// <inheritdoc />
    /// <remarks>The actual number of [MASK] tokens of each row, which differs from the grid's level when a fixed part holds known tokens.</remarks>
    public override Tensor ConditioningLevel(Tensor xt, Tensor t) => LevelOf(xt);

    /// <inheritdoc />
    public override bool LevelFollowsFromState => true;

    /// <inheritdoc />
    /// <remarks>
    /// An unmasked position is known exactly: its marginal is the point mass on x_t's token (MDLM's
    /// carry-over), so a draw of x̂_0 always agrees with x_t there, for every kernel.
    /// </remarks>
    public override Tensor CarryOver(Tensor probabilities, Tensor xt)
    {
        // Zero the row, then a 1 at the token: the values of where(masked, p, one_hot(x_t)) at half the cost.
        var known = xt.ne(MaskId).unsqueeze(2);
        return probabilities.masked_fill_(known, 0).scatter_(2, xt.unsqueeze(2), known.to(probabilities.dtype));
    }

    /// <inheritdoc />
    /// <remarks>
    /// Cross-entropy on the masked positions. The ELBO weighting: the discrete-time absorbing process
    /// with T = l unmasks one uniformly chosen position per reverse step; the reverse model chooses
    /// the position the same way, so only the token term remains and
    /// −log p(x_0) ≤ Σ_{t=1..l} E[(1/t) Σ_{i masked in x_t} −log q(x_0,i | x_t)] (the prior term is 0:
    /// x_l is all [MASK]). With t ~ U{1..l} that sum is E_t[(l/t) Σ_masked −log q], the weighted loss.
    /// </remarks>
    public override Tensor TrainingLoss(Tensor nll, Tensor xt, Tensor t, MaskLossWeighting weighting)
    {
        var masked = xt.eq(MaskId).to(nll.dtype);
        var perPosition = nll * masked;
        if (weighting == MaskLossWeighting.Elbo)
        {
            var weight = (double)Length / t.to(nll.dtype).clamp_min(1);
            return (perPosition.sum(1) * weight).mean();
        }
        return perPosition.sum() / masked.sum().clamp_min(1);
    }

    /// <inheritdoc />
    /// <remarks>
    /// −log p(x_0) ≤ Σ_{t=1..l} E[(1/t) Σ_{i masked} −log q(x_0,i | x_t)] (derivation in
    /// <see cref="TrainingLoss"/>). The sum over t is exact; the expectation over the masked set is
    /// Monte Carlo, one masked set per level and sequence.
    /// </remarks>
    public override TokenBound HeldOutBound(TokenPosteriorModel model, Tensor data, ulong seed, int batchSize = 256) =>
        MeanBound(model, data, batchSize, seed, Length, (x0, generator) =>
        {
            var total = torch.zeros(x0.shape[0], dtype: ScalarType.Float64);
            for (int t = 1; t <= Length; t++)
            {
                using var scope = torch.NewDisposeScope();
                var levels = ForwardProcessExtensions.LevelTensor(t, x0.shape[0], x0.device);
                var xt = Corrupt(x0, levels, SampleNoise(x0, generator));
                var nll = model.NegativeLogLikelihood(xt, levels, x0).to(ScalarType.Float64);
                total.add_((nll * xt.eq(MaskId)).sum(1) / (t * 1.0));
            }
            return total;
        });

    /// <inheritdoc />
    /// <remarks>The strings that agree with x_t on every unmasked position.</remarks>
    public override Tensor CanReach(Tensor strings, Tensor xt, Tensor t)
    {
        var x = xt.unsqueeze(1); // [B, 1, L]
        return (strings.unsqueeze(0).eq(x) | x.eq(MaskId)).all(2);
    }
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
        return Corrupt(x0, ForwardProcessExtensions.LevelTensor(Length, shape[0], device), SampleNoise(x0, g)).MoveToOuterDisposeScope();
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

    /// <summary>The edit model's samplers: repair (alias improved), recorrupt and data.</summary>
    public static SamplerRegistry<TokenSamplerEntry> Registry { get; } =
        TokenSamplers.Create("edit", "repair", "weighted repair: change t − s positions chosen ∝ 1 − q(x_t,i | x_t)");

    /// <inheritdoc />
    public override string Family => "edit";

    /// <inheritdoc />
    public override SamplerRegistry<TokenSamplerEntry> Samplers => Registry;

    /// <inheritdoc />
    public override IReverseKernel<CategoricalPosterior> ImprovedKernel(bool confident) => new EditRepairKernel(this, greedy: confident);

    /// <inheritdoc />
    public override Tensor ConditioningLevel(Tensor xt, Tensor t) => t;

    /// <inheritdoc />
    public override bool LevelFollowsFromState => false;

    /// <inheritdoc />
    /// <remarks>Every position may have been replaced, so nothing is certain.</remarks>
    public override Tensor CarryOver(Tensor probabilities, Tensor xt) => probabilities;

    /// <inheritdoc />
    /// <remarks>Cross-entropy on every position (any of them may have been replaced); no weighting applies.</remarks>
    public override Tensor TrainingLoss(Tensor nll, Tensor xt, Tensor t, MaskLossWeighting weighting) => nll.mean();

    /// <summary>
    /// The repair weights w_i = 1 − q(x_0,i = x_t,i | x_t) [B, L]: the probability that position i is
    /// wrong, from marginals [B, L, V]. The one place this formula lives.
    /// </summary>
    public static Tensor RepairWeights(Tensor probabilities, Tensor xt) => 1 - probabilities.gather(2, xt.unsqueeze(2)).squeeze(2);

    /// <inheritdoc />
    /// <remarks>
    /// Through the repair kernel with one position per step as the reverse chain:
    /// p_θ(x_{t−1} | x_t) = q_i(x_0,i | x_t) / Σ_j w_j(x_t) when x_{t−1} reverts position i
    /// (<see cref="RepairWeights"/>), prior uniform over the R regular tokens per position, and the
    /// forward path probability q(x_{1:l} | x_0) = 1/(l! (R − 1)^l). Hence
    /// −log p(x_0) ≤ l log R − log l! − l log(R − 1) + Σ_{t=1..l} E[−log q_i(x_0,i | x_t) + log Σ_j w_j(x_t)],
    /// with one forward path per sequence (Monte Carlo). The sequences must hold regular tokens only.
    /// </remarks>
    public override TokenBound HeldOutBound(TokenPosteriorModel model, Tensor data, ulong seed, int batchSize = 256)
    {
        if (data.lt(FirstRegularToken).any().item<bool>())
            throw new UdmException("the edit bound needs sequences of regular tokens only; data padded with [PAD] (names) is not supported.") { Subject = "nll" };
        int l = Length;
        long r = RegularCount;
        double logFactorial = Enumerable.Range(1, l).Sum(i => Math.Log(i));
        double constant = l * Math.Log(r) - logFactorial - l * Math.Log(r - 1);
        return MeanBound(model, data, batchSize, seed, l, (x0, generator) =>
        {
            var total = torch.full(x0.shape[0], constant, dtype: ScalarType.Float64);
            using var pathScope = torch.NewDisposeScope();
            var noise = SampleNoise(x0, generator);
            var ranks = noise[.., .., 0].sort(dim: 1, stable: true).Indices.sort(dim: 1, stable: true).Indices;
            for (int t = 1; t <= l; t++)
            {
                using var scope = torch.NewDisposeScope();
                var levels = ForwardProcessExtensions.LevelTensor(t, x0.shape[0], x0.device);
                var xt = Corrupt(x0, levels, noise);
                var q = model.Logits(xt, levels).softmax(2).to(ScalarType.Float64);
                var wrong = RepairWeights(q, xt).sum(1);
                var reverted = ranks.eq(t - 1);
                var right = (q.gather(2, x0.unsqueeze(2)).squeeze(2) * reverted).sum(1);
                total.add_(wrong.clamp_min(1e-300).log() - right.clamp_min(1e-300).log());
            }
            return total;
        });
    }

    /// <inheritdoc />
    /// <remarks>
    /// The strings that differ from x_t in exactly t positions (the likelihood of x_t given such an x_0
    /// is C(l, t)⁻¹ (R − 1)⁻ᵗ, the same for all of them).
    /// </remarks>
    public override Tensor CanReach(Tensor strings, Tensor xt, Tensor t) =>
        strings.unsqueeze(0).ne(xt.unsqueeze(1)).sum(2).eq(t.reshape(-1, 1));
}
