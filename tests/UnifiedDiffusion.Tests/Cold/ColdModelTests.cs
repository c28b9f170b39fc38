using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Cold;

/// <summary>The colour-mixture prior and a short training run of a cold posterior model.</summary>
public sealed class ColdModelTests(ITestOutputHelper output)
{
    private static readonly double[][] Colours = [[-0.5, 0.2, 0.6], [0.5, -0.3, -0.1]];

    /// <summary>300 textured images whose mean colours come from two clusters (200 and 100 images).</summary>
    private static Tensor ClusteredImages()
    {
        var generator = new Generator(70);
        var colour = torch.tensor(Enumerable.Range(0, 300).SelectMany(i => Colours[i < 200 ? 0 : 1]).ToArray(), dtype: ScalarType.Float32).reshape(300, 3, 1, 1);
        var jitter = torch.randn([300, 3, 1, 1], generator: generator) * 0.05;
        var texture = torch.randn([300, 3, 8, 8], generator: generator);
        texture = texture - texture.mean([2, 3], keepdim: true); // keeps each image's mean colour
        return colour + jitter + texture * 0.3;
    }

    [Fact]
    public void ColourPriorFindsTheClustersAndDrawsConstantImagesWithTheirColours()
    {
        using var scope = torch.NewDisposeScope();
        var images = ClusteredImages();
        var prior = ChannelMeanMixturePrior.Fit(images, components: 2, seed: 1, noiseStd: 0);
        var again = ChannelMeanMixturePrior.Fit(images, components: 2, seed: 1, noiseStd: 0);
        Assert.Equal(prior.Means.Cast<double>(), again.Means.Cast<double>());
        int first = prior.Means[0, 0] < 0 ? 0 : 1;
        for (int c = 0; c < 3; c++)
        {
            Assert.True(Math.Abs(prior.Means[first, c] - Colours[0][c]) < 0.02);
            Assert.True(Math.Abs(prior.Means[1 - first, c] - Colours[1][c]) < 0.02);
            Assert.True(Math.Abs(Math.Sqrt(prior.Variances[first, c]) - 0.05) < 0.02);
        }
        Assert.True(Math.Abs(prior.Weights[first] - 2.0 / 3) < 0.02);

        var draws = prior.Sample([2000, 3, 8, 8], torch.CPU, new Generator(71));
        Assert.True((draws.amax([2, 3]) - draws.amin([2, 3])).eq(0).all().item<bool>(), "draws must be constant images");
        var colours = draws.mean([2, 3]);
        var dataColours = images.mean([2, 3]);
        Assert.True(MaxAbs(colours.mean([0]), dataColours.mean([0])) < 0.03);
        double nearFirst = (colours.narrow(1, 0, 1) < 0).to(ScalarType.Float32).mean().item<float>();
        Assert.True(Math.Abs(nearFirst - 2.0 / 3) < 0.04);

        var noisy = prior.WithNoise(0.002).Sample([200, 3, 8, 8], torch.CPU, new Generator(72));
        double pixelStd = (noisy - noisy.mean([2, 3], keepdim: true)).std().item<float>();
        Assert.True(Math.Abs(pixelStd - 0.002) < 0.0005);
        Assert.Throws<UdmException>(() => prior.Sample([1, 1, 8, 8], torch.CPU, null));
    }

    private static double MaxAbs(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData("blur")]
    [InlineData("mask-random")]
    public void ShortTrainingLowersTheRestorationLoss(string name)
    {
        Degradation degradation = name == "blur"
            ? new BlurDegradation(5, kernelSize: 5, std: 1.0, BlurRoutine.Constant, BlurPadding.Circular)
            : new GaussianMaskDegradation(5, kernelStd: 0.3, randomCentre: true, initialMask: 3);
        var process = new ColdProcess(degradation);
        var config = new UNetConfig(InChannels: 1, BaseChannels: 8, ChannelMultipliers: [1, 2], TimeEmbedding: 16, AttentionAtLowest: false);
        var network = new UNet(config);
        var model = new ColdPosteriorModel(process, network);
        var options = new TrainingOptions(Steps: 30, BatchSize: 16, LearningRate: 3e-3, WarmupSteps: 0, Seed: 5, Decay: LearningRateDecay.Constant);
        var trainer = new Trainer(network, (x0, g) => DenoisingObjective.Loss(process, model, x0, g), new SmoothImages(32, 8, 80), options, "{}");
        var watch = System.Diagnostics.Stopwatch.StartNew();
        trainer.Run(null);
        var losses = trainer.Losses;
        double start = losses.Take(5).Average(), end = losses.TakeLast(5).Average();
        output.WriteLine($"{name}: loss {start:F4} → {end:F4} in {watch.ElapsedMilliseconds} ms");
        Assert.True(end < 0.7 * start, $"loss did not go down: {start:F4} → {end:F4}");
    }

    [Fact]
    public void LabelledTrainingRunsThroughTheGenericTrainer()
    {
        var process = new ColdProcess(new FadeDegradation(4));
        var config = new UNetConfig(InChannels: 1, BaseChannels: 8, ChannelMultipliers: [1, 2], TimeEmbedding: 16, ClassCount: 2, AttentionAtLowest: false);
        var network = new UNet(config);
        var model = new ColdPosteriorModel(process, network);
        var labelsSeen = new List<Tensor?>();
        Tensor Loss(Tensor x0, Tensor? labels, Generator g)
        {
            var kept = ClassConditioning.DropLabels(labels, 2, 0.2, g);
            labelsSeen.Add(kept?.clone().DetachFromDisposeScope());
            return DenoisingObjective.Loss(process, model, x0, g, new Conditioning(kept));
        }
        var trainer = new Trainer(network, Loss, new LabeledSmoothImages(), new TrainingOptions(Steps: 3, BatchSize: 8, WarmupSteps: 0), "{}");
        trainer.Run(null);
        Assert.Equal(3, trainer.Losses.Count);
        Assert.All(trainer.Losses, l => Assert.True(float.IsFinite(l)));
        // The labels reached the loss through the conditioning, with ∅ (= 2) for the dropped ones.
        Assert.All(labelsSeen, l => Assert.True(l is not null && l.le(2).all().item<bool>() && l.shape[0] == 8));
        labelsSeen.ForEach(l => l?.Dispose());
    }

    private sealed class LabeledSmoothImages : ILabeledDataSource
    {
        private readonly SmoothImages _images = new(16, 8, 90);

        public int ClassCount => 2;
        public string Name => "labelled";
        public long[] SampleShape => _images.SampleShape;
        public Tensor Sample(int count, Generator generator, Device? device = null) => _images.Sample(count, generator, device);

        public (Tensor Samples, Tensor Labels) SampleLabeled(int count, Generator generator, Device? device = null)
        {
            var samples = _images.Sample(count, generator, device);
            return (samples, (samples.mean([1, 2, 3]) > 0).to(ScalarType.Int64));
        }
    }
}
