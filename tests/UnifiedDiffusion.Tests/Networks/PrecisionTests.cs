using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Tests.Cli;
using UnifiedDiffusion.Tests.Runs;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Networks;

/// <summary>
/// Mixed precision (bf16): the layers compute in bfloat16 while weights, gradients, the optimizer,
/// the EMA and checkpoints stay float32, and every network returns float32. Thresholds are bfloat16's
/// (8 bits of mantissa, relative rounding 2⁻⁸ ≈ 0.004 per operation), fixed before the runs.
/// </summary>
[Collection(nameof(GoldenOutputCollection))] // alone: it builds networks, drawing from the global generator
public sealed class PrecisionTests(ITestOutputHelper output)
{
    private static readonly UNetConfig TinyUNet = new(BaseChannels: 16, ChannelMultipliers: [1, 2], TimeEmbedding: 16);

    /// <summary>A network in fp32 and in bf16 on the same input: its outputs, and its gradients of a squared-output loss.</summary>
    private static (Tensor Out32, Tensor Out16, Tensor[] Grad32, Tensor[] Grad16) Both(nn.Module<Tensor, Tensor, Tensor> network, Tensor x, Tensor t)
    {
        var parameters = network.parameters().ToArray();
        (Tensor, Tensor[]) Run(Precision precision)
        {
            Precisions.Apply(network, precision);
            network.zero_grad();
            var y = network.forward(x, t);
            y.square().mean().backward();
            return (y.detach(), parameters.Select(p => p.grad!.clone()).ToArray());
        }
        var (out32, grad32) = Run(Precision.Fp32);
        var (out16, grad16) = Run(Precision.Bf16);
        return (out32, out16, grad32, grad16);
    }

    private static double RelativeRms(Tensor a, Tensor reference) =>
        ((a.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).square().mean().sqrt() / reference.to(ScalarType.Float64).square().mean().sqrt().clamp_min(1e-30)).item<double>();

    private static double Cosine(Tensor[] a, Tensor[] b)
    {
        var x = torch.cat(a.Select(g => g.flatten().to(ScalarType.Float64)).ToArray());
        var y = torch.cat(b.Select(g => g.flatten().to(ScalarType.Float64)).ToArray());
        return (x.dot(y) / (x.norm() * y.norm())).item<double>();
    }

    public static TheoryData<string> Networks() => ["unet", "mlp", "transformer"];

    /// <summary>True on a CPU with bfloat16 units; elsewhere it checks that bf16 is refused, and there is nothing to compute in it.</summary>
    internal static bool Bf16Units()
    {
        if (!Precisions.CpuHasBf16) Assert.Throws<UdmException>(() => Precisions.Parse("bf16"));
        return Precisions.CpuHasBf16;
    }

