using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Runs;
using Xunit;

namespace UnifiedDiffusion.Tests.Training;

/// <summary>The README's library examples, kept compiling and working (with a tiny budget).</summary>
public sealed class ReadmeExampleTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-readme-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void TrainAndSampleInCode()
    {
        var config = Recipes.Get("gmm8") with { Training = new TrainingOptions(Steps: 50, Seed: 1) };
        var run = Experiment.Create(config);
        run.Train(Path.Combine(_root, "gmm8"));

        var request = new SamplerRequest("analytic-ddim", Steps: 20);
        using var samples = run.Model.Sample(request, count: 1000, seed: 0);
        var (w2, logDensity) = Evaluation.Measure(samples, run.Data, seed: 0);

        Assert.Equal([1000L, 2L], samples.shape);
        Assert.True(double.IsFinite(w2) && w2 > 0);
        Assert.NotNull(logDensity);
        // Sampling is reproducible from its seed, and the Γ table was stored with the run.
        using var again = run.Model.Sample(request, count: 1000, seed: 0);
        Assert.True(samples.equal(again).all().item<bool>());
        Assert.True(File.Exists(Path.Combine(_root, "gmm8", Experiment.Files.Gamma)));
    }

    [Fact]
    public void TokenAndColdExamples()
    {
        // Mask model: the Gibbs-like improved sampler with the exact posterior of a small distribution.
        var mask = new UnifiedDiffusion.Tokens.MaskProcess(length: 3);
        var oracle = new UnifiedDiffusion.Tokens.FiniteStringOracle([[3, 4, 5], [4, 4, 6], [5, 3, 3]], [0.5, 0.3, 0.2], mask, vocabSize: 7);
        using var strings = new Sampler<UnifiedDiffusion.Tokens.CategoricalPosterior>(mask, oracle, mask.ImprovedKernel(confident: false))
            .Sample([1000, 3], TimeGrid.Create(3, 3, TimeSpacing.Trailing), torch.CPU, new torch.Generator(1));
        double tv = oracle.TotalVariation(strings);
        Assert.True(tv < 3 * oracle.ExpectedSamplingTotalVariation(1000), $"TV {tv}");

        // Cold: deblurring with the improved sampler and the exact restorer of a single image.
        var cold = new UnifiedDiffusion.Cold.ColdProcess(new UnifiedDiffusion.Cold.BlurDegradation(levels: 20, kernelSize: 11, std: 7));
        using var image = torch.rand(1, 1, 12, 12, generator: new torch.Generator(2)) * 2 - 1;
        using var degraded = cold.CorruptAt(image, 20, torch.zeros_like(image));
        IPosteriorModel<IPosterior> restorer = new ExactRestorer(image);
        using var restored = UnifiedDiffusion.Cold.ColdSampling.Restore(cold, restorer, degraded, TimeGrid.Create(20, 20, TimeSpacing.Trailing),
            new InvertKernel(), new SamplingContext { Generator = new torch.Generator(0) });
        Assert.True((restored - image).abs().max().item<float>() < 1e-5f);
    }

    [Fact]
    public void EncodingExample()
    {
        using var scope = torch.NewDisposeScope();
        var schedule = NoiseSchedule.Create(new ScheduleConfig());
        var encoding = new UnifiedDiffusion.Latent.EncodingProcess(schedule, new UnifiedDiffusion.Latent.TokenEmbeddingEncoder(vocabSize: 7, width: 4), sampleShape: [3]);
        var decoder = new UnifiedDiffusion.Latent.FiniteSetDecoder(encoding, torch.tensor(new long[,] { { 3, 4, 5 }, { 4, 4, 6 } }), torch.tensor(new[] { 0.7, 0.3 }));
        var drawn = new Sampler<UnifiedDiffusion.Latent.FiniteSetPosterior>(encoding, decoder, GaussianKernels.Ddpm(schedule))
            .Sample([1000, .. encoding.LatentShape], TimeGrid.Create(schedule.Levels, 10, TimeSpacing.Leading), torch.CPU, new torch.Generator(2));
        Assert.Equal([1000L, 3L], drawn.shape);
        // Every draw is one of the two strings, in proportions 0.7 / 0.3 (±5 standard errors).
        double first = drawn.eq(torch.tensor(new long[] { 3, 4, 5 })).all(1).to(torch.ScalarType.Float64).mean().item<double>();
        double second = drawn.eq(torch.tensor(new long[] { 4, 4, 6 })).all(1).to(torch.ScalarType.Float64).mean().item<double>();
        Assert.Equal(1.0, first + second, 6);
        Assert.InRange(first, 0.7 - 5 * 0.0145, 0.7 + 5 * 0.0145);

        var trainingData = new UnifiedDiffusion.Tests.Latent.TensorData("two", torch.tensor(new long[,] { { 3, 4, 5 }, { 4, 4, 6 } }));
        var prior = UnifiedDiffusion.Latent.LatentPriorCheck.Measure(encoding, trainingData, samples: 2000, projections: 32, seed: 0);
        Assert.True(prior.KsPasses, $"KS {prior.MaxKs} ≥ {prior.KsCritical}");
    }

    private sealed class ExactRestorer(torch.Tensor image) : IPosteriorModel<IPosterior>
    {
        public IPosterior Predict(torch.Tensor xt, torch.Tensor t, SamplingContext? context = null) => new PointPosterior(image.expand(xt.shape));
    }

    [Fact]
    public void CoreSamplerLoopWithOracle()
    {
        var process = new GaussianProcess(NoiseSchedule.Create(new ScheduleConfig()));
        IPosteriorModel<GaussianPosterior> model = new MixtureOracle(GaussianMixture.Ring8(), process);
        var sampler = new Sampler<GaussianPosterior>(process, model, GaussianKernels.Ddpm(process.Schedule));
        int[] grid = TimeGrid.Create(process.Levels, steps: 50, TimeSpacing.Trailing);
        var levels = new List<(int T, int S)>();
        using var x0 = sampler.Sample([1000, 2], grid, torch.CPU, new torch.Generator(42),
            new SamplingOptions { OnStep = p => levels.Add((p.Step.T, p.Step.S)) });

        Assert.Equal(50, levels.Count);
        Assert.Equal((1000, 980), levels[0]);
        Assert.Equal(0, levels[^1].S);
        // With the exact denoiser, every sample ends near the ring of radius 2.
        var radius = x0.norm(1).mean().item<float>();
        Assert.InRange(radius, 1.9f, 2.1f);
    }
}

/// <summary>Γ_t is a property of the model: the same whichever levels were estimated before.</summary>
public sealed class GammaReproducibilityTests
{
    [Fact]
    public void GammaAtALevelDoesNotDependOnEarlierRequests()
    {
        var mixture = GaussianMixture.Ring8();
        var process = new GaussianProcess(NoiseSchedule.Create(new ScheduleConfig()));
        var oracle = new MixtureOracle(mixture, process);
        var fresh = new GammaTable(1000);
        fresh.Estimate(oracle, process, mixture, [500], 500, seed: 3);
        var warmed = new GammaTable(1000);
        warmed.Estimate(oracle, process, mixture, [100, 900], 500, seed: 3);
        warmed.Estimate(oracle, process, mixture, [500], 500, seed: 3);
        Assert.Equal(fresh[500], warmed[500]);
        Assert.Equal(fresh.Get(500, GammaEstimator.Residual), warmed.Get(500, GammaEstimator.Residual));
    }
}
