using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// Fixes part of x during sampling (inpainting, infilling): wherever <see cref="Mask"/> is true,
/// x_s is replaced by F_s(<see cref="Known"/>, ε), the known data pushed through the family's own
/// forward process to level s (<see cref="IForwardProcess.CorruptKnown"/>). The network never
/// learns that part of x was fixed.
/// </summary>
/// <param name="Known">Data at t = 0, shaped like a batch of samples.</param>
/// <param name="Mask">Boolean, broadcastable to the sample: true where x is known.</param>
public sealed record FixedPart(Tensor Known, Tensor Mask);

/// <summary>What the sampler reports after each step. Tensors are valid only during the callback; clone to keep.</summary>
public readonly record struct SamplerProgress(ReverseStep Step, Tensor Xt, IPosterior Posterior, Tensor Xs);

/// <summary>Options for one sampling run.</summary>
public sealed record SamplingOptions
{
    /// <summary>Part of x held fixed at every level, or null.</summary>
    public FixedPart? Fixed { get; init; }

    /// <summary>Class labels (one per sample) and guidance for a class-conditional model, or null.</summary>
    public Conditioning? Conditioning { get; init; }

    /// <summary>Called after every step, for progress bars and trajectory recording.</summary>
    public Action<SamplerProgress>? OnStep { get; init; }

    /// <summary>
    /// The largest batch run at once; a larger request runs in consecutive chunks from the same
    /// generator (so memory stays bounded, and a request of at most this size is unchanged). Null: all at once.
    /// </summary>
    public int? MaxBatch { get; init; }
}

/// <summary>
/// The one UDM sampler loop, shared by every family: start from x_{t_K} ~ prior, and at each grid
/// step t → s ask the posterior model for q(x_0 | x_t), then let the kernel draw x_s.
/// </summary>
public sealed class Sampler<TPosterior>(IForwardProcess process, IPosteriorModel<TPosterior> model, IReverseKernel<TPosterior> kernel)
    where TPosterior : IPosterior
{
    /// <summary>The forward process this sampler reverses.</summary>
    public IForwardProcess Process { get; } = process;

    /// <summary>
    /// Draws a batch of the given shape from the prior and runs the whole grid. Each chunk of
    /// <see cref="SamplingOptions.MaxBatch"/> is a trajectory of its own: its part of ε that holds
    /// for the whole trajectory is drawn first, then x_T.
    /// </summary>
    public Tensor Sample(long[] shape, IReadOnlyList<int> grid, Device device, Generator? generator, SamplingOptions? options = null)
    {
        using var outer = torch.NewDisposeScope();
        long count = shape[0], chunk = Math.Max(1, options?.MaxBatch ?? long.MaxValue);
        var parts = new List<Tensor>();
        for (long first = 0; first < count; first += chunk)
        {
            long size = Math.Min(chunk, count - first);
            var chunkOptions = options is { Fixed: { } known } && size < count ? options with { Fixed = Slice(known, first, size, count) } : options;
            var context = new SamplingContext
            {
                Generator = generator,
                Conditioning = options?.Conditioning?.Slice(first, size, count),
                TrajectoryNoise = Process.SampleTrajectoryNoise(size, device, generator),
            };
            var start = Process.SamplePrior([size, .. shape.Skip(1)], device, generator);
            parts.Add(Run(start, grid, context, chunkOptions));
        }
        return (parts.Count == 1 ? parts[0] : torch.cat(parts, 0)).MoveToOuterDisposeScope();
    }

    private static FixedPart Slice(FixedPart known, long first, long size, long count) => new(
        known.Known.shape[0] == count ? known.Known.narrow(0, first, size) : known.Known,
        known.Mask.dim() > 0 && known.Mask.shape[0] == count ? known.Mask.narrow(0, first, size) : known.Mask);

    /// <summary>
    /// Runs the grid from a given x at level grid[0] for the trajectory <paramref name="context"/>
    /// describes; returns x at level 0. The input is not disposed.
    /// </summary>
    public Tensor Run(Tensor start, IReadOnlyList<int> grid, SamplingContext context, SamplingOptions? options = null)
    {
        if (grid.Count < 2 || grid[^1] != 0) throw new ArgumentException("the grid must descend to 0", nameof(grid));
        using var noGrad = torch.no_grad();
        context.History.Clear();
        var trajectory = Process.WithTrajectoryNoise(context.TrajectoryNoise);
        var x = start;
        if (options?.Fixed is { } fixedAtStart)
        {
            // The known part enters at the first level too: a token family then sees its fixed
            // tokens from the first network call, a continuous one its re-corrupted pixels.
            using var startScope = torch.NewDisposeScope();
            x = torch.where(fixedAtStart.Mask, trajectory.CorruptKnown(fixedAtStart.Known, grid[0], context.Generator), start).MoveToOuterDisposeScope();
        }
        for (int i = 0; i + 1 < grid.Count; i++)
        {
            var step = new ReverseStep(grid[i], grid[i + 1], i, grid);
            using var scope = torch.NewDisposeScope();
            var posterior = model.Predict(x, ForwardProcessExtensions.LevelTensor(step.T, x.shape[0], x.device), context);
            var next = kernel.Step(trajectory, x, step, posterior, context);
            if (options?.Fixed is { } fixedPart)
            {
                var known = trajectory.CorruptKnown(fixedPart.Known, step.S, context.Generator);
                next = torch.where(fixedPart.Mask, known, next);
            }
            if (options?.OnStep is { } onStep) onStep(new SamplerProgress(step, x, posterior, next));
            next.MoveToOuterDisposeScope();
            if (!ReferenceEquals(x, start)) x.Dispose();
            x = next;
        }
        context.History.Clear();
        return x;
    }
}
