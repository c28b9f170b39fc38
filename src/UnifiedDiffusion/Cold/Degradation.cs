using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cold;

/// <summary>
/// A deterministic image degradation D_t for levels t = 0..<see cref="Levels"/>, with D_0 the
/// identity. Levels are per sample, so a batch can hold images at different levels. A degradation
/// with a random choice (a random mask centre) is a fixed function once the choice is fixed
/// (<see cref="WithChoice"/>); the choice is part of the forward process's ε.
/// </summary>
public abstract class Degradation
{
    /// <summary>Creates a degradation with <paramref name="levels"/> levels above 0.</summary>
    protected Degradation(int levels)
    {
        if (levels < 1) throw new UdmException($"a degradation needs at least 1 level, got {levels}.") { Subject = "cold.steps" };
        Levels = levels;
    }

    /// <summary>The number of levels T; valid levels are 0..T.</summary>
    public int Levels { get; }

    /// <summary>D_t(x_0) for images [B, C, H, W] and per-sample levels t (int64 [B]).</summary>
    public Tensor Apply(Tensor x0, Tensor t)
    {
        if (x0.dim() != 4) throw new ArgumentException($"degradations take images [B, C, H, W], got [{string.Join(", ", x0.shape)}].", nameof(x0));
        if (t.dim() > 1 || (t.dim() == 1 && t.shape[0] != x0.shape[0]))
            throw new ArgumentException($"levels must have shape [{x0.shape[0]}], got [{string.Join(", ", t.shape)}].", nameof(t));
        using var scope = torch.NewDisposeScope();
        // Levels are [B] (ForwardProcessExtensions.LevelTensor); a 0-dim level would apply to the whole batch.
        var levels = t.to(ScalarType.Int64, x0.device).expand(x0.shape[0]).contiguous();
        long low = levels.min().item<long>(), high = levels.max().item<long>();
        if (low < 0 || high > Levels) throw new ArgumentOutOfRangeException(nameof(t), $"levels {low}..{high} are outside 0..{Levels}.");
        var result = high == 0 ? x0.clone() : ApplyLevels(x0, levels, (int)high);
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>D_t(x_0) with one level for the whole batch.</summary>
    public Tensor Apply(Tensor x0, int t)
    {
        using var levels = torch.full([x0.shape[0]], t, dtype: ScalarType.Int64, device: x0.device);
        return Apply(x0, levels);
    }

    /// <summary>
    /// Draws the degradation's random choice for one trajectory (or training batch) from
    /// <paramref name="generator"/>, or null for a deterministic degradation, which draws nothing.
    /// </summary>
    public virtual Tensor? SampleChoice(Generator? generator) => null;

    /// <summary>The degradation with its random choice fixed to <paramref name="choice"/> (from <see cref="SampleChoice"/>); null: unchanged.</summary>
    public virtual Degradation WithChoice(Tensor? choice) => this;

    /// <summary>Per-sample D_t for levels in 0..<paramref name="maxLevel"/> (at least one positive).</summary>
    protected abstract Tensor ApplyLevels(Tensor x0, Tensor t, int maxLevel);

    /// <summary>Level weights broadcastable to images: t [B] → [B, 1, 1, 1] as <paramref name="like"/>'s dtype.</summary>
    protected static Tensor PerImage(Tensor t, Tensor like) => t.to(like.dtype).reshape(-1, 1, 1, 1);
}

/// <summary>How the blur of step i grows with i (as the Cold Diffusion reference code's blur routines).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BlurRoutine>))]
public enum BlurRoutine
{
    /// <summary>Step i (1-based) blurs with std·i.</summary>
    Incremental,
    /// <summary>Every step blurs with the same std.</summary>
    Constant,
    /// <summary>Step i (1-based) blurs with exp(std·(i − 1)).</summary>
    Exponential,
}

/// <summary>How the blur treats the image border.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BlurPadding>))]
public enum BlurPadding
{
    /// <summary>Mirror the image at the border (no repeated edge pixel).</summary>
    Reflect,
    /// <summary>Wrap around (the reference code's default): blur keeps the image mean exactly.</summary>
    Circular,
}

/// <summary>
/// Gaussian blur: D_t applies t successive depthwise Gaussian blurs of size
/// <c>kernelSize</c>, the i-th with the standard deviation that <see cref="BlurRoutine"/> gives.
/// Kernels are normalised, so every output pixel is a convex combination of input pixels.
/// </summary>
public sealed class BlurDegradation : Degradation
{
    private readonly Tensor _kernels; // [T, k] float64 1-D kernels, CPU
    private readonly int _kernelSize;

