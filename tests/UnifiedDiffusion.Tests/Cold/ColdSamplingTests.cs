using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static UnifiedDiffusion.Tests.Cold.Degradations;

namespace UnifiedDiffusion.Tests.Cold;

/// <summary>
/// The cold process and its samplers against exact restorations: the invert identity, oracle
/// restoration with both samplers, TACoS's tolerance of restoration errors (Bansal et al., sec. 3.3),
/// and the interpolate kernel's end points.
/// </summary>
public sealed class ColdSamplingTests(ITestOutputHelper output)
{
    private static readonly int[] FullGrid = [6, 5, 4, 3, 2, 1, 0];

    /// <summary>A cold sampler's kernel by its registry name, with σ̃ for interpolate.</summary>
    internal static IReverseKernel<IPosterior> Kernel(string name, double noiseFraction = 0) => ColdSampling.Registry.Find(name).Kernel!(noiseFraction);

    internal static SamplingContext Seeded(ulong seed) => new() { Generator = new Generator(seed) };

    [Theory]
    [MemberData(nameof(All), MemberType = typeof(Degradations))]
    public void InvertStepWithTheTrueImageLandsExactlyOnItsDegradation(string name)
    {
        using var scope = torch.NewDisposeScope();
        var process = new ColdProcess(Create(name));
        var x0 = RandomImages(3, 3, 8, 10);
        int t = process.Levels, s = t - 2;
        var xt = process.CorruptAt(x0, t, process.SampleNoise(x0, new Generator(1)));
        Assert.True(xt.eq(process.Degradation.Apply(x0, t)).all().item<bool>());
        var step = new ReverseStep(t, s, 0, [t, s, 0]);
        var xs = new InvertKernel().Step(process, xt, step, new PointPosterior(x0), new SamplingContext());
        Assert.True(xs.eq(process.Degradation.Apply(x0, s)).all().item<bool>());
    }

