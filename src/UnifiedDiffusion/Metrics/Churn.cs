using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Metrics;

/// <summary>
/// Churn: how far the estimate of x_0 moves between consecutive sampling steps, the seed's claim
/// (re-corrupt sampling undoes its progress at every step; the improved samplers change the sample
/// gradually) as a number. Chained into <see cref="SamplingOptions.OnStep"/>, it compares each step's
/// <see cref="IPosterior.Estimate"/> with the previous step's, over every sample, by <see cref="Change"/>.
/// Step k's churn (k ≥ 1) is the change from the estimate at grid level t_{k−1} to the one at t_k.
/// It only reads, so the samples are the same with and without it.
/// </summary>
public sealed class ChurnMeter : IDisposable
{
    private readonly List<double> _sums = [];
    private readonly List<long> _counts = [];
    private Tensor? _previous;
    private bool _tokens;

    /// <summary>Records one step (to chain into <see cref="SamplingOptions.OnStep"/>); a chunked run restarts at each chunk's first step.</summary>
    public void Record(SamplerProgress progress)
    {
        using var scope = torch.NewDisposeScope();
        var estimate = progress.Posterior.Estimate();
        int k = progress.Step.Index;
        if (k > 0 && _previous is not null && _previous.shape.SequenceEqual(estimate.shape))
        {
            while (_sums.Count < k) { _sums.Add(0); _counts.Add(0); }
            var (sum, count) = Change(_previous, estimate);
            _sums[k - 1] += sum;
            _counts[k - 1] += count;
            _tokens = !estimate.is_floating_point();
        }
        TensorCopies.Replace(ref _previous, estimate);
    }

    /// <summary>
    /// The sum and count behind churn between two estimates of x_0: for tokens (integer tensors) the
    /// number of positions whose token differs, whose mean is the share changed; for images and points
    /// the sum of squared differences, whose mean's square root is the RMS change.
    /// </summary>
    public static (double Sum, long Count) Change(Tensor previous, Tensor current)
    {
        using var scope = torch.NewDisposeScope();
        var sum = current.is_floating_point()
            ? (current.to(ScalarType.Float64) - previous.to(ScalarType.Float64)).square().sum().item<double>()
            : current.ne(previous).sum().to(ScalarType.Float64).item<double>();
        return (sum, current.numel());
    }

    /// <summary>True once token estimates were compared (churn is a share of positions, not an RMS).</summary>
    public bool IsShareOfPositions => _tokens;

    /// <summary>Churn of steps 1..K−1 of the grid, in sampling order: a share of positions (tokens) or an RMS change (images, points).</summary>
    public IReadOnlyList<double> PerStep => [.. _sums.Select((sum, i) => _counts[i] == 0 ? double.NaN : _tokens ? sum / _counts[i] : Math.Sqrt(sum / _counts[i]))];

    /// <summary>The mean of <see cref="PerStep"/>: the average churn of a step (NaN for a one-step grid).</summary>
    public double Mean => PerStep.Count == 0 ? double.NaN : PerStep.Average();

    /// <inheritdoc />
    public void Dispose()
    {
        _previous?.Dispose();
        _previous = null;
    }
}