    /// <summary>A blur of <paramref name="levels"/> levels.</summary>
    /// <param name="levels">Levels T.</param>
    /// <param name="kernelSize">Odd kernel width in pixels.</param>
    /// <param name="std">The routine's std parameter (defaults: the reference MNIST setting, 11 and 7.0 Constant).</param>
    /// <param name="routine">How the blur grows with the step.</param>
    /// <param name="padding">Border treatment (the reference default is circular).</param>
    /// <param name="meanAtFinalStep">Replace D_T by the per-image per-channel mean of the T-fold blur, as the reference's generation
    /// setting ("discrete"), so that x_T is exactly a constant image, the support of <see cref="ChannelMeanMixturePrior"/>.</param>
    public BlurDegradation(int levels, int kernelSize = 11, double std = 7.0, BlurRoutine routine = BlurRoutine.Constant,
        BlurPadding padding = BlurPadding.Circular, bool meanAtFinalStep = false) : base(levels)
    {
        MeanAtFinalStep = meanAtFinalStep;
        if (kernelSize < 1 || kernelSize % 2 == 0) throw new UdmException($"the blur kernel size must be odd and positive, got {kernelSize}.");
        if (!(std > 0) || !double.IsFinite(std)) throw new UdmException($"the blur std must be positive, got {std}.");
        _kernelSize = kernelSize;
        KernelStd = std;
        Routine = routine;
        Padding = padding;
        var values = new double[levels * kernelSize];
        for (int i = 1; i <= levels; i++)
        {
            double s = StdAt(i);
            double total = 0;
            for (int j = 0; j < kernelSize; j++)
            {
                double x = j - (kernelSize - 1) / 2.0;
                values[(i - 1) * kernelSize + j] = Math.Exp(-x * x / (2 * s * s));
                total += values[(i - 1) * kernelSize + j];
            }
            for (int j = 0; j < kernelSize; j++) values[(i - 1) * kernelSize + j] /= total;
        }
        _kernels = torch.tensor(values, [levels, kernelSize], dtype: ScalarType.Float64).DetachFromDisposeScope();
    }

    /// <summary>The std parameter of the routine.</summary>
    public double KernelStd { get; }

    /// <summary>How the blur grows with the step.</summary>
    public BlurRoutine Routine { get; }

    /// <summary>The border treatment.</summary>
    public BlurPadding Padding { get; }

    /// <summary>True when D_T is the per-image per-channel mean of the T-fold blur rather than the blur itself.</summary>
    public bool MeanAtFinalStep { get; }

    /// <summary>The standard deviation of the blur applied at step <paramref name="i"/> (1-based).</summary>
    public double StdAt(int i) => Routine switch
    {
        BlurRoutine.Incremental => KernelStd * i,
        BlurRoutine.Constant => KernelStd,
        BlurRoutine.Exponential => Math.Exp(KernelStd * (i - 1)),
        _ => throw new ArgumentOutOfRangeException(nameof(Routine)),
    };

    /// <inheritdoc />
    /// <remarks>
    /// Each pass pads (reflect or circular) and blurs rows and columns with the same 1-D kernel, a linear
    /// map B_i of each axis; t passes are the products V_t = B_t⋯B_1 (rows) and H_t (columns), so
    /// D_t(x) = V_t · x · H_tᵀ per image and channel: two small batched matmuls whatever t, instead of t
    /// padded 1-channel convolutions (which libtorch runs on a slow path; 20 passes over 1,000 MNIST
    /// images took seconds). The products are formed once per size in float64.
    /// </remarks>
    protected override Tensor ApplyLevels(Tensor x0, Tensor t, int maxLevel)
    {
        int pad = _kernelSize / 2;
        if (Padding == BlurPadding.Reflect && (pad >= x0.shape[2] || pad >= x0.shape[3]))
            throw new UdmException($"a reflect-padded blur of size {_kernelSize} needs images larger than {pad} pixels; use a smaller kernel or circular padding.");
        var rows = LevelMaps((int)x0.shape[2], x0).index_select(0, t).unsqueeze(1);                  // [B, 1, H, H]
        var columns = LevelMaps((int)x0.shape[3], x0).index_select(0, t).unsqueeze(1).transpose(2, 3); // [B, 1, W, W]
        var x = torch.matmul(torch.matmul(rows, x0), columns);
        if (MeanAtFinalStep && maxLevel == Levels)
            x = torch.where((t == Levels).reshape(-1, 1, 1, 1), x.mean([2, 3], keepdim: true).expand_as(x), x);
        return x;
    }

