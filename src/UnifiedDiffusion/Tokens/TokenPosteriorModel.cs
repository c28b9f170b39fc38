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
    /// <see cref="MaskProcess.TrainingLoss"/>).
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
    /// <param name="weighting">The mask loss weighting (the edit process's loss covers every position unweighted).</param>
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
        var logits = _network.forward(xt, _process.ConditioningLevel(xt, t));
        return logits.masked_fill(SuppressedMask(logits.device), float.NegativeInfinity).MoveToOuterDisposeScope();
    }

    /// <summary>The marginals, with what x_t already determines made certain (<see cref="TokenProcess.CarryOver"/>).</summary>
    public CategoricalPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        using var scope = torch.NewDisposeScope();
        var probabilities = _process.CarryOver(Logits(xt, t).softmax(2), xt);
        return new CategoricalPosterior(probabilities.MoveToOuterDisposeScope());
    }

    /// <summary>−log q(x_0,i | x_t) at every position, [B, L]. The one place this formula lives.</summary>
    public Tensor NegativeLogLikelihood(Tensor xt, Tensor t, Tensor x0) =>
        -Logits(xt, t).log_softmax(2).gather(2, x0.unsqueeze(2)).squeeze(2);

    /// <summary>The process's training loss (<see cref="TokenProcess.TrainingLoss"/>) from −log q at every position.</summary>
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null)
    {
        using var scope = torch.NewDisposeScope();
        return _process.TrainingLoss(NegativeLogLikelihood(xt, t, x0), xt, t, Weighting).MoveToOuterDisposeScope();
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
/// Use <paramref name="levelFromInput"/> = true for a model whose conditioning level follows from
/// x_t (<see cref="TokenProcess.LevelFollowsFromState"/>), whose output depends on x_t only.
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
    public CategoricalPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
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
                    var one = inner.Predict(row, rowT, context).Probabilities;
                    TensorCopies.Replace(ref _rowX, row);
                    TensorCopies.Replace(ref _rowT, rowT);
                    TensorCopies.Replace(ref _rowProbabilities, one);
                }
                probabilities = _rowProbabilities!.expand(batch, -1, -1).contiguous();
            }
            else
            {
                Evaluations++;
                RowEvaluations += batch;
                probabilities = inner.Predict(xt, t, context).Probabilities;
            }
            TensorCopies.Replace(ref _x, xt);
            TensorCopies.Replace(ref _t, t);
            // Made in this scope and held by nobody else: keep it rather than copy B·L·V floats per step.
            _probabilities?.Dispose();
            _probabilities = probabilities.DetachFromDisposeScope();
        }
        return new CategoricalPosterior(_probabilities!);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.device_type == b.device_type && a.eq(b).all().item<bool>();

    /// <summary>Frees the cached tensors.</summary>
    public void Dispose()
    {
        foreach (var tensor in new[] { _x, _t, _probabilities, _rowX, _rowT, _rowProbabilities }) tensor?.Dispose();
        _x = _t = _probabilities = _rowX = _rowT = _rowProbabilities = null;
    }
}
