using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Latent;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Latent;

/// <summary>Rows of a fixed tensor, drawn uniformly with the caller's generator.</summary>
internal sealed class TensorData(string name, Tensor rows) : IDataSource
{
    public string Name => name;
    public long[] SampleShape => rows.shape.Skip(1).ToArray();
    public Tensor Sample(int count, Generator generator, Device? device = null) =>
        rows.index_select(0, torch.randint(0, rows.shape[0], count, dtype: ScalarType.Int64, generator: generator));
}

/// <summary>A fixed invertible linear map of the flattened sample (unnormalised): Enc(E[x_0]) = E[Enc(x_0)].</summary>
internal sealed class LinearEncoder : LatentEncoder
{
    private readonly Tensor _matrix;

    public LinearEncoder(int dimension, ulong seed) : base(nameof(LinearEncoder), normalize: false)
    {
        // Identity plus a small random part: well conditioned, so invertible.
        _matrix = (torch.eye(dimension) + torch.randn([dimension, dimension], generator: new Generator(seed)) * (0.3 / Math.Sqrt(dimension))).DetachFromDisposeScope();
    }

    public override long[] LatentShape(long[] sampleShape) => [.. sampleShape];

    protected override Tensor Embed(Tensor x0) => x0.flatten(1).matmul(_matrix.T).view(x0.shape);
}