    private readonly Dictionary<(int Size, string Device, ScalarType Type), Tensor> _levelMaps = [];

    /// <summary>
    /// [T + 1, n, n]: the map of t passes along an axis of length n (the identity at t = 0), on the
    /// images' device and in their dtype, formed once and kept.
    /// </summary>
    private Tensor LevelMaps(int n, Tensor like)
    {
        var key = (n, like.device.ToString(), like.dtype);
        lock (_levelMaps)
        {
            if (_levelMaps.TryGetValue(key, out var maps)) return maps;
            using var scope = torch.NewDisposeScope();
            var product = torch.eye(n, dtype: ScalarType.Float64);
            var all = new List<Tensor> { product };
            for (int i = 1; i <= Levels; i++)
            {
                product = torch.matmul(PassMatrix(i, n), product);
                all.Add(product);
            }
            maps = torch.stack(all).to(like.dtype, like.device).DetachFromDisposeScope();
            _levelMaps[key] = maps;
            return maps;
        }
    }

    /// <summary>
    /// One pass i along an axis of length n as an n × n matrix: output j = Σ_m k_i[m]·x[border(j + m − pad)],
    /// with border() mirroring (reflect, no repeated edge) or wrapping (circular) positions outside 0..n−1.
    /// </summary>
    private Tensor PassMatrix(int i, int n)
    {
        int pad = _kernelSize / 2;
        var kernel = _kernels[i - 1].data<double>().ToArray();
        var matrix = new double[n * n];
        for (int j = 0; j < n; j++)
            for (int m = 0; m < _kernelSize; m++)
            {
                int p = j + m - pad;
                int source = Padding == BlurPadding.Circular ? ((p % n) + n) % n : p < 0 ? -p : p >= n ? 2 * (n - 1) - p : p;
                matrix[j * n + source] += kernel[m];
            }
        return torch.tensor(matrix, [n, n], dtype: ScalarType.Float64);
    }
}

/// <summary>
/// Gaussian masking (the reference code's "defading"): D_t(x) = x·∏_{i≤t} m_i with
/// m_i = 1 − exp(−d²/(2 s_i²)), d the distance to the mask centre in pixels and
/// s_i = kernelStd·(i − 1 + initialMask) pixels. The hole at the centre grows with t. With a random
/// centre, each batch position b has its own centre, a fixed function of (<see cref="CentreSeed"/>, b),
/// so D_t and D_s of one trajectory share the centre. The seed is the random choice
/// (<see cref="SampleChoice"/>: one int64 drawn per trajectory or training batch).
/// </summary>
public sealed class GaussianMaskDegradation : Degradation
{
    /// <summary>A mask of <paramref name="levels"/> levels.</summary>
    public GaussianMaskDegradation(int levels, double kernelStd = 0.1, bool randomCentre = false, double initialMask = 11, long centreSeed = 0)
        : base(levels)
    {
        if (!(kernelStd > 0) || !double.IsFinite(kernelStd)) throw new UdmException($"the mask std must be positive, got {kernelStd}.");
        if (!(initialMask >= 0) || !double.IsFinite(initialMask)) throw new UdmException($"the initial mask size must be 0 or more, got {initialMask}.");
        KernelStd = kernelStd;
        RandomCentre = randomCentre;
        InitialMask = initialMask;
        CentreSeed = centreSeed;
    }

    /// <summary>Growth of the mask std per step, in pixels.</summary>
    public double KernelStd { get; }

    /// <summary>The mask std at step 1 is KernelStd·InitialMask pixels.</summary>
    public double InitialMask { get; }

    /// <summary>True when every batch position has its own centre.</summary>
    public bool RandomCentre { get; }

    /// <summary>The seed that fixes the per-position centres (used only with a random centre).</summary>
    public long CentreSeed { get; }

    /// <summary>The mask std of step <paramref name="i"/> (1-based), in pixels.</summary>
    public double StdAt(int i) => KernelStd * (i - 1 + InitialMask);

