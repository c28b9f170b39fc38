using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Cold;

/// <summary>Degradations under test, by name, at sizes small enough for 8×8 images.</summary>
internal static class Degradations
{
    public static readonly string[] Names = ["blur-circular", "blur-reflect", "blur-exponential", "blur-mean", "mask", "mask-random", "superres", "fade"];

    public static Degradation Create(string name) => name switch
    {
        "blur-circular" => new BlurDegradation(6, kernelSize: 5, std: 1.0, BlurRoutine.Constant, BlurPadding.Circular),
        "blur-reflect" => new BlurDegradation(6, kernelSize: 5, std: 0.5, BlurRoutine.Incremental, BlurPadding.Reflect),
        "blur-exponential" => new BlurDegradation(6, kernelSize: 7, std: 0.15, BlurRoutine.Exponential, BlurPadding.Circular),
        "blur-mean" => new BlurDegradation(4, kernelSize: 3, std: 0.7, BlurRoutine.Constant, BlurPadding.Reflect, meanAtFinalStep: true),
        "mask" => new GaussianMaskDegradation(6, kernelStd: 0.3, randomCentre: false, initialMask: 3),
        "mask-random" => new GaussianMaskDegradation(6, kernelStd: 0.3, randomCentre: true, initialMask: 3, centreSeed: 11),
        "superres" => new SuperResolutionDegradation(3),
        "fade" => new FadeDegradation(5),
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    public static TheoryData<string> All()
    {
        var data = new TheoryData<string>();
        foreach (var name in Names) data.Add(name);
        return data;
    }

    /// <summary>Images uniform in [−1, 1].</summary>
    public static Tensor RandomImages(long batch, long channels, long size, ulong seed) =>
        torch.rand([batch, channels, size, size], generator: new Generator(seed)) * 2 - 1;

    public static Tensor Levels(params long[] t) => torch.tensor(t, dtype: ScalarType.Int64);

    public static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().to(ScalarType.Float64).item<double>();
}

/// <summary>
/// The exact restoration for a finite set of source images under a deterministic degradation:
/// x̂_0 is the source whose D_t, computed at the query's own batch position (so random mask centres
/// match), is nearest to x_t. An optional error turns it into a controlled imperfect restorer.
/// </summary>
internal sealed class NearestSourceOracle(Degradation degradation, Tensor sources, Func<Tensor, Tensor, Tensor>? error = null)
    : IPosteriorModel<PointPosterior>
{
    /// <summary>Index of the identified source for each query.</summary>
    public Tensor Identify(Tensor xt, Tensor t)
    {
        long batch = xt.shape[0], count = sources.shape[0];
        var distances = new List<Tensor>();
        for (long j = 0; j < count; j++)
        {
            var candidate = sources[j].unsqueeze(0).expand(xt.shape).contiguous();
            distances.Add((degradation.Apply(candidate, t) - xt).square().sum([1, 2, 3]));
        }
        return torch.stack(distances, 0).argmin(0); // [B]
    }

    public PointPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        var index = Identify(xt, t);
        var exact = sources.index_select(0, index);
        return new PointPosterior(error is null ? exact : exact + error(exact, index));
    }
}

/// <summary>A fixed pool of smooth random images, drawn with the trainer's generator.</summary>
internal sealed class SmoothImages : IDataSource
{
    private readonly Tensor _pool;

    public SmoothImages(int count, long size, ulong seed)
    {
        var coarse = torch.randn([count, 1, size / 2, size / 2], generator: new Generator(seed));
        _pool = nn.functional.interpolate(coarse, size: [size, size], mode: InterpolationMode.Bilinear, align_corners: false).tanh();
        SampleShape = [1, size, size];
    }

    public string Name => "smooth";

    public long[] SampleShape { get; }

    public Tensor Sample(int count, Generator generator, Device? device = null)
    {
        using var index = torch.randint(0, _pool.shape[0], [count], dtype: ScalarType.Int64, generator: generator);
        return _pool.index_select(0, index).to(device ?? torch.CPU);
    }
}
