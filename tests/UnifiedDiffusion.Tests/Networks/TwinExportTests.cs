using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using UnifiedDiffusion.Interop;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Networks;

/// <summary>
/// Networks in the layout of <c>udm export</c> without a run (<see cref="TwinExport"/>): what the
/// folder holds, and the exports that bench/pytorch/check_parity.py compares with the PyTorch twins
/// (trait Category=Parity; set UDM_PARITY_DIR to keep them, e.g.
/// <c>UDM_PARITY_DIR=/tmp/parity dotnet test --filter Category=Parity</c>, then
/// <c>/usr/bin/python3 bench/pytorch/check_parity.py /tmp/parity/*</c>). The Python side runs in
/// tests/UnifiedDiffusion.Tests/Interop.
/// </summary>
public sealed class TwinExportTests
{
    private static string NewFolder() => Path.Combine(Path.GetTempPath(), "udm-twin-tests-" + Guid.NewGuid().ToString("N"));

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.equal(b).all().item<bool>();

    private static void Delete(string folder)
    {
        try { Directory.Delete(folder, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>
    /// Overwrites every weight from <paramref name="seed"/> (independently of the global RNG):
    /// N(0, 1/fan-in) for matrices and kernels, 1 + N(0, 0.1²) for norm scales, N(0, 0.1²) for
    /// biases, so that norm and bias parameters are not at their trivial initial values.
    /// </summary>
    internal static void Randomize(nn.Module module, ulong seed)
    {
        var generator = new Generator(seed);
        using var noGrad = torch.no_grad();
        foreach (var (name, p) in module.named_parameters())
        {
            var noise = torch.randn(p.shape, generator: generator);
            if (p.dim() >= 2) p.copy_(noise / Math.Sqrt(p.numel() / p.shape[0]));
            else if (name.EndsWith("weight", StringComparison.Ordinal)) p.copy_(1 + 0.1 * noise);
            else p.copy_(0.1 * noise);
        }
    }

    /// <summary>Copies the weights of a folder's model.safetensors into <paramref name="module"/> by twin name.</summary>
    private static void LoadTwinWeights(nn.Module module, string folder)
    {
        var saved = Safetensors.LoadStateDict(Path.Combine(folder, ModelExport.Files.Weights));
        var state = ModelExport.TwinStateDict(module);
        Assert.Equal(state.Keys.Order(StringComparer.Ordinal), saved.Keys.Order(StringComparer.Ordinal));
        using var noGrad = torch.no_grad();
        foreach (var (name, target) in state) target.copy_(saved[name]);
    }

    private static UNetConfig TinyUNet => new(InChannels: 2, BaseChannels: 8, ChannelMultipliers: [1, 2], ResBlocksPerLevel: 2, TimeEmbedding: 16, ClassCount: 3);

    [Fact]
    public void FolderHoldsTheNetworkSectionTwinNamedWeightsAndTheCheckTensors()
    {
        using var scope = torch.NewDisposeScope();
        string folder = NewFolder();
        try
        {
            var source = new UNet(TinyUNet);
            Randomize(source, 1);
            source.eval();
            var x = torch.randn([3, 2, 9, 9], generator: new Generator(2));
            var t = torch.tensor(new long[] { 0, 7, 999 });
            var labels = torch.tensor(new long[] { 0, 2, 3 });
            using var noGrad = torch.no_grad();
            var expected = source.Forward(x, t, labels);
            TwinExport.Write(source, folder, new Dictionary<string, Tensor> { ["x"] = x, ["t"] = t, ["labels"] = labels, ["output"] = expected });

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, ModelExport.Files.Config)))!;
            Assert.Equal(ModelExport.Format, config["format"]!.GetValue<string>());
            Assert.Equal("unet", config["network"]!["model"]!.GetValue<string>());
            Assert.Equal(8, config["network"]!["config"]!["BaseChannels"]!.GetValue<int>());
            Assert.Equal(NetworkInfo.ParameterCount(source), config["network"]!["parameters"]!.GetValue<long>());

            var weights = Safetensors.LoadStateDict(Path.Combine(folder, ModelExport.Files.Weights));
            Assert.Contains("down.0.conv1.weight", weights.Keys);
            Assert.DoesNotContain(weights.Keys, n => n.Split('.').Any(part => part.StartsWith('_')));
            Assert.Equal(NetworkInfo.ParameterCount(source), weights.Values.Sum(w => w.numel()));

            var copy = new UNet(TinyUNet);
            copy.eval();
            Assert.False(Same(copy.Forward(x, t, labels), expected));
            LoadTwinWeights(copy, folder);
            Assert.True(Same(copy.Forward(x, t, labels), expected));

            var check = Safetensors.LoadStateDict(Path.Combine(folder, TwinExport.CheckFile));
            Assert.Equal(["labels", "output", "t", "x"], check.Keys.Order(StringComparer.Ordinal));
            Assert.Equal(ScalarType.Int64, check["t"].dtype);
            Assert.True(Same(check["t"], t));
            Assert.True(Same(check["output"], expected));
        }
        finally { Delete(folder); }
    }

