using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>One recorded step of a trajectory: its levels t → s, x_t and the posterior's estimate of x_0, for the first rows.</summary>
/// <param name="T">The level the step starts from.</param>
/// <param name="S">The level it moves to.</param>
/// <param name="Xt">x_t of the recorded rows (CPU copy).</param>
/// <param name="Clean">The posterior's estimate of x_0 at t (CPU copy; <see cref="IPosterior.Estimate"/>).</param>
public sealed record TrajectoryStep(int T, int S, Tensor Xt, Tensor Clean);

/// <summary>
/// Records how sampling moves: at every step, x_t and the estimate of x_0 of the first
/// <see cref="Rows"/> samples, through <see cref="SamplingOptions.OnStep"/>. It only copies, so the
/// samples are the same with and without it.
/// </summary>
public sealed class TrajectoryRecorder(int rows) : IDisposable
{
    private readonly List<TrajectoryStep> _steps = [];

    /// <summary>How many samples are recorded.</summary>
    public int Rows { get; } = rows;

    /// <summary>The recorded steps, in sampling order.</summary>
    public IReadOnlyList<TrajectoryStep> Steps => _steps;

    /// <summary>The final samples of the recorded rows (recorded by the step onto level 0).</summary>
    public Tensor? Final { get; private set; }

    /// <summary>Records one step (to chain into <see cref="SamplingOptions.OnStep"/>). Only the first chunk of a chunked run is recorded.</summary>
    public void Record(SamplerProgress progress)
    {
        if (_steps.Count > 0 && _steps[^1].S != progress.Step.T) return; // a later chunk starts the grid again
        long n = Math.Min(Rows, progress.Xt.shape[0]);
        using var scope = torch.NewDisposeScope();
        _steps.Add(new TrajectoryStep(progress.Step.T, progress.Step.S, Keep(progress.Xt.narrow(0, 0, n)), Keep(progress.Posterior.Estimate().narrow(0, 0, n))));
        if (progress.Step.S == 0) Final = Keep(progress.Xs.narrow(0, 0, n));
    }

    /// <summary>At most <paramref name="most"/> of the recorded steps, evenly spread, always with the last.</summary>
    public IReadOnlyList<TrajectoryStep> Spread(int most)
    {
        if (_steps.Count <= most) return _steps;
        return [.. Enumerable.Range(0, most).Select(i => (int)Math.Round(i * (_steps.Count - 1) / (double)(most - 1))).Distinct().Select(i => _steps[i])];
    }

    private static Tensor Keep(Tensor x) => TensorCopies.Keep(x, toCpu: true);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var step in _steps)
        {
            step.Xt.Dispose();
            step.Clean.Dispose();
        }
        Final?.Dispose();
    }
}