    /// <inheritdoc />
    /// <remarks>One int64 seed, [1], from which every batch position's centre follows.</remarks>
    public override Tensor? SampleChoice(Generator? generator) =>
        RandomCentre ? torch.randint(0, int.MaxValue, [1], dtype: ScalarType.Int64, generator: generator) : null;

    /// <inheritdoc />
    public override Degradation WithChoice(Tensor? choice) =>
        choice is null || !RandomCentre ? this : new GaussianMaskDegradation(Levels, KernelStd, RandomCentre, InitialMask, choice.cpu().item<long>());

    /// <summary>Mask centres (row, column) in pixels for a batch of <paramref name="batch"/> images of size H×W.</summary>
    public (double Row, double Column)[] Centres(long batch, long height, long width)
    {
        var centres = new (double, double)[batch];
        for (long b = 0; b < batch; b++)
        {
            if (!RandomCentre)
            {
                centres[b] = ((height - 1) / 2.0, (width - 1) / 2.0);
                continue;
            }
            ulong h1 = SplitMix((ulong)CentreSeed ^ SplitMix((ulong)b * 2 + 1));
            ulong h2 = SplitMix(h1 ^ 0x9E3779B97F4A7C15UL);
            centres[b] = ((double)(h1 % (ulong)height), (double)(h2 % (ulong)width));
        }
        return centres;
    }

    /// <inheritdoc />
    protected override Tensor ApplyLevels(Tensor x0, Tensor t, int maxLevel)
    {
        long batch = x0.shape[0], height = x0.shape[2], width = x0.shape[3];
        var centres = Centres(batch, height, width);
        var rows = torch.tensor(centres.Select(c => c.Row).ToArray(), dtype: ScalarType.Float64, device: x0.device).reshape(-1, 1, 1);
        var columns = torch.tensor(centres.Select(c => c.Column).ToArray(), dtype: ScalarType.Float64, device: x0.device).reshape(-1, 1, 1);
        var y = torch.arange(height, dtype: ScalarType.Float64, device: x0.device).reshape(1, -1, 1);
        var x = torch.arange(width, dtype: ScalarType.Float64, device: x0.device).reshape(1, 1, -1);
        var squared = (y - rows).square() + (x - columns).square(); // [B, H, W]
        var mask = torch.ones_like(squared);
        for (int i = 1; i <= maxLevel; i++)
        {
            double s = StdAt(i);
            var step = s > 0 ? 1 - torch.exp(squared * (-1.0 / (2 * s * s))) : (squared > 0).to(ScalarType.Float64);
            mask = torch.where((t >= i).reshape(-1, 1, 1), mask * step, mask);
        }
        return x0 * mask.unsqueeze(1).to(x0.dtype);
    }

    private static ulong SplitMix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>
/// Resolution loss: level t averages blocks of 2^t × 2^t pixels (adaptive average pooling to
/// ⌈H/2^t⌉ × ⌈W/2^t⌉) and upsamples back by nearest neighbour. Once 2^t covers the image, the
/// result is the per-channel mean.
/// </summary>
public sealed class SuperResolutionDegradation(int levels) : Degradation(levels)
{
    /// <inheritdoc />
    protected override Tensor ApplyLevels(Tensor x0, Tensor t, int maxLevel)
    {
        long height = x0.shape[2], width = x0.shape[3];
        var result = x0;
        for (int level = 1; level <= maxLevel; level++)
        {
            double factor = Math.Pow(2, level);
            long h = Math.Max(1, (long)Math.Ceiling(height / factor)), w = Math.Max(1, (long)Math.Ceiling(width / factor));
            var pooled = nn.functional.adaptive_avg_pool2d(x0, [h, w]);
            var restored = nn.functional.interpolate(pooled, size: [height, width], mode: InterpolationMode.Nearest);
            result = torch.where((t == level).reshape(-1, 1, 1, 1), restored, result);
        }
        return result;
    }
}

/// <summary>
/// Fading: D_t(x) = (1 − t/T)·x + (t/T)·mean(x), the mean taken per image and per channel over
/// the pixels. At T every image is a constant image of its mean colour.
/// </summary>
public sealed class FadeDegradation(int levels) : Degradation(levels)
{
    /// <inheritdoc />
    protected override Tensor ApplyLevels(Tensor x0, Tensor t, int maxLevel)
    {
        var weight = PerImage(t, x0) / Levels;
        var mean = x0.mean([2, 3], keepdim: true);
        return x0 * (1 - weight) + mean * weight;
    }
}