    [Theory]
    [InlineData("blur-circular", "naive")]
    [InlineData("blur-circular", "tacos")]
    [InlineData("mask-random", "naive")]
    [InlineData("mask-random", "improved")]
    [InlineData("blur-circular", "multistep")]
    [InlineData("mask-random", "multistep")]
    public void ExactRestorationReturnsTheSourceWithBothSamplers(string degradationName, string sampler)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create(degradationName);
        var process = new ColdProcess(degradation);
        var sources = RandomImages(8, 1, 8, 20);
        var oracle = new NearestSourceOracle(degradation, sources);
        var truth = sources.index_select(0, Levels(3, 0, 7, 5, 1, 6, 2, 4, 3, 3));
        var start = degradation.Apply(truth, degradation.Levels);
        var restored = ColdSampling.Restore(process, oracle, start, FullGrid, Kernel(sampler), Seeded(2));
        // TACoS's step onto 0 adds the inferred residual x_1 − D_1(x̂_0), zero on an exact trajectory up to float32 rounding.
        Assert.True(MaxAbs(restored, truth) < 1e-5);
    }

    /// <summary>
    /// With x̂_0 = x_0 + δ (a fixed error that never vanishes), the improved sampler's state follows
    /// D_s(x_0) + (D_s − D_T)δ while the naive one's follows D_s(x_0 + δ): for a blur, which keeps
    /// constants and smooths δ, the improved trajectory stays much closer to the true path.
    /// </summary>
    [Theory]
    [InlineData("offset")]
    [InlineData("mix")]
    public void ImprovedSamplerToleratesAnImperfectRestorer(string kind)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create("blur-circular");
        var process = new ColdProcess(degradation);
        var sources = RandomImages(8, 1, 8, 30);
        var pattern = torch.randn([1, 1, 8, 8], generator: new Generator(31));
        Func<Tensor, Tensor, Tensor> error = kind == "offset"
            ? (_, _) => pattern * 0.2 + 0.3
            // (1 − λ)·x_0 + λ·(the next source image), λ = 0.3
            : (exact, index) => (sources.index_select(0, (index + 1) % 8) - exact) * 0.3;
        var oracle = new NearestSourceOracle(degradation, sources, error);
        var truth = sources;
        var start = degradation.Apply(truth, degradation.Levels);

        (double Final, double LowestLevel) Run(string sampler)
        {
            Tensor? lowest = null;
            var options = new SamplingOptions { OnStep = p => { if (p.Step.S == 1) lowest = p.Xs.clone().DetachFromDisposeScope(); } };
            var final = ColdSampling.Restore(process, oracle, start, FullGrid, Kernel(sampler), Seeded(3), options);
            double finalError = (final - truth).square().mean().sqrt().item<float>();
            double lowestError = (lowest! - degradation.Apply(truth, 1)).square().mean().sqrt().item<float>();
            lowest!.Dispose();
            return (finalError, lowestError);
        }

        var naive = Run("naive");
        var improved = Run("tacos");
        output.WriteLine($"{kind}: RMS error at level 1 naive {naive.LowestLevel:F4}, improved {improved.LowestLevel:F4}; final naive {naive.Final:F4}, improved {improved.Final:F4}");
        Assert.True(improved.LowestLevel < (kind == "offset" ? 0.5 : 1.0) * naive.LowestLevel);
        Assert.True(improved.Final <= naive.Final);
    }

    [Fact]
    public void InterpolateEndPointsAreTheImprovedAndNaiveSamplers()
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create("blur-circular");
        var process = new ColdProcess(degradation, sigma: 0.05);
        var sources = RandomImages(8, 1, 8, 40);
        var oracle = new NearestSourceOracle(degradation, sources);
        var start = process.CorruptAt(sources, process.Levels, process.SampleNoise(sources, new Generator(41)));
        Tensor Run(string kind, double fraction) =>
            ColdSampling.Restore(process, oracle, start, [6, 4, 2, 1, 0], Kernel(kind, fraction), Seeded(42));
        Assert.True(Run("interpolate", 0).eq(Run("tacos", 0)).all().item<bool>());
        Assert.True(Run("interpolate", 1).eq(Run("naive", 0)).all().item<bool>());
        Assert.True(Run("tacos", 0).eq(sources).all().item<bool>());
    }

    /// <summary>
    /// The step onto level 0 with an imperfect x̂_0: tacos keeps the inferred residual as the article
    /// writes it, x_0 = x_1 − D_1(x̂_0) + x̂_0; tacos-x0 returns x̂_0; with σ &gt; 0 tacos returns x̂_0,
    /// since that residual holds the noise. Every earlier step is the same for both.
    /// </summary>
    [Fact]
    public void TacosStepOntoZeroKeepsTheResidualAsTheArticleWritesIt()
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create("blur-circular");
        var x0 = RandomImages(3, 1, 8, 55);
        var guess = x0 + torch.randn(x0.shape, generator: new Generator(56)) * 0.2;
        var estimate = new PointPosterior(guess);
        var clean = new ColdProcess(degradation);
        var x1 = clean.CorruptAt(x0, 1, clean.SampleNoise(x0, null));
        var last = new ReverseStep(1, 0, 1, [2, 1, 0]);
        var expected = x1 - degradation.Apply(guess, 1) + guess;
        Assert.True(MaxAbs(Kernel("tacos").Step(clean, x1, last, estimate, new SamplingContext()), expected) < 1e-6);
        Assert.True(MaxAbs(expected, guess) > 0.01); // the residual is not negligible here
        Assert.True(Kernel("tacos-x0").Step(clean, x1, last, estimate, new SamplingContext()).eq(guess).all().item<bool>());
        var earlier = new ReverseStep(2, 1, 0, [2, 1, 0]);
        Assert.True(Kernel("tacos").Step(clean, x1, earlier, estimate, new SamplingContext())
            .eq(Kernel("tacos-x0").Step(clean, x1, earlier, estimate, new SamplingContext())).all().item<bool>());
        var noisy = new ColdProcess(degradation, sigma: 0.1);
        var noisyX1 = noisy.CorruptAt(x0, 1, noisy.SampleNoise(x0, new Generator(57)));
        Assert.True(Kernel("tacos").Step(noisy, noisyX1, last, estimate, new SamplingContext()).eq(guess).all().item<bool>());
    }

    [Fact]
    public void NoiseIsTheResidualAndLevelZeroIsClean()
    {
        using var scope = torch.NewDisposeScope();
        var x0 = RandomImages(2, 1, 8, 50);
        var clean = new ColdProcess(Create("fade"));
        Assert.True(clean.SampleNoise(x0, new Generator(1)).eq(0).all().item<bool>());
        var noisy = new ColdProcess(Create("fade"), sigma: 0.1);
        var noise = noisy.SampleNoise(x0, new Generator(1));
        Assert.True(Math.Abs(noise.std().item<float>() - 0.1) < 0.03);
        Assert.True(noisy.CorruptAt(x0, 0, noise).eq(x0).all().item<bool>());
        var xt = noisy.CorruptAt(x0, 3, noise);
        Assert.True(MaxAbs(noisy.InferNoiseAt(x0, xt, 3), noise) < 1e-6);
        Assert.Throws<UdmException>(() => noisy.SamplePrior([1, 1, 8, 8], torch.CPU, null));
        Assert.Throws<UdmException>(() => new ColdProcess(Create("fade"), sigma: -1));
    }

    [Fact]
    public void TheRegistryFindsNamesAndAliasesAndRejectsWhatASamplerDoesNotTake()
    {
        foreach (var entry in ColdSampling.Registry.Entries) Assert.Same(entry, ColdSampling.Registry.Find(entry.Name.ToUpperInvariant()));
        Assert.Equal("tacos", ColdSampling.Registry.Find("improved").Name);
        Assert.Equal("tacos", ColdSampling.Registry.Find(null).Name);
        Assert.Throws<UdmException>(() => ColdSampling.Registry.Find("ddim"));
        Assert.Throws<UdmException>(() => Kernel("interpolate", 1.5));
        var notTaken = Assert.Throws<UdmException>(() => ColdSampling.Registry.Resolve("naive", SamplerOption.Eta));
        Assert.Equal("eta", notTaken.Subject);
        Assert.Contains("interpolate", notTaken.Message);
        Assert.Throws<UdmException>(() => ColdSampling.Registry.Resolve("direct", SamplerOption.Generate));
        Assert.Equal("interpolate", ColdSampling.Registry.Resolve("interpolate", SamplerOption.Eta | SamplerOption.Generate).Name);
    }

    [Fact]
    public void DirectIsOnePassOfTheRestorer()
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create("mask");
        var sources = RandomImages(8, 1, 8, 60);
        var oracle = new NearestSourceOracle(degradation, sources);
        var direct = ColdSampling.Direct(oracle, degradation.Apply(sources, degradation.Levels), degradation.Levels);
        Assert.True(direct.eq(sources).all().item<bool>());
    }

    [Fact]
    public void GenerationStartsFromThePriorAndTheOracleEndsOnSourceImages()
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create("blur-circular");
        var sources = RandomImages(8, 1, 8, 70);
        var prior = ChannelMeanMixturePrior.Fit(sources, components: 2, seed: 3);
        var process = new ColdProcess(degradation, prior: prior);
        var oracle = new NearestSourceOracle(degradation, sources);
        double NearestSource(Tensor samples, int b) => (sources - samples.narrow(0, b, 1)).abs().amax([1, 2, 3]).min().to(ScalarType.Float64).item<double>();
        var samples = ColdSampling.Generate(process, oracle, 5, [1, 8, 8], FullGrid, Kernel("tacos-x0"), new Generator(71));
        Assert.Equal([5L, 1, 8, 8], samples.shape);
        for (int b = 0; b < 5; b++) Assert.Equal(0.0, NearestSource(samples, b));
        // The article's TACoS keeps the residual x_1 − D_1(x̂_0) at the step onto 0; a constant-colour
        // prior draw is not D_T of a source, so that residual, and the distance to every source, is not 0.
        var article = ColdSampling.Generate(process, oracle, 5, [1, 8, 8], FullGrid, Kernel("tacos"), new Generator(71));
        Assert.True(Enumerable.Range(0, 5).Max(b => NearestSource(article, b)) > 1e-3);

        var fromData = ColdPrior.FromData(new SmoothImages(16, 8, 72), new FadeDegradation(3)).Sample([4, 1, 8, 8], torch.CPU, new Generator(73));
        Assert.True((fromData.amax([2, 3]) - fromData.amin([2, 3])).abs().max().to(ScalarType.Float64).item<double>() < 1e-6);
    }
}

