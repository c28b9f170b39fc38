using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>How the mask model's per-sequence cross-entropy is weighted.</summary>
public enum MaskLossWeighting
{
    /// <summary>The mean cross-entropy over all masked positions of the batch (the masked-LM loss).</summary>
    MeanOverMasked,
    /// <summary>
    /// (l / t) · Σ over the t masked positions of −log q(x_0,i | x_t), averaged over sequences: with
    /// t ~ U{1..l}, its expectation is the negative ELBO in nats per sequence (see
    /// <see cref="TokenPosteriorModel.Loss"/>).
    /// </summary>
    Elbo,
}

/// <summary>
/// The posterior model of the token families: a network (tokens int64 [B, L], level int64 [B]) →
/// logits [B, L, V]. Logits of [MASK] and [UNK] are always suppressed (−∞), and [PAD]'s too unless
/// the data uses padding, so q never predicts a special it cannot need.
/// </summary>
public sealed class TokenPosteriorModel : ITrainablePosteriorModel<CategoricalPosterior>
{
    private readonly nn.Module<Tensor, Tensor, Tensor> _network;
    private readonly TokenProcess _process;
    private readonly bool[] _suppressed;

    /// <summary>Wraps <paramref name="network"/> for <paramref name="process"/> over <paramref name="vocabSize"/> tokens.</summary>
    /// <param name="network">(tokens, level) → logits [B, L, V].</param>
    /// <param name="process">The mask or edit process.</param>
    /// <param name="vocabSize">V.</param>
    /// <param name="usesPadding">True when data sequences contain [PAD] (names), so it stays predictable.</param>
    /// <param name="weighting">The mask loss weighting (ignored by the edit process).</param>
    public TokenPosteriorModel(nn.Module<Tensor, Tensor, Tensor> network, TokenProcess process, int vocabSize, bool usesPadding = false,
        MaskLossWeighting weighting = MaskLossWeighting.MeanOverMasked)
    {
        _network = network;
        _process = process;
        VocabSize = vocabSize;
        Weighting = weighting;
        _suppressed = new bool[vocabSize];
        _suppressed[Vocabulary.UnknownId] = true;
        _suppressed[Vocabulary.MaskId] = true;
        _suppressed[Vocabulary.PadId] = !usesPadding;
    }

    /// <inheritdoc />
    public nn.Module Network => _network;

    /// <summary>V.</summary>
    public int VocabSize { get; }

    /// <summary>The mask loss weighting.</summary>
    public MaskLossWeighting Weighting { get; }

    /// <summary>
    /// The level the network is conditioned on: for the mask process the actual number of [MASK]
    /// tokens of each row (which differs from the grid's level when a fixed part holds known
    /// tokens); for the edit process the given t.
    /// </summary>
    public Tensor ConditioningLevel(Tensor xt, Tensor t) => _process is MaskProcess mask ? mask.LevelOf(xt) : t;

    // Built once per device rather than on every call.
    private Tensor SuppressedMask(Device device)
    {
        lock (_suppressedGate)
        {
            // Compared by name: Device objects are created afresh on every query.
            if (_suppressedMask is null || _suppressedMask.device.ToString() != device.ToString())
            {
                _suppressedMask?.Dispose();
                _suppressedMask = torch.tensor(_suppressed, device: device).DetachFromDisposeScope();
            }
            return _suppressedMask;
        }
    }

    private Tensor? _suppressedMask;
    private readonly Lock _suppressedGate = new();

