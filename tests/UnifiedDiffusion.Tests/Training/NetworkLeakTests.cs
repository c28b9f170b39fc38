using TorchSharp;
using UnifiedDiffusion.Cli.Bench;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Tokens;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Training;

/// <summary>
/// The bench's reference networks (UNet, Transformer) in small sizes: training and every sampler
/// must leave the live native tensor count where it was (counts, not time or RSS).
/// </summary>
[Collection(nameof(LiveTensorCounting))]
public sealed class NetworkLeakTests(ITestOutputHelper output)
{
    private static long LiveCount() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    private static void Train(Trainer trainer, int steps)
    {
        trainer.Options = trainer.Options with { Steps = (int)trainer.Step + steps };
        trainer.Run(null);
    }

    [Fact]
    public void UNetTrainingAndGaussianSamplingLeaveNoLiveTensorsBehind()
    {
        long[] shape = [1, 8, 8];
        var config = new UNetConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], TimeEmbedding: 16);
        var process = new GaussianProcess(NoiseSchedule.Create(new ScheduleConfig(Levels: 100)));
        var network = new UNet(config);
        var model = new GaussianPosteriorModel(process, network, PredictionType.Epsilon, 1.0);
        var data = new RandomImages(shape);
        var trainer = new Trainer(network, (x0, g) => DenoisingObjective.Loss(process, model, x0, g), data,
            new TrainingOptions(Steps: 0, BatchSize: 4, WarmupSteps: 0), "leak-test");
        var gamma = new GammaTable(process.Levels);
        Tensor Sample(string kind, long seed) =>
            GaussianSampling.Sample(process, model, gamma, new GaussianSamplerSpec(kind, 5), 4, shape, new Generator((ulong)seed));
        gamma.Estimate(model, process, data, GaussianSampling.Grid(new GaussianSamplerSpec("analytic-ddim", 5), process.Levels), 8, seed: 1);
        Train(trainer, 2); // warm-up: optimizer state, schedule tables
        var kinds = GaussianSamplers.Registry.Names.ToList();
        foreach (var kind in kinds) using (Sample(kind, 0)) { }

        long before = LiveCount();
        Train(trainer, 10);
        foreach (var kind in kinds) using (Sample(kind, 1)) { }
        long after = LiveCount();
        output.WriteLine($"live tensors before {before}, after {after}");
        Assert.True(after - before <= 0, $"{after - before} tensors leaked over 10 UNet training steps and 4 samplers");
    }

    [Fact]
    public void TransformerTrainingAndTokenSamplingLeaveNoLiveTensorsBehind()
    {
        const int vocab = 24, length = 6;
        var config = new TransformerConfig(Dimension: 16, Layers: 1, Heads: 2, FeedForward: 32, Dropout: 0.1);
        var mask = new MaskProcess(length);
        var edit = new EditProcess(length, vocab);
        var network = new TextTransformer(vocab, length, config, length);
        var editNetwork = new TextTransformer(vocab, length, config, length);
        editNetwork.eval();
        var maskModel = new TokenPosteriorModel(network, mask, vocab);
        var editModel = new TokenPosteriorModel(editNetwork, edit, vocab);
        var trainer = new Trainer(network, (x0, g) => DenoisingObjective.Loss(mask, maskModel, x0, g), new RandomTokens(length, vocab),
            new TrainingOptions(Steps: 0, BatchSize: 8, WarmupSteps: 0), "leak-test");
        Tensor Sample(bool isMask, long seed)
        {
            // As TokenFamilyModel.Sample: the caching posterior model around the improved kernels.
            using var cached = new CachingPosteriorModel(isMask ? maskModel : editModel, levelFromInput: isMask);
            var kernel = isMask ? mask.ImprovedKernel(confident: false) : edit.ImprovedKernel(confident: false);
            var sampler = new Sampler<CategoricalPosterior>(isMask ? mask : edit, cached, kernel);
            return sampler.Sample([5, length], TimeGrid.Parse("trailing", length, length), torch.CPU, new Generator((ulong)seed));
        }
        Train(trainer, 2);
        using (Sample(true, 0)) { }
        using (Sample(false, 0)) { }

        long before = LiveCount();
        Train(trainer, 10);
        using (Sample(true, 1)) { }
        using (Sample(false, 1)) { }
        long after = LiveCount();
        output.WriteLine($"live tensors before {before}, after {after}");
        Assert.True(after - before <= 0, $"{after - before} tensors leaked over 10 Transformer training steps and mask/edit sampling");
    }
}
