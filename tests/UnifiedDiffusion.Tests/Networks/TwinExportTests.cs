using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Networks;

/// <summary>
/// The raw float32 + JSON weight exchange format (<see cref="WeightExport"/>), and the exports that
/// bench/pytorch/check_parity.py compares with the PyTorch twins (trait Category=Parity; set
/// UDM_PARITY_DIR to keep them, e.g. <c>UDM_PARITY_DIR=/tmp/parity dotnet test --filter Category=Parity</c>).
/// </summary>
public sealed class WeightExportTests
{
    private static string NewFolder() => Path.Combine(Path.GetTempPath(), "udm-weights-tests-" + Guid.NewGuid().ToString("N"));

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

    private static UNetConfig TinyUNet => new(InChannels: 2, BaseChannels: 8, ChannelMultipliers: [1, 2], ResBlocksPerLevel: 2, TimeEmbedding: 16, ClassCount: 3);

    [Fact]
    public void UNetRoundTripGivesIdenticalOutputs()
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
            WeightExport.Save(source, folder, new Dictionary<string, Tensor> { ["x"] = x, ["t"] = t, ["output"] = expected });

            var copy = new UNet(TinyUNet);
            copy.eval();
            Assert.False(Same(copy.Forward(x, t, labels), expected));
            WeightExport.Load(copy, folder);
            Assert.True(Same(copy.Forward(x, t, labels), expected));

            var extra = WeightExport.LoadExtra(folder);
            Assert.Equal(["x", "t", "output"], extra.Keys);
            Assert.True(Same(extra["x"], x));
            Assert.Equal(ScalarType.Int64, extra["t"].dtype);
            Assert.True(Same(extra["t"], t));
            Assert.True(Same(extra["output"], expected));
        }
        finally { Delete(folder); }
    }

    [Fact]
    public void TransformerRoundTripGivesIdenticalOutputs()
    {
        using var scope = torch.NewDisposeScope();
        string folder = NewFolder();
        try
        {
            var config = new TransformerConfig(Dimension: 16, Layers: 2, Heads: 2, FeedForward: 32, Dropout: 0.1);
            var source = new TextTransformer(11, 5, config, 5);
            source.eval();
            var tokens = torch.randint(0, 11, [2, 5], generator: new Generator(3), dtype: ScalarType.Int64);
            var level = torch.tensor(new long[] { 0, 5 });
            using var noGrad = torch.no_grad();
            var expected = source.forward(tokens, level);
            WeightExport.Save(source, folder);
            Assert.Empty(WeightExport.LoadExtra(folder));

            var copy = new TextTransformer(11, 5, config, 5);
            copy.eval();
            WeightExport.Load(copy, folder);
            Assert.True(Same(copy.forward(tokens, level), expected));
        }
        finally { Delete(folder); }
    }

    [Fact]
    public void IndexListsNameShapeOffsetAndDtype()
    {
        string folder = NewFolder();
        try
        {
            using var network = new UNet(TinyUNet);
            WeightExport.Save(network, folder);
            using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "weights.json")));
            var entries = document.RootElement.EnumerateArray().ToList();
            var state = network.state_dict();
            Assert.Equal(state.Keys, entries.Select(e => e.GetProperty("name").GetString()));
            long offset = 0;
            foreach (var e in entries)
            {
                var shape = e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                Assert.Equal(state[e.GetProperty("name").GetString()!].shape, shape);
                Assert.Equal(offset, e.GetProperty("offset").GetInt64());
                Assert.Equal("float32", e.GetProperty("dtype").GetString());
                offset += 4 * shape.Aggregate(1L, (a, d) => a * d);
            }
            Assert.Equal(offset, new FileInfo(Path.Combine(folder, "weights.bin")).Length);
            Assert.Equal(NetworkInfo.ParameterCount(network), offset / 4);
        }
        finally { Delete(folder); }
    }

    [Fact]
    public void LoadingIntoADifferentNetworkNamesTheMismatch()
    {
        string folder = NewFolder();
        try
        {
            using var network = new UNet(TinyUNet);
            WeightExport.Save(network, folder);
            using var wider = new UNet(TinyUNet with { BaseChannels = 16 });
            var shape = Assert.Throws<UdmException>(() => WeightExport.Load(wider, folder));
            Assert.Contains("shape", shape.Message);
            using var unconditional = new UNet(TinyUNet with { ClassCount = 0 });
            var extra = Assert.Throws<UdmException>(() => WeightExport.Load(unconditional, folder));
            Assert.Contains("does not have", extra.Message);
            File.WriteAllBytes(Path.Combine(folder, "weights.bin"), new byte[8]);
            Assert.Throws<UdmException>(() => WeightExport.Load(network, folder));
        }
        finally { Delete(folder); }
    }

    // ---- Exports for bench/pytorch/check_parity.py ----

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private static void WriteExport(string folder, string model, object config, nn.Module network)
    {
        var export = new Dictionary<string, object>
        {
            ["model"] = model,
            ["config"] = config,
            ["parameterCount"] = NetworkInfo.ParameterCount(network),
        };
        File.WriteAllText(Path.Combine(folder, "export.json"), JsonSerializer.Serialize(export, Indented));
    }

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
            var extra = new Dictionary<string, Tensor> { ["x"] = x, ["t"] = t };
            Tensor? labels = config.ClassCount > 0 ? torch.tensor(new long[] { 0, 3, 9, config.ClassCount }) : null;
            if (labels is not null) extra["labels"] = labels;
            using var noGrad = torch.no_grad();
            extra["output"] = network.Forward(x, t, labels);
            WeightExport.Save(network, folder, extra);
            WriteExport(folder, "unet", config, network);

            var copy = new UNet(config);
            copy.eval();
            WeightExport.Load(copy, folder);
            Assert.True(Same(copy.Forward(x, t, labels), extra["output"]));
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
            WeightExport.Save(network, folder, new Dictionary<string, Tensor> { ["tokens"] = tokens, ["level"] = level, ["output"] = output });
            WriteExport(folder, "transformer", new { config.Dimension, config.Layers, config.Heads, config.FeedForward, config.Dropout, VocabSize = vocab, Length = length, Levels = length }, network);

            var copy = new TextTransformer(vocab, length, config, length);
            copy.eval();
            WeightExport.Load(copy, folder);
            Assert.True(Same(copy.forward(tokens, level), output));
        }
        finally { if (keep is null) Delete(folder); }
    }
}