    [Fact]
    public void ANetworkWithoutATwinIsRefused()
    {
        using var linear = nn.Linear(2, 2);
        Assert.Throws<ArgumentException>(() => TwinExport.Write(linear, NewFolder()));
    }

    // ---- Exports for bench/pytorch/check_parity.py ----

    public static TheoryData<string> UNetCases => ["unet-mnist", "unet-cond", "unet-plain"];

    private static UNetConfig UNetCase(string name) => name switch
    {
        "unet-mnist" => new UNetConfig(BaseChannels: 24),                                          // the mnist recipe
        "unet-cond" => new UNetConfig(InChannels: 3, BaseChannels: 16, ChannelMultipliers: [1, 2, 3], ResBlocksPerLevel: 2,
            TimeEmbedding: 32, ClassCount: 10),                                                     // every option, odd sizes
        "unet-plain" => new UNetConfig(BaseChannels: 24, AttentionAtLowest: false),                // the cold recipes
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [Trait("Category", "Parity")]
    [MemberData(nameof(UNetCases))]
    public void ExportsAUNetForParity(string name)
    {
        using var scope = torch.NewDisposeScope();
        string? keep = Environment.GetEnvironmentVariable("UDM_PARITY_DIR");
        string folder = keep is null ? NewFolder() : Path.Combine(keep, name);
        try
        {
            var config = UNetCase(name);
            var network = new UNet(config);
            Randomize(network, 7);
            network.eval();
            long size = name == "unet-cond" ? 13 : 28;
            var x = torch.randn([4, config.InChannels, size, size], generator: new Generator(11));
            var t = torch.tensor(new long[] { 0, 1, 500, 999 });
            var check = new Dictionary<string, Tensor> { ["x"] = x, ["t"] = t };
            Tensor? labels = config.ClassCount > 0 ? torch.tensor(new long[] { 0, 3, 9, config.ClassCount }) : null;
            if (labels is not null) check["labels"] = labels;
            using var noGrad = torch.no_grad();
            check["output"] = network.Forward(x, t, labels);
            TwinExport.Write(network, folder, check);

            var copy = new UNet(config);
            copy.eval();
            LoadTwinWeights(copy, folder);
            Assert.True(Same(copy.Forward(x, t, labels), check["output"]));
        }
        finally { if (keep is null) Delete(folder); }
    }

    [Fact]
    [Trait("Category", "Parity")]
    public void ExportsATransformerForParity()
    {
        using var scope = torch.NewDisposeScope();
        string? keep = Environment.GetEnvironmentVariable("UDM_PARITY_DIR");
        string folder = keep is null ? NewFolder() : Path.Combine(keep, "transformer");
        try
        {
            // The text recipes: d 192, 3 layers, 4 heads, MLP 768, vocabulary 3000, 20 characters (wujue), levels 0..20.
            var config = new TransformerConfig(Dimension: 192, Layers: 3, Heads: 4, FeedForward: 768, Dropout: 0.1);
            const int vocab = 3000, length = 20;
            var network = new TextTransformer(vocab, length, config, length);
            Randomize(network, 7);
            network.eval();
            var tokens = torch.randint(0, vocab, [4, length], generator: new Generator(11), dtype: ScalarType.Int64);
            var level = torch.tensor(new long[] { 0, 1, 13, 20 });
            using var noGrad = torch.no_grad();
            var output = network.forward(tokens, level);
            TwinExport.Write(network, folder, new Dictionary<string, Tensor> { ["tokens"] = tokens, ["level"] = level, ["output"] = output });

            var copy = new TextTransformer(vocab, length, config, length);
            copy.eval();
            LoadTwinWeights(copy, folder);
            Assert.True(Same(copy.forward(tokens, level), output));
        }
        finally { if (keep is null) Delete(folder); }
    }
}
