using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;

namespace UnifiedDiffusion.Runs;

/// <summary>Named, ready-to-train configurations, with budgets that fit a 2-core CPU.</summary>
public static class Recipes
{
    private static readonly Dictionary<string, (string Summary, Func<ExperimentConfig> Create)> Named = new()
    {
        ["demo"] = ("gmm8 on a short budget: the main job, ~2 min", () => new ExperimentConfig
        {
            Data = "gmm8",
            Training = new TrainingOptions(Steps: 10_000, BatchSize: 512, LearningRate: 2e-3, EmaDecay: 0.995, CheckpointEvery: 2000),
        }),
        ["mnist"] = ("Gaussian diffusion on MNIST, UNet 24-48-48 with attention at 7×7 (~25 min on 2 cores)", () => new ExperimentConfig
        {
            Data = "mnist",
            UNet = new UNetConfig(BaseChannels: 24),
            ClipSample = 1.0,
            Training = ImageTraining(3000),
        }),
        ["mnist-cond"] = ("class-conditional Gaussian diffusion on MNIST with classifier-free guidance", () => new ExperimentConfig
        {
            Data = "mnist",
            UNet = new UNetConfig(BaseChannels: 24, ClassCount: 10),
            ClipSample = 1.0,
            Training = ImageTraining(3000),
        }),
        ["digits"] = ("Gaussian diffusion on the 8×8 digits, a small UNet", () => new ExperimentConfig
        {
            Data = "digits",
            UNet = new UNetConfig(BaseChannels: 32, ChannelMultipliers: [1, 2], AttentionAtLowest: false),
            ClipSample = 1.0,
            Training = ImageTraining(4000),
        }),
        ["mnist-blur"] = ("cold diffusion on MNIST: Gaussian blur, T=20, kernel 11, std 7, constant (the paper's setting)", () => Cold(new ColdConfig())),
        ["mnist-inpaint"] = ("cold diffusion on MNIST: Gaussian-mask inpainting, T=50, kernel std 0.1", () => Cold(new ColdConfig(Degradation: "mask", Levels: 50))),
        ["mnist-superres"] = ("cold diffusion on MNIST: super-resolution by repeated 2× pooling, T=2 (28 → 7)", () => Cold(new ColdConfig(Degradation: "superres", Levels: 2))),
        ["mnist-fade"] = ("cold diffusion on MNIST: fading towards the mean, T=20", () => Cold(new ColdConfig(Degradation: "fade", Levels: 20))),
        ["mnist-encoding"] = ("encoding model on MNIST: conv encoder to a unit-RMS latent image, UNet decoder (the mnist UNet)", () => new ExperimentConfig
        {
            Family = "encoding",
            Data = "mnist",
            UNet = new UNetConfig(BaseChannels: 24),
            Latent = new LatentConfig(),
            ClipSample = 1.0,
            Training = ImageTraining(3000),
        }),
        ["wujue-mask"] = ("mask model on 五言绝句 (20 characters, Tang and Song)", () => Text("wujue", "mask")),

        ["wujue-edit"] = ("edit model on 五言绝句", () => Text("wujue", "edit")),
        ["moby-mask"] = ("mask model on Moby-Dick windows of 32 characters", () => Text("moby-dick", "mask")),
        ["moby-edit"] = ("edit model on Moby-Dick windows", () => Text("moby-dick", "edit")),
        ["names-mask"] = ("mask model on English first names, padded to 12", () => Text("names", "mask")),
        ["names-edit"] = ("edit model on English first names", () => Text("names", "edit")),
        ["wujue-encoding"] = ("encoding model on 五言绝句: token embedding to a unit-RMS latent sequence (16 per character), Transformer decoder", () => Text("wujue", "encoding")),
        ["names-encoding"] = ("encoding model on English first names", () => Text("names", "encoding")),
        // The recipes of the shipped models (models/NAME): each fits 3 hours of 2 cores, in bf16 where the CPU has bf16 units.
        ["model-mnist"] = ("shipped mnist: class-conditional UNet 32-64-64 with label dropout 0.1 (conditional, guided and unconditional), 24,000 steps (trained with --precision bf16: 0.27-0.4 s a step on 2 cores)", () => new ExperimentConfig
        {
            Data = "mnist",
            UNet = new UNetConfig(BaseChannels: 32, ClassCount: 10),
            ClipSample = 1.0,
            Training = ShippedImageTraining(24_000),
        }),
        ["model-mnist-blur"] = ("shipped mnist-blur: cold deblurring as mnist-blur (T = 20), 12,000 steps", () => Cold(new ColdConfig()) with { Training = ShippedImageTraining(12_000) }),
        ["model-mnist-inpaint"] = ("shipped mnist-inpaint: cold Gaussian-mask inpainting as mnist-inpaint (T = 50), 12,000 steps", () => Cold(new ColdConfig(Degradation: "mask", Levels: 50)) with { Training = ShippedImageTraining(12_000) }),
        ["model-mnist-encoding"] = ("shipped mnist-encoding: the encoding model with model-mnist's UNet (unconditional), 18,000 steps", () => Get("mnist-encoding") with
        {
            UNet = new UNetConfig(BaseChannels: 32),
            Training = ShippedImageTraining(18_000),
        }),
        ["model-wujue-mask"] = ("shipped wujue-mask: mask model on every four-line unit of 5-character poems (wuyan: 223,221 training units with a 6,000-character vocabulary), Transformer 256×4", () => Poems("mask")),
        ["model-wujue-edit"] = ("shipped wujue-edit: edit model on the same units and Transformer", () => Poems("edit")),
        ["model-moby-mask"] = ("shipped moby-mask: mask model on Moby-Dick windows of 32 characters, Transformer 192×4", () => Text("moby-dick", "mask") with
        {
            Transformer = new TransformerConfig(Dimension: 192, Layers: 4, Heads: 4, FeedForward: 768, Dropout: 0.1),
            Training = new TrainingOptions(Steps: 10_000, BatchSize: 128, LearningRate: 1e-3, WarmupSteps: 500, EmaDecay: 0.999, CheckpointEvery: 500, LogEvery: 50, KeepEvery: 2000),
        }),
    };