/// <summary>
/// The encoding model against exact oracles: Enc is fixed (a random conv encoder or token
/// embedding, normalised), and the decoder is the exact posterior over a finite support. With
/// whole-x_0 draws from the exact posterior, DDPM's step q(x_s | x_t, x̂_0) is exact at any step
/// count, so the samples must follow the data distribution, whatever Enc is. DDIM re-encodes the
/// decoder's mean, Enc(E[x_0 | x_t]), which equals the E[Enc(x_0) | x_t] that DDIM needs only for a
/// linear Enc; with one, DDIM is exact in the limit of many steps. Thresholds are fixed in advance: 3× the Monte-Carlo noise floor of
/// the total-variation distance for exact samplers, 0.05 for DDIM's discretisation at 100 steps.
/// </summary>
public sealed class EncodingOracleTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int Draws = 20_000;
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Create(new ScheduleConfig());

    /// <summary>E[TV] of an exact sampler's empirical distribution: Σ_k √(p_k(1−p_k)/(2πn)).</summary>
    private static double NoiseFloor(double[] p) => p.Sum(q => Math.Sqrt(q * (1 - q) / (2 * Math.PI * Draws)));

    private static double TotalVariation(Tensor indices, double[] p)
    {
        var counts = torch.bincount(indices, minlength: p.Length).to(ScalarType.Float64).data<double>().ToArray();
        return 0.5 * p.Select((q, k) => Math.Abs(counts[k] / Draws - q)).Sum();
    }

    /// <summary>Index of the nearest support point of every sample.</summary>
    private static Tensor Nearest(Tensor samples, Tensor support) =>
        torch.cdist(samples.flatten(1).to(ScalarType.Float64), support.flatten(1).to(ScalarType.Float64)).argmin(1);

    private static readonly double[] ImageProbabilities = [0.1, 0.2, 0.3, 0.4];

    /// <summary>Four 3×3 "images" in [−1, 1].</summary>
    private static Tensor ImageSupport() => torch.tensor(new float[]
    {
        -1, -1, -1, -1, 1, -1, -1, -1, -1,
        1, -1, 1, -1, 1, -1, 1, -1, 1,
        -1, 1, -1, 1, 1, 1, -1, 1, -1,
        1, 1, 1, 1, -1, 1, 1, 1, 1,
    }).view(4, 1, 3, 3);

    private static (EncodingProcess Process, Tensor Support) ImageSetup()
    {
        var support = ImageSupport();
        var process = new EncodingProcess(Schedule, EncodingProcessTests.RandomConvEncoder(normalize: true, scale: 0.5, seed: 11), [1, 3, 3]);
        return (process, support);
    }

    [Fact]
    public void DdpmWithExactDrawsReproducesAFiniteImageDistribution()
    {
        using var scope = torch.NewDisposeScope();
        var (process, support) = ImageSetup();
        var oracle = new FiniteSetDecoder(process, support, torch.tensor(ImageProbabilities), drawMean: false);
        var sampler = new Sampler<FiniteSetPosterior>(process, oracle, GaussianKernels.Ddpm(Schedule));
        var samples = sampler.Sample([Draws, .. process.LatentShape], TimeGrid.Parse("leading", Schedule.Levels, 10), torch.CPU, new Generator(21));
        Assert.Equal([(long)Draws, 1, 3, 3], samples.shape);
        var nearest = Nearest(samples, support);
        double tv = TotalVariation(nearest, ImageProbabilities);
        output.WriteLine($"DDPM, images: TV {tv:F4}, limit {3 * NoiseFloor(ImageProbabilities):F4}");
        Assert.True(tv < 3 * NoiseFloor(ImageProbabilities), $"TV {tv:F4} against a limit of {3 * NoiseFloor(ImageProbabilities):F4}");
    }

    [Fact]
    public void DdimWithTheExactMeanReproducesAFiniteImageDistribution()
    {
        using var scope = torch.NewDisposeScope();
        var support = ImageSupport();
        var process = new EncodingProcess(Schedule, new LinearEncoder(9, seed: 12), [1, 3, 3]);
        var oracle = new FiniteSetDecoder(process, support, torch.tensor(ImageProbabilities), drawMean: true);
        var sampler = new Sampler<FiniteSetPosterior>(process, oracle, GaussianKernels.Ddim());
        var samples = sampler.Sample([Draws, .. process.LatentShape], TimeGrid.Parse("leading", Schedule.Levels, 100), torch.CPU, new Generator(22));
        double tv = TotalVariation(Nearest(samples, support), ImageProbabilities);
        output.WriteLine($"DDIM with the mean, linear Enc: TV {tv:F4}, limit 0.05");
        Assert.True(tv < 0.05, $"TV {tv:F4} against a limit of 0.05");
        // The decoder's mean at the last level is (almost) a support image, not a blend.
        Assert.True((samples - support.index_select(0, Nearest(samples, support))).abs().mean().item<float>() < 0.01f);
    }

    [Fact]
    public void DdpmWithExactDrawsReproducesAFiniteStringDistribution()
    {
        using var scope = torch.NewDisposeScope();
        double[] p = [0.05, 0.1, 0.15, 0.2, 0.2, 0.3];
        var support = torch.tensor(new long[] { 0, 1, 2, 0, 1, 3, 4, 4, 4, 2, 1, 0, 3, 3, 1, 1, 2, 2 }).view(6, 3);
        var encoder = new TokenEmbeddingEncoder(vocabSize: 5, width: 2);
        using (torch.no_grad())
            foreach (var parameter in encoder.parameters()) parameter.copy_(torch.randn(parameter.shape, generator: new Generator(31)));
        var process = new EncodingProcess(Schedule, encoder, [3]);
        var oracle = new FiniteSetDecoder(process, support, torch.tensor(p));
        var sampler = new Sampler<FiniteSetPosterior>(process, oracle, GaussianKernels.Ddpm(Schedule));
        var samples = sampler.Sample([Draws, .. process.LatentShape], TimeGrid.Parse("leading", Schedule.Levels, 10), torch.CPU, new Generator(32));
        Assert.Equal([(long)Draws, 3], samples.shape);
        // Every sample is a whole support string; identify it exactly.
        var matches = samples.unsqueeze(1).eq(support.unsqueeze(0)).all(2); // [n, K]
        Assert.True(matches.any(1).all().item<bool>(), "a sample is not one of the support strings");
        double tv = TotalVariation(matches.to(ScalarType.Int64).argmax(1), p);
        output.WriteLine($"DDPM, strings: TV {tv:F4}, limit {3 * NoiseFloor(p):F4}");
        Assert.True(tv < 3 * NoiseFloor(p), $"TV {tv:F4} against a limit of {3 * NoiseFloor(p):F4}");
    }

    [Fact]
    public void TheTokenDecoderDrawsEveryPositionFromItsMarginal()
    {
        using var scope = torch.NewDisposeScope();
        var logProbabilities = torch.tensor(new[] { 0.1, 0.2, 0.7 }).log().to(ScalarType.Float32).view(1, 1, 3).expand(Draws, 2, 3).contiguous();
        var draws = new TokenDecoderPosterior(logProbabilities).Draw(new Generator(41));
        Assert.Equal([(long)Draws, 2], draws.shape);
        var frequencies = torch.bincount(draws.flatten(), minlength: 3).to(ScalarType.Float64).div(2.0 * Draws).data<double>().ToArray();
        Assert.Equal(0.1, frequencies[0], 0.01);
        Assert.Equal(0.2, frequencies[1], 0.01);
        Assert.Equal(0.7, frequencies[2], 0.01);
    }
}
