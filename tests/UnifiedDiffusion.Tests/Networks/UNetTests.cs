using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Networks;

/// <summary>The image UNet, its guidance wrapper and the label-dropout training helper.</summary>
public sealed class UNetTests
{
    private static UNetConfig Tiny(int channels = 1, int classes = 0) =>
        new(InChannels: channels, BaseChannels: 8, ChannelMultipliers: [1, 2, 2], TimeEmbedding: 16, ClassCount: classes);

    // Initialisation uses the global RNG on purpose (no manual_seed: it is process-wide); every
    // assertion compares outputs of one network, so no test depends on the initial values.
    private static UNet Build(UNetConfig config)
    {
        var network = new UNet(config);
        network.eval();
        return network;
    }

    private static Tensor Images(long batch, long channels, long size, ulong seed) =>
        torch.randn([batch, channels, size, size], generator: new Generator(seed));

    private static Tensor Levels(params long[] t) => torch.tensor(t, dtype: ScalarType.Int64);

    [Theory]
    [InlineData(1, 28)]
    [InlineData(3, 8)]
    [InlineData(1, 7)]
    public void OutputHasTheInputShape(int channels, int size)
    {
        using var scope = torch.NewDisposeScope();
        var network = Build(Tiny(channels));
        var x = Images(2, channels, size, 1);
        using var noGrad = torch.no_grad();
        var y = network.forward(x, Levels(3, 17));
        Assert.Equal(x.shape, y.shape);
        Assert.True(y.isfinite().all().item<bool>());
    }

    [Fact]
    public void GradientsReachEveryParameter()
    {
        using var scope = torch.NewDisposeScope();
        var network = Build(Tiny(1, classes: 3) with { Dropout = 0.1 });
        network.train();
        var y = network.Forward(Images(3, 1, 8, 2), Levels(1, 5, 9), Levels(0, 2, 3));
        y.square().mean().backward();
        foreach (var (name, parameter) in network.named_parameters())
        {
            Assert.True(parameter.grad is not null, $"{name} has no gradient");
            Assert.True(parameter.grad!.abs().sum().item<float>() > 0, $"{name} has an all-zero gradient");
        }
    }

    [Fact]
    public void GroupNormsStartAsIdentityAffine()
    {
        var network = Build(Tiny());
        foreach (var (name, parameter) in network.named_parameters().Where(p => p.name.Contains("norm", StringComparison.OrdinalIgnoreCase)))
        {
            float expected = name.EndsWith("weight", StringComparison.Ordinal) ? 1f : 0f;
            Assert.True(parameter.eq(expected).all().item<bool>(), $"{name} is not initialised to {expected}");
        }
    }

    [Fact]
    public void LabelsChangeTheOutputAndNullMeansNoLabel()
    {
        using var scope = torch.NewDisposeScope();
        var network = Build(Tiny(1, classes: 4));
        var x = Images(2, 1, 8, 3);
        var t = Levels(4, 4);
        using var noGrad = torch.no_grad();
        var unconditional = network.forward(x, t);
        var conditional = network.Forward(x, t, Levels(1, 2));
        var explicitNull = network.Forward(x, t, Levels(4, 4));
        Assert.True((conditional - unconditional).abs().max().item<float>() > 1e-4);
        Assert.True(explicitNull.eq(unconditional).all().item<bool>());
        Assert.Equal(4, network.NullLabel);
    }

    [Fact]
    public void GuidanceScaleZeroIsExactlyConditionalAndNullLabelsAreUnconditional()
    {
        using var scope = torch.NewDisposeScope();
        var network = Build(Tiny(1, classes: 3));
        var x = Images(3, 1, 8, 4);
        var t = Levels(2, 6, 9);
        var labels = Levels(0, 1, 2);
        using var noGrad = torch.no_grad();
        var conditional = network.Forward(x, t, labels);
        var unconditional = network.forward(x, t);
        Assert.True(ClassConditioning.Forward(network, x, t, new Conditioning(labels, 0)).eq(conditional).all().item<bool>());
        Assert.True(ClassConditioning.Forward(network, x, t, new Conditioning(null, 3)).eq(unconditional).all().item<bool>());
        Assert.True(ClassConditioning.Forward(network, x, t, null).eq(unconditional).all().item<bool>());
        // w = 2: (1 + w)·ε(y) − w·ε(∅), from one batched forward of 2B (float32 tolerance).
        var guided = ClassConditioning.Forward(network, x, t, new Conditioning(labels, 2));
        var expected = conditional * 3 - unconditional * 2;
        Assert.True((guided - expected).abs().max().item<float>() < 1e-4);
    }

