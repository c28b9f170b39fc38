using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Latent;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Latent;

/// <summary>The encoding process on small tensors: F_t, its inversion, the latent normalisation and the gradient path into Enc.</summary>
public sealed class EncodingProcessTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Create(new ScheduleConfig(Levels: 100));

    /// <summary>A conv encoder whose residual branch is not zero, so Enc is not just x/rms(x).</summary>
    internal static ConvEncoder RandomConvEncoder(bool normalize = true, double scale = 1, int seed = 1)
    {
        // Every parameter is overwritten from a private generator: tests in parallel share the global one.
        var encoder = new ConvEncoder(1, width: 6, layers: 2, normalize: normalize);
        var generator = new Generator((ulong)seed);
        using (torch.no_grad())
            foreach (var p in encoder.parameters()) p.copy_(torch.randn(p.shape, generator: generator).mul_(scale));
        return encoder;
    }

    [Fact]
    public void CorruptIsSignalTimesEncodingPlusNoiseAndInvertsExactly()
    {
        using var scope = torch.NewDisposeScope();
        var encoder = RandomConvEncoder();
        var process = new EncodingProcess(Schedule, encoder, [1, 5, 5]);
        var generator = new Generator(3);
        var x0 = torch.rand([4, 1, 5, 5], generator: generator) * 2 - 1;
        var t = torch.tensor(new long[] { 1, 30, 70, 100 });
        var noise = process.SampleNoise(x0, generator);
        Assert.Equal([4L, 1, 5, 5], noise.shape);
        using var noGrad = torch.no_grad();
        var xt = process.Corrupt(x0, t, noise);
        var latent = encoder.forward(x0);
        for (int i = 0; i < 4; i++)
        {
            int level = (int)t[i].item<long>();
            var expected = latent[i] * Schedule.Signal(level) + noise[i] * Schedule.Noise(level);
            Assert.True((xt[i] - expected).abs().max().item<float>() < 1e-5f, $"F_t differs at t={level}");
        }
        Assert.True((process.InferNoise(x0, xt, t) - noise).abs().max().item<float>() < 1e-3f, "F_t⁻¹ does not recover ε");
        Assert.True((process.CorruptAt(x0, 0, noise) - latent).abs().max().item<float>() < 1e-6f, "F_0 must be Enc(x_0)");
    }

    [Fact]
    public void NormalisedLatentsHaveUnitRmsWhateverTheEncoderScale()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var x0 = torch.rand([6, 1, 5, 5], generator: new Generator(4));
        foreach (double scale in new[] { 1e-3, 1.0, 1e3 })
        {
            var rms = RandomConvEncoder(normalize: true, scale: scale).forward(x0).pow(2).mean([1, 2, 3]).sqrt();
            Assert.True((rms - 1).abs().max().item<float>() < 1e-4f, $"scale {scale}: RMS {rms}");
        }
        var raw = RandomConvEncoder(normalize: false, scale: 1e3).forward(x0).pow(2).mean([1, 2, 3]).sqrt();
        Assert.True(raw.min().item<float>() > 10, "an unnormalised encoder keeps its scale");
    }

    [Fact]
    public void TokenLatentsAreSequencesOfTheEncoderWidth()
    {
        using var scope = torch.NewDisposeScope();
        var encoder = new TokenEmbeddingEncoder(vocabSize: 7, width: 3);
        var process = new EncodingProcess(Schedule, encoder, [5]);
        Assert.Equal([5L, 3], process.LatentShape);
        var tokens = torch.randint(0, 7, [4, 5], dtype: ScalarType.Int64, generator: new Generator(5));
        Assert.Equal([4L, 5, 3], process.SampleNoise(tokens, null).shape);
        using var noGrad = torch.no_grad();
        var latent = encoder.forward(tokens);
        Assert.True((latent.pow(2).mean([1, 2]) - 1).abs().max().item<float>() < 1e-4f);
    }

    [Fact]
    public void TheLossTrainsTheEncoderThroughTheForwardProcess()
    {
        using var scope = torch.NewDisposeScope();
        var encoder = RandomConvEncoder();
        var process = new EncodingProcess(Schedule, encoder, [1, 5, 5]);
        var network = new EncoderDecoder(encoder, new UnifiedDiffusion.Networks.UNet(new UnifiedDiffusion.Networks.UNetConfig(BaseChannels: 4, ChannelMultipliers: [1], AttentionAtLowest: false, TimeEmbedding: 8)));
        var model = new GaussianDecoderModel(process, network);
        var x0 = torch.rand([4, 1, 5, 5], generator: new Generator(6));
        var loss = DenoisingObjective.Loss(process, model, x0, new Generator(7));
        loss.backward();
        Assert.All(encoder.parameters(), p => Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, "no gradient reached the encoder"));
        Assert.Contains(network.named_parameters(), p => p.name.StartsWith("_encoder."));
    }

    [Fact]
    public void EncodingsAreReusedOnlyForTheSameTensorOutsideAutograd()
    {
        using var scope = torch.NewDisposeScope();
        var process = new EncodingProcess(Schedule, RandomConvEncoder(), [1, 5, 5]);
        using var noGrad = torch.no_grad();
        var a = torch.rand([2, 1, 5, 5], generator: new Generator(8));
        var b = a.clone().add_(0.5);
        var first = process.Encode(a);
        Assert.True((process.Encode(a) - first).abs().max().item<float>() == 0);
        Assert.True((process.Encode(b) - first).abs().max().item<float>() > 1e-3, "a different x̂_0 must be encoded afresh");
    }
}