    /// <summary>Recipe names: one per toy data set, then the named image and text recipes.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. ToyData.Names, .. Named.Keys];

    /// <summary>A one-line summary of a recipe.</summary>
    public static string Summary(string name) =>
        Named.TryGetValue(name.Trim().ToLowerInvariant(), out var entry) ? entry.Summary : $"{name} toy data, Gaussian diffusion with an MLP";

    /// <summary>The recipe of that name.</summary>
    public static ExperimentConfig Get(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (Named.TryGetValue(key, out var entry)) return entry.Create();
        if (ToyData.Names.Contains(key))
            return new ExperimentConfig { Data = key, Training = new TrainingOptions(Steps: 20_000, BatchSize: 512, LearningRate: 1e-3, EmaDecay: 0.999) };
        throw new UdmException($"unknown recipe \"{name}\": use one of {string.Join(", ", Names)}, or a path to a JSON config.");
    }

    /// <summary>A recipe name or a JSON file path.</summary>
    public static ExperimentConfig Resolve(string nameOrPath) =>
        nameOrPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || File.Exists(nameOrPath)
            ? ExperimentConfig.Load(nameOrPath)
            : Get(nameOrPath);

    private static TrainingOptions ImageTraining(int steps) =>
        new(Steps: steps, BatchSize: 64, LearningRate: 1e-3, WarmupSteps: 200, EmaDecay: 0.995, CheckpointEvery: 500, LogEvery: 25);

    /// <summary>Longer runs than <see cref="ImageTraining"/>: a slower EMA, and a checkpoint kept every 2,000 steps for the metric's curve.</summary>
    private static TrainingOptions ShippedImageTraining(int steps) =>
        new(Steps: steps, BatchSize: 64, LearningRate: 1e-3, WarmupSteps: 500, EmaDecay: 0.999, CheckpointEvery: 500, LogEvery: 50, KeepEvery: 2000);

    private static ExperimentConfig Cold(ColdConfig cold) => new()
    {
        Family = "cold",
        Data = "mnist",
        UNet = new UNetConfig(BaseChannels: 24, AttentionAtLowest: false),
        Cold = cold,
        Training = ImageTraining(1500),
    };

    /// <summary>
    /// The shipped poem models: wuyan's 20-character units (quatrains, halves of regulated verse,
    /// stanzas of longer poems: 223,221 training units, 23× wujue's quatrains, split by poem) with a
    /// vocabulary of the 6,000 most frequent characters (units holding a rarer one are dropped, as in
    /// every text set) and a Transformer 256×4 at batch 128: 0.9–1.0 s a step in bf16 on the
    /// 2026-11-30 machine, so 9,000 steps fit the 3-hour budget of 2 cores.
    /// </summary>
    private static ExperimentConfig Poems(string family) => Text("wuyan", family) with
    {
        Transformer = new TransformerConfig(Dimension: 256, Layers: 4, Heads: 4, FeedForward: 1024, Dropout: 0.1),
        Text = new TextConfig(VocabularySize: 6000),
        Training = new TrainingOptions(Steps: 9_000, BatchSize: 128, LearningRate: 1e-3, WarmupSteps: 500, EmaDecay: 0.999, CheckpointEvery: 500, LogEvery: 50, KeepEvery: 2000),
    };

    private static ExperimentConfig Text(string data, string family) => new()
    {
        Family = family,
        Data = data,
        Transformer = new TransformerConfig(Dimension: 192, Layers: 3, Heads: 4, FeedForward: 768, Dropout: 0.1),
        Text = new TextConfig(VocabularySize: 3000),
        Latent = family == "encoding" ? new LatentConfig() : null,
        Training = new TrainingOptions(Steps: 2000, BatchSize: 64, LearningRate: 1e-3, WarmupSteps: 200, EmaDecay: 0.995, CheckpointEvery: 500, LogEvery: 25),
    };
}