/// <summary>Live native tensors, counted with the other leak tests (serialised: the count is per thread but scopes are shared).</summary>
[Collection(nameof(UnifiedDiffusion.Tests.Training.LiveTensorCounting))]
public sealed class ColdLeakTests
{
    private static readonly int[] FullGrid = [6, 5, 4, 3, 2, 1, 0];

    [Fact]
    public void RestorationLeavesNoLiveTensorsBehind()
    {
        var degradation = Create("mask-random");
        var process = new ColdProcess(degradation, sigma: 0.05);
        using var sources = RandomImages(8, 1, 8, 80);
        var oracle = new NearestSourceOracle(degradation, sources);
        using var start = degradation.Apply(sources, degradation.Levels);
        var kernels = ColdSampling.Registry.Entries.Where(e => e.Kernel is not null).Select(e => e.Kernel!(0.5)).ToList();
        foreach (var kernel in kernels)
            ColdSampling.Restore(process, oracle, start, FullGrid, kernel, ColdSamplingTests.Seeded(81)).Dispose(); // warm-up
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        foreach (var kernel in kernels)
            ColdSampling.Restore(process, oracle, start, FullGrid, kernel, ColdSamplingTests.Seeded(81)).Dispose();
        long after = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.True(after - before <= 0, $"{after - before} tensors leaked over three restorations");
    }
}