    [Fact]
    public void LabelsOnAnUnconditionalNetworkAreAUserError()
    {
        var network = Build(Tiny());
        Assert.Throws<UdmException>(() => ClassConditioning.Forward(network, Images(1, 1, 8, 5), Levels(1), new Conditioning(Levels(0), 1)));
        Assert.Throws<UdmException>(() => ClassConditioning.Forward(Build(Tiny(1, classes: 3)), Images(1, 1, 8, 5), Levels(1), new Conditioning(Levels(0), -1)));
        Assert.Throws<UdmException>(() => network.Forward(Images(1, 1, 8, 5), Levels(1), Levels(0)));
    }

    [Fact]
    public void ParameterCountMatchesTheParametersAndTheClassTable()
    {
        var plain = Build(Tiny());
        var conditional = Build(Tiny(1, classes: 10));
        long direct = plain.parameters().Sum(p => p.numel());
        Assert.Equal(direct, NetworkInfo.ParameterCount(plain));
        // The class table is (classes + 1) × 4·BaseChannels; nothing else changes.
        Assert.Equal(direct + 11 * 4 * 8, NetworkInfo.ParameterCount(conditional));
    }

    [Fact]
    public void ConfigComparesByValueAndRoundTripsThroughCamelCaseJson()
    {
        var a = Tiny(3, classes: 10);
        var b = Tiny(3, classes: 10);
        Assert.Equal(a, b);
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.NotEqual(a, a with { ChannelMultipliers = [1, 2] });
        Assert.Equal(new UNetConfig().ChannelMultipliers, [1, 2, 2]);
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        string json = JsonSerializer.Serialize(a, options);
        Assert.Contains("\"channelMultipliers\":[1,2,2]", json);
        Assert.Equal(a, JsonSerializer.Deserialize<UNetConfig>(json, options));
        Assert.Throws<UdmException>(() => new UNet(a with { TimeEmbedding = 15 }));
    }

    [Fact]
    public void LabelDropoutUsesTheGeneratorAndTheConditioningReachesTheLabelledForward()
    {
        using var scope = torch.NewDisposeScope();
        var labels = Levels(0, 1, 2, 0, 1, 2, 0, 1);
        Assert.True(ClassConditioning.DropLabels(labels, 3, 0, new Generator(1))!.eq(labels).all().item<bool>());
        Assert.True(ClassConditioning.DropLabels(labels, 3, 1, new Generator(1))!.eq(3).all().item<bool>());
        var half1 = ClassConditioning.DropLabels(labels, 3, 0.5, new Generator(9))!;
        var half2 = ClassConditioning.DropLabels(labels, 3, 0.5, new Generator(9))!;
        Assert.True(half1.eq(half2).all().item<bool>());
        Assert.Equal([8L], half1.shape);
        Assert.InRange(half1.eq(3).sum().item<long>(), 1, 7); // per-label draws, not one draw for the batch
        Assert.Null(ClassConditioning.DropLabels(null, 3, 0.5, new Generator(1)));

        // The conditioning carries the labels to the network's labelled forward, in training as in sampling.
        var network = Build(Tiny(1, classes: 3));
        var x = Images(8, 1, 8, 6);
        var t = Levels(1, 2, 3, 4, 5, 6, 7, 8);
        using var noGrad = torch.no_grad();
        var loss = ClassConditioning.Forward(network, x, t, new Conditioning(labels)).square().mean();
        Assert.Equal(network.Forward(x, t, labels).square().mean().item<float>(), loss.item<float>());
    }
}