    [Theory]
    [MemberData(nameof(Networks))]
    public void Bf16ComputesInBfloat16WithFloat32WeightsGradientsAndOutput(string name)
    {
        if (!PrecisionTests.Bf16Units()) return;
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(11);
        (nn.Module<Tensor, Tensor, Tensor> network, Tensor x, Tensor t) = name switch
        {
            "unet" => ((nn.Module<Tensor, Tensor, Tensor>)new UNet(TinyUNet), torch.randn([4, 1, 8, 8], generator: generator), torch.tensor(new long[] { 1, 50, 300, 900 })),
            "mlp" => (new MlpDenoiser(2, new MlpConfig(64, 2, 16)), torch.randn([16, 2], generator: generator), torch.arange(16, dtype: ScalarType.Int64) * 60),
            _ => (new TextTransformer(20, 6, new TransformerConfig(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64, Dropout: 0), 6),
                torch.randint(3, 20, [4, 6], dtype: ScalarType.Int64, generator: generator), torch.tensor(new long[] { 1, 2, 4, 6 })),
        };
        var (out32, out16, grad32, grad16) = Both(network, x, t);
        double relative = RelativeRms(out16, out32), cosine = Cosine(grad16, grad32);
        output.WriteLine($"{name}: output relative RMS {relative:E2}, gradient cosine {cosine:F5}");
        Assert.Equal(ScalarType.Float32, out16.dtype);
        Assert.All(network.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(grad16, g => Assert.Equal(ScalarType.Float32, g.dtype));
        Assert.True(relative > 1e-5, $"bf16 gave the fp32 output (relative {relative:E2}): the layers did not compute in bfloat16");
        Assert.True(relative < 0.05, $"bf16 output is {relative:E2} away from fp32 (limit 0.05)");
        Assert.True(cosine > 0.99, $"bf16 gradients point elsewhere than fp32's (cosine {cosine:F4}, limit 0.99)");
        // Without autograd, as sampling runs it.
        using (torch.no_grad())
        {
            Precisions.Apply(network, Precision.Fp32);
            var sampled32 = network.forward(x, t);
            Precisions.Apply(network, Precision.Bf16);
            double sampled = RelativeRms(network.forward(x, t), sampled32);
            Assert.True(sampled < 0.05, $"bf16 output without autograd is {sampled:E2} away from fp32 (limit 0.05)");
        }
    }

    /// <summary>
    /// Data that differs by less than bfloat16's spacing (a heavily blurred image: 0.75 ± 0.0015, where
    /// bf16 steps by 0.0039) must reach the network in bf16: the layer that reads the data computes in
    /// float32, and GroupNorm takes the mean out in float32. Cast to bf16 at the input, both inputs round to 0.75 and every later operation is the
    /// same, so the outputs are bitwise equal. (The size of the response is not compared with fp32's:
    /// bf16 rounding of the later layers, 2⁻⁹ of the output, is larger than this tiny network's response.
    /// The mnist-blur evaluation in BENCHMARKS.md measures what the fix restores.)
    /// </summary>
    [Fact]
    public void Bf16UNetSeesDataDifferencesBelowBfloat16Spacing()
    {
        if (!PrecisionTests.Bf16Units()) return;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generator = new Generator(17);
        var network = new UNet(TinyUNet);
        long[] shape = [4, 1, 8, 8];
        var flat = torch.full(shape, 0.75);
        var detailed = flat + 0.0015 * (torch.rand(shape, generator: generator) * 2 - 1);
        var t = torch.full([shape[0]], 700L);
        Assert.True(detailed.to(ScalarType.BFloat16).eq(flat.to(ScalarType.BFloat16)).all().item<bool>(), "the fixture must round to one bf16 value");
        Precisions.Apply(network, Precision.Bf16);
        var changed = network.forward(detailed, t).ne(network.forward(flat, t)).to(ScalarType.Float64).mean().item<double>();
        output.WriteLine($"{changed:P1} of the bf16 outputs respond to the sub-spacing difference");
        Assert.True(changed > 0.5, $"in bf16 only {changed:P1} of the outputs respond to data differences below bfloat16's spacing (limit 50%): the data was cast to bf16");
    }

    [Fact]
    public void Bf16ConvolutionsOfTheDefectiveShapesMatchFloat64()
    {
        if (!PrecisionTests.Bf16Units()) return;
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(5);
        foreach (var (input, output, stride) in new[] { (24, 16, 1), (32, 1, 1), (24, 1, 1), (40, 32, 2), (48, 48, 2), (1, 32, 1), (24, 24, 1) })
        {
            var conv = new ChannelPaddedConv2d(input, output, 3, stride, padding: 1);
            var x = torch.randn([4, input, 8, 8], generator: generator);
            Tensor y, sampled;
            using (Autocast.Enter(Precision.Bf16)) y = conv.forward(x);
            using (torch.no_grad())
            using (Autocast.Enter(Precision.Bf16)) sampled = conv.forward(x);
            Assert.Equal(ScalarType.BFloat16, y.dtype);
            var y64 = nn.functional.conv2d(x.to(ScalarType.Float64), conv.Weight.detach().to(ScalarType.Float64), conv.Bias.detach().to(ScalarType.Float64),
                strides: [stride, stride], padding: [1, 1]);
            double relative = RelativeRms(y, y64), withoutAutograd = RelativeRms(sampled, y64);
            Assert.True(relative < 0.02, $"{input}→{output} stride {stride}: bf16 relative RMS error {relative:E2} (limit 0.02)");
            Assert.True(withoutAutograd < 0.02, $"{input}→{output} stride {stride}: bf16 relative RMS error without autograd {withoutAutograd:E2} (limit 0.02)");
        }
    }

    [Fact]
    public void PrecisionNamesAndHardwareAreChecked()
    {
        Assert.Equal(Precision.Fp32, Precisions.Parse(null, cpuHasBf16: false));
        Assert.Equal(Precision.Bf16, Precisions.Parse("BF16", cpuHasBf16: true));
        var unknown = Assert.Throws<UdmException>(() => Precisions.Parse("fp16", cpuHasBf16: true));
        Assert.Contains("fp32 or bf16", unknown.Message);
        Assert.Equal("precision", unknown.Subject);
        Assert.Contains("no bfloat16 units", Assert.Throws<UdmException>(() => Precisions.Parse("bf16", cpuHasBf16: false)).Message);
        string never = Path.Combine(Path.GetTempPath(), "udm-precision-never-" + Guid.NewGuid().ToString("N"));
        var (code, error) = CliTests.Run("train", "gmm8", "--out", never, "--precision", "fp16");
        Assert.Equal(CommandLine.UserError, code);
        Assert.Contains("--precision: unknown precision \"fp16\": use fp32 or bf16", error);
        Assert.False(Directory.Exists(never), "a refused precision must not create the run folder");
        Assert.Contains("--precision applies to --run", CliTests.Run("eval", "--oracle", "gmm8", "--precision", "fp32").Error);
    }

    /// <summary>The default precision: bf16 on bf16 CPUs only for the families measured within fp32's spread, and never over a stated one.</summary>
    [Fact]
    public void TheDefaultPrecisionIsBf16OnlyWhereItsQualityWasMeasured()
    {
        string bf16 = Precisions.CpuHasBf16 ? "bf16" : "fp32";
        Assert.Equal("fp32", Recipes.Get("mnist").WithDefaultPrecision().Precision);
        Assert.Equal(bf16, Recipes.Get("model-wujue-mask").WithDefaultPrecision().Precision);
        Assert.Equal(bf16, Recipes.Get("moby-edit").WithDefaultPrecision().Precision);
        Assert.Equal("fp32", Recipes.Get("mnist-blur").WithDefaultPrecision().Precision);
        Assert.Equal("fp32", Recipes.Get("mnist-encoding").WithDefaultPrecision().Precision);
        Assert.Equal("fp32", Recipes.Get("gmm8").WithDefaultPrecision().Precision);
        Assert.Equal("fp32", (Recipes.Get("wujue-mask") with { Precision = "fp32" }).WithDefaultPrecision().Precision);
    }

    /// <summary>A run trained in bf16 (a shipped model) samples in fp32 on a CPU without bf16 units, instead of refusing to load.</summary>
    [Fact]
    public void ABf16RunSamplesInFp32OnACpuWithoutBf16Units()
    {
        var trainedInBf16 = Recipes.Get("model-mnist") with { Precision = "bf16" };
        Assert.Equal("fp32", trainedInBf16.ForSamplingOn(cpuHasBf16: false).Precision);
        Assert.Equal("bf16", trainedInBf16.ForSamplingOn(cpuHasBf16: true).Precision);
        Assert.Equal("fp32", (trainedInBf16 with { Precision = "fp32" }).ForSamplingOn(cpuHasBf16: true).Precision);
        Assert.Null((trainedInBf16 with { Precision = null }).ForSamplingOn(cpuHasBf16: false).Precision);
    }
}

/// <summary>Every family trains and samples in bf16 through the run layer, with float32 weights and checkpoints.</summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class PrecisionRunTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-precision-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static TrainingOptions Tiny => new(Steps: 2, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: 2, LogEvery: 1, Seed: 3);