    /// <summary>Logits [B, L, V] with the suppressed specials at −∞.</summary>
    public Tensor Logits(Tensor xt, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var logits = _network.forward(xt, ConditioningLevel(xt, t));
        return logits.masked_fill(SuppressedMask(logits.device), float.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The marginals. For the mask process an unmasked position is known exactly, so its marginal
    /// is the point mass on x_t's token (as MDLM's "carry-over" parameterisation); a draw of x̂_0
    /// then always agrees with x_t there, for every kernel.
    /// </summary>
    public CategoricalPosterior Predict(Tensor xt, Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        var probabilities = Logits(xt, t).softmax(2);
        if (_process is MaskProcess mask)
        {
            // Unmasked rows become the point mass on x_t's token (zero the row, then a 1 at the token):
            // the same values as where(masked, p, one_hot(x_t)) at half the cost.
            var known = xt.ne(mask.MaskId).unsqueeze(2);
            probabilities = probabilities.masked_fill_(known, 0).scatter_(2, xt.unsqueeze(2), known.to(probabilities.dtype));
        }
        return new CategoricalPosterior(probabilities.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Mask: cross-entropy on the masked positions (<see cref="Weighting"/>). The ELBO weighting:
    /// the discrete-time absorbing process with T = l unmasks one uniformly chosen position per
    /// reverse step; the reverse model chooses the position the same way, so only the token term
    /// remains and −log p(x_0) ≤ Σ_{t=1..l} E[(1/t) Σ_{i masked in x_t} −log q(x_0,i | x_t)]
    /// (the prior term is 0: x_l is all [MASK]). With t ~ U{1..l} that sum is
    /// E_t[(l/t) Σ_masked −log q], the weighted loss. Edit: cross-entropy on every position.
    /// </summary>
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise)
    {
        using var scope = torch.NewDisposeScope();
        var logits = Logits(xt, t);
        var nll = -logits.log_softmax(2).gather(2, x0.unsqueeze(2)).squeeze(2); // [B, L]
        Tensor loss;
        if (_process is MaskProcess mask)
        {
            var masked = xt.eq(mask.MaskId).to(nll.dtype);
            var perPosition = nll * masked;
            if (Weighting == MaskLossWeighting.Elbo)
            {
                var weight = (double)_process.Length / t.to(nll.dtype).clamp_min(1);
                loss = (perPosition.sum(1) * weight).mean();
            }
            else loss = perPosition.sum() / masked.sum().clamp_min(1);
        }
        else loss = nll.mean();
        return loss.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Wraps a posterior model and avoids network work whose result is already known. Two caches:
/// - the last call: the same x_t (element by element) and, unless <paramref name="levelFromInput"/>,
///   the same levels return the last output. In the plain sampler loop each improved step changes
///   x, so this saves only when a step leaves x unchanged (a grid with more levels than free
///   positions, a fill of zero positions) or the same x_t is asked for twice.
/// - uniform batches: when every row of x_t (and its level) is the same — the all-[MASK] prior, or
///   the prior with a template's known tokens, i.e. the first step of every mask-model run — the
///   network runs on one row and the result is broadcast; that row's output is also kept across
///   runs, so later runs with the same start skip the first step's network call entirely.
/// Use <paramref name="levelFromInput"/> = true for a mask model conditioned on the mask count
/// (<see cref="TokenPosteriorModel.ConditioningLevel"/>), whose output depends on x_t only.
/// Cached tensors live outside any dispose scope until replaced or disposed.
/// </summary>
public sealed class CachingPosteriorModel(IPosteriorModel<CategoricalPosterior> inner, bool levelFromInput = false)
    : IPosteriorModel<CategoricalPosterior>, IDisposable
{
    private Tensor? _x, _t, _probabilities;          // last call
    private Tensor? _rowX, _rowT, _rowProbabilities; // last uniform batch, one row

    /// <summary>Calls of the wrapped model.</summary>
    public int Evaluations { get; private set; }

    /// <summary>Calls answered entirely from a cache.</summary>
    public int Saved { get; private set; }

    /// <summary>Sequences (rows) the wrapped model evaluated.</summary>
    public long RowEvaluations { get; private set; }

    /// <summary>Sequences (rows) answered without evaluating them.</summary>
    public long RowsSaved { get; private set; }

    /// <inheritdoc />
    public CategoricalPosterior Predict(Tensor xt, Tensor t)
    {
        long batch = xt.shape[0];
        if (_probabilities is not null && Same(_x!, xt) && (levelFromInput || Same(_t!, t)))
        {
            Saved++;
            RowsSaved += batch;
            return new CategoricalPosterior(_probabilities);
        }
        Tensor probabilities;
        using (var scope = torch.NewDisposeScope())
        {
            var row = xt[..1];
            var rowT = t.numel() > 1 ? t[..1] : t.reshape(1);
            bool uniform = xt.eq(row).all().item<bool>() && (levelFromInput || t.eq(rowT).all().item<bool>());
            if (uniform)
            {
                if (_rowProbabilities is not null && Same(_rowX!, row) && (levelFromInput || Same(_rowT!, rowT)))
                {
                    Saved++;
                    RowsSaved += batch;
                }
                else
                {
                    Evaluations++;
                    RowEvaluations++;
                    RowsSaved += batch - 1;
                    var one = inner.Predict(row, rowT).Probabilities;
                    Replace(ref _rowX, row);
                    Replace(ref _rowT, rowT);
                    Replace(ref _rowProbabilities, one);
                }
                probabilities = _rowProbabilities!.expand(batch, -1, -1).contiguous();
            }
            else
            {
                Evaluations++;
                RowEvaluations += batch;
                probabilities = inner.Predict(xt, t).Probabilities;
            }
            Replace(ref _x, xt);
            Replace(ref _t, t);
            // Made in this scope and held by nobody else: keep it rather than copy B·L·V floats per step.
            _probabilities?.Dispose();
            _probabilities = probabilities.DetachFromDisposeScope();
        }
        return new CategoricalPosterior(_probabilities!);
    }

    private static void Replace(ref Tensor? slot, Tensor value)
    {
        var copy = value.detach().clone().DetachFromDisposeScope();
        slot?.Dispose();
        slot = copy;
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.device_type == b.device_type && a.eq(b).all().item<bool>();

    /// <summary>Frees the cached tensors.</summary>
    public void Dispose()
    {
        foreach (var tensor in new[] { _x, _t, _probabilities, _rowX, _rowT, _rowProbabilities }) tensor?.Dispose();
        _x = _t = _probabilities = _rowX = _rowT = _rowProbabilities = null;
    }
}