    private static readonly UNetConfig TinyUNet = new(BaseChannels: 16, ChannelMultipliers: [1, 2], AttentionAtLowest: true, TimeEmbedding: 16);

    private static readonly TransformerConfig TinyTransformer = new(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64, Dropout: 0);

    public static TheoryData<string> Families() => ["gaussian-points", "gaussian-images", "cold", "mask", "edit", "encoding-images", "encoding-text"];

    [Theory]
    [MemberData(nameof(Families))]
    public void EveryFamilyTrainsAndSamplesInBf16WithFloat32WeightsAndCheckpoints(string name)
    {
        if (!PrecisionTests.Bf16Units()) return;
        string images = "idx:" + Fixtures.ImageFolder(_root), text = "text:" + Fixtures.TextFile(_root);
        var config = name switch
        {
            "gaussian-points" => new ExperimentConfig { Data = "gmm8", Network = new MlpConfig(32, 1, 16) },
            "gaussian-images" => new ExperimentConfig { Data = images, UNet = TinyUNet with { ClassCount = 2 }, ClipSample = 1.0 },
            "cold" => new ExperimentConfig { Family = "cold", Data = images, UNet = TinyUNet, Cold = new ColdConfig(Levels: 4, KernelSize: 5, BlurStd: 2) },
            "mask" or "edit" => new ExperimentConfig { Family = name, Data = text, Transformer = TinyTransformer, Text = new TextConfig(Window: 10) },
            "encoding-images" => new ExperimentConfig { Family = "encoding", Data = images, UNet = TinyUNet, Latent = new LatentConfig(EncoderWidth: 16, EncoderLayers: 2), Schedule = new ScheduleConfig(Levels: 100) },
            _ => new ExperimentConfig { Family = "encoding", Data = text, Transformer = TinyTransformer, Text = new TextConfig(Window: 10), Latent = new LatentConfig(Width: 4), Schedule = new ScheduleConfig(Levels: 100) },
        } with { Training = Tiny, Precision = "bf16" };
        string run = Path.Combine(_root, name);
        var trained = Experiment.Create(config);
        Assert.Equal(Precision.Bf16, trained.Precision);
        trained.Train(run);
        Assert.All(trained.Model.Network.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.Contains("\"precision\": \"bf16\"", File.ReadAllText(Path.Combine(run, Experiment.Files.Config)));
        Assert.All(File.ReadAllLines(Path.Combine(run, Experiment.Files.LossCsv)).Skip(1), line => Assert.True(double.IsFinite(double.Parse(line.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture))));

        // The checkpoint is float32: it loads into an fp32 run, and sampling there gives nearly what bf16 gives.
        var state = Checkpoint.Load(Path.Combine(run, Checkpoint.FileName));
        var fp32 = Experiment.Load(run, precision: "fp32");
        Assert.Equal(Precision.Fp32, fp32.Precision);
        var bf16 = Experiment.Load(run);
        Assert.Equal(Precision.Bf16, bf16.Precision);
        using var scope = torch.NewDisposeScope();
        var request = name.StartsWith("cold") ? new SamplerRequest("tacos") : new SamplerRequest(null, 3);
        var a = fp32.Model.Sample(request, 2, seed: 1);
        var b = bf16.Model.Sample(request, 2, seed: 1);
        Assert.Equal(a.shape, b.shape);
        Assert.Equal(a.dtype, b.dtype);
        Assert.NotEmpty(state.Ema);
    }
}
