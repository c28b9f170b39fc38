using System.Runtime.CompilerServices;
using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>
/// Runs alone: its tests seed the global generator for network initialisation (<see cref="Experiment.Create"/>),
/// or draw from it, and must not interleave with other threads doing the same.
/// </summary>
[CollectionDefinition(nameof(GoldenOutputCollection), DisableParallelization = true)]
public sealed class GoldenOutputCollection;

/// <summary>
/// Pins behaviour across refactoring: for every family and sampler, tiny networks are trained a few
/// steps with fixed seeds through the run layer, reloaded from their checkpoints, and sampled; the
/// training losses, samples, trajectories and likelihood bounds must equal the values recorded in
/// golden-outputs.json (token ids exactly; floats to 1e-4, bounds to 1e-6, relative to max(1, |value|)).
/// Set UDM_WRITE_GOLDEN=1 to record the file afresh (only when a change of output is intended).
/// </summary>
[Collection(nameof(GoldenOutputCollection))]
public sealed class GoldenOutputTests(ITestOutputHelper output) : IDisposable
{
    private const double SampleTolerance = 1e-4;
    private const double ScalarRelativeTolerance = 1e-6;

    private readonly string _root = Directory.CreateTempSubdirectory("udm-golden-").FullName;
    private readonly SortedDictionary<string, double[]> _values = new(StringComparer.Ordinal);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static string GoldenPath([CallerFilePath] string source = "") => Path.Combine(Path.GetDirectoryName(source)!, "golden-outputs.json");

    [Fact]
    public void EveryFamilyAndSamplerReproducesTheRecordedOutputs()
    {
        using var scope = torch.NewDisposeScope();
        Gaussian();
        GaussianImages();
        Cold();
        Tokens("mask");
        Tokens("edit");
        EncodingImages();
        EncodingText();
        Oracle();

        string path = GoldenPath();
        if (Environment.GetEnvironmentVariable("UDM_WRITE_GOLDEN") == "1")
        {
            File.WriteAllText(path, JsonSerializer.Serialize(_values, new JsonSerializerOptions { WriteIndented = false }).Replace("],\"", "],\n\""));
            output.WriteLine($"recorded {_values.Count} golden outputs in {path}");
            return;
        }
        Assert.True(File.Exists(path), $"{path} is missing; record it with UDM_WRITE_GOLDEN=1");
        var golden = JsonSerializer.Deserialize<SortedDictionary<string, double[]>>(File.ReadAllText(path))!;
        Assert.Equal(golden.Keys, _values.Keys);
        var failures = new List<string>();
        foreach (var (name, expected) in golden)
        {
            var actual = _values[name];
            if (actual.Length != expected.Length) { failures.Add($"{name}: {actual.Length} values, expected {expected.Length}"); continue; }
            bool scalar = name.StartsWith("scalar/", StringComparison.Ordinal);
            double worst = 0;
            for (int i = 0; i < actual.Length; i++)
            {
                double error = Math.Abs(actual[i] - expected[i]);
                double limit = name.StartsWith("tokens/", StringComparison.Ordinal) ? 0 : (scalar ? ScalarRelativeTolerance : SampleTolerance) * Math.Max(1, Math.Abs(expected[i]));
                if (!(error <= limit)) worst = Math.Max(worst, double.IsNaN(error) ? double.PositiveInfinity : error);
            }
            if (worst > 0) failures.Add($"{name}: differs by up to {worst:G3}");
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private void Record(string name, Tensor values, bool tokens = false) =>
        _values[(tokens ? "tokens/" : "floats/") + name] = values.detach().cpu().to(ScalarType.Float64).contiguous().data<double>().ToArray();

    private void RecordScalar(string name, double value) => _values["scalar/" + name] = [value];

    private static TrainingOptions Tiny(int steps) => new(Steps: steps, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: steps, LogEvery: 1, Seed: 3);

    private static readonly UNetConfig TinyUNet = new(BaseChannels: 8, ChannelMultipliers: [1, 2], AttentionAtLowest: true, TimeEmbedding: 16);

    private static readonly TransformerConfig TinyTransformer = new(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64, Dropout: 0);

    /// <summary>Trains the config for its steps, records the losses, and reloads the run from its checkpoint.</summary>
    private Experiment Train(string name, ExperimentConfig config)
    {
        string run = Path.Combine(_root, name);
        Experiment.Create(config).Train(run);
        var losses = File.ReadAllLines(Path.Combine(run, Experiment.Files.LossCsv)).Skip(1)
            .Select(line => double.Parse(line.Split(',')[1], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        _values[$"floats/{name}/losses"] = losses;
        return Experiment.Load(run);
    }

    private void Gaussian()
    {
        var experiment = Train("gaussian", new ExperimentConfig { Data = "gmm8", Network = new MlpConfig(Hidden: 32, Depth: 2, TimeEmbedding: 16), Training = Tiny(4) });
        var model = experiment.Model;
        foreach (var (sampler, eta) in new[] { ("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("analytic-ddpm", 0.0), ("analytic-ddim", 0.0) })
            Record($"gaussian/{sampler}-eta{eta}", model.Sample(new SamplerRequest(sampler, 5) { Eta = eta == 0 ? null : eta }, 16, seed: 1));
        using (var trailing = model.Sample(new SamplerRequest("ddim", 4, "trailing"), 8, seed: 2)) Record("gaussian/ddim-trailing", trailing);
        RecordScalar("gaussian/nll-ddpm", model.HeldOutBound(new SamplerRequest("ddpm", 5), 64, 4)!.Value.Value);
        RecordScalar("gaussian/nll-analytic-ddpm", model.HeldOutBound(new SamplerRequest("analytic-ddpm", 5), 64, 4)!.Value.Value);
    }

    private void GaussianImages()
    {
        Train("gaussian-images", new ExperimentConfig { Data = "idx:" + ImageFolder(), UNet = TinyUNet with { ClassCount = 2 }, ClipSample = 1.0, Training = Tiny(3) });
        // A fresh load per call: before the family-layer refactor, a guided sample disposed the EMA network with its guidance wrapper.
        FamilyModel Model() => Experiment.Load(Path.Combine(_root, "gaussian-images")).Model;
        Record("gaussian-images/ddim-guided", Model().Sample(new SamplerRequest("ddim", 4) { Label = 1, Guidance = 1.5 }, 2, seed: 1));
        Record("gaussian-images/ddpm-cycling", Model().Sample(new SamplerRequest("ddpm", 4), 3, seed: 2));
        Record("gaussian-images/analytic-ddpm", Model().Sample(new SamplerRequest("analytic-ddpm", 3), 2, seed: 3));
        var trajectory = new List<Tensor>();
        var options = new SamplingOptions { OnStep = p => trajectory.Add(p.Xs.clone().DetachFromDisposeScope()) };
        Model().Sample(new SamplerRequest("ddim", 3) { Eta = 0.3, Label = 0 }, 2, seed: 4, options);
        Record("gaussian-images/ddim-eta-trajectory", torch.stack(trajectory));
        trajectory.ForEach(t => t.Dispose());
        string image = Path.Combine(_root, "inpaint.png"), mask = Path.Combine(_root, "mask.png");
        Output.ImageGrid.Save(image, torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8), columns: 1, scale: 1, padding: 0);
        using (var keep = torch.zeros(1, 1, 8, 8)) { keep[.., .., .., ..4] = torch.tensor(1f); Output.ImageGrid.Save(mask, keep * 2 - 1, columns: 1, scale: 1, padding: 0); }
        var model = Model();
        var inpainting = model.Inpaint(image, mask, 2, new SamplingOptions());
        Record("gaussian-images/inpaint", model.Sample(new SamplerRequest("ddim", 4), 2, seed: 5, inpainting));
        RecordScalar("gaussian-images/nll-analytic-ddpm", Model().HeldOutBound(new SamplerRequest("analytic-ddpm", 3), 8, 6)!.Value.Value);
    }

    private void Cold()
    {
        string images = "idx:" + ImageFolder();
        var blur = (ColdFamilyModel)Train("cold-blur", new ExperimentConfig
        {
            Family = "cold", Data = images, UNet = TinyUNet, Cold = new ColdConfig(Degradation: "blur", Levels: 4, KernelSize: 5, BlurStd: 2), Training = Tiny(3),
        }).Model;
        foreach (var sampler in new[] { "improved", "naive", "direct", "degraded" })
        {
            var (originals, degraded, restored) = blur.Restore(new SamplerRequest(sampler), 3, seed: 1);
            Record($"cold-blur/restore-{sampler}", torch.stack([degraded, restored]));
        }
        foreach (var sampler in new[] { "improved", "naive" })
            Record($"cold-blur/generate-{sampler}", blur.Sample(new SamplerRequest(sampler) { Generate = true, PriorNoise = 0.002 }, 3, seed: 2));

        var mask = (ColdFamilyModel)Train("cold-mask", new ExperimentConfig
        {
            Family = "cold", Data = images, UNet = TinyUNet, Cold = new ColdConfig(Degradation: "mask", Levels: 4, MaskStd: 0.3, RandomCentre: true), Training = Tiny(3),
        }).Model;
        foreach (var sampler in new[] { "improved", "naive" })
        {
            var (_, degraded, restored) = mask.Restore(new SamplerRequest(sampler), 3, seed: 3);
            Record($"cold-mask/restore-{sampler}", torch.stack([degraded, restored]));
        }

        var noisy = (ColdFamilyModel)Train("cold-noisy", new ExperimentConfig
        {
            Family = "cold", Data = images, UNet = TinyUNet, Cold = new ColdConfig(Degradation: "fade", Levels: 4, Sigma: 0.05), Training = Tiny(3),
        }).Model;
        foreach (var (sampler, eta) in new[] { ("interpolate", 0.5), ("improved", 0.0), ("naive", 0.0) })
            Record($"cold-noisy/generate-{sampler}", noisy.Sample(new SamplerRequest(sampler) { Generate = true, Eta = eta == 0 ? null : eta }, 2, seed: 4));
    }

    private void Tokens(string family)
    {
        var model = (TokenFamilyModel)Train(family, new ExperimentConfig
        {
            Family = family, Data = "text:" + TextFile(), Transformer = TinyTransformer, Text = new TextConfig(Window: 10), Training = Tiny(3),
        }).Model;
        foreach (var (sampler, order, steps) in new[] { ("improved", "random", 10), ("improved", "confident", 5), ("improved", "random", 3), ("recorrupt", (string?)null, 5), ("data", null, 10) })
            Record($"{family}/{sampler}-{order}-{steps}", model.Sample(new SamplerRequest(sampler, steps) { Order = sampler == "improved" ? order : null }, 4, seed: 1), tokens: true);
        Record($"{family}/fixed", model.SampleWithTemplate(new SamplerRequest("improved", 6), 3, seed: 2, "the_______", new SamplingOptions()), tokens: true);
        RecordScalar($"{family}/held-out-bits", model.HeldOutBitsPerToken(16, 3));
    }

    private void EncodingImages()
    {
        var model = (EncodingFamilyModel)Train("encoding-images", new ExperimentConfig
        {
            Family = "encoding", Data = "idx:" + ImageFolder(), UNet = TinyUNet, Latent = new LatentConfig(EncoderWidth: 8, EncoderLayers: 2), Training = Tiny(3),
            Schedule = new ScheduleConfig(Levels: 100), ClipSample = 1.0,
        }).Model;
        foreach (var (sampler, eta) in new[] { ("ddpm", 0.0), ("ddim", 0.0), ("ddim", 0.5), ("analytic-ddpm", 0.0), ("analytic-ddim", 0.0) })
            Record($"encoding-images/{sampler}-eta{eta}", model.Sample(new SamplerRequest(sampler, 4) { Eta = eta == 0 ? null : eta }, 2, seed: 1));
        var prior = model.PriorCheck();
        RecordScalar("encoding-images/prior-variance", prior.Variance);
    }

    private void EncodingText()
    {
        var model = Train("encoding-text", new ExperimentConfig
        {
            Family = "encoding", Data = "text:" + TextFile(), Transformer = TinyTransformer, Text = new TextConfig(Window: 10), Latent = new LatentConfig(Width: 4),
            Schedule = new ScheduleConfig(Levels: 100), Training = Tiny(3),
        }).Model;
        foreach (var sampler in new[] { "ddpm", "ddim" })
            Record($"encoding-text/{sampler}", model.Sample(new SamplerRequest(sampler, 5), 3, seed: 1), tokens: true);
    }

    private void Oracle()
    {
        var oracle = new Evaluation.Oracle("gmm8");
        foreach (var sampler in new[] { "ddpm", "ddim", "analytic-ddim" })
        {
            var spec = GaussianFamilyModel.ToSpec(new SamplerRequest(sampler, 5));
            var gamma = spec.NeedsGamma ? oracle.Gamma(GaussianSampling.Grid(spec, oracle.Process.Levels)) : null;
            Record($"oracle/{sampler}", GaussianSampling.Sample(oracle.Process, oracle.Model, gamma, spec, 8, oracle.Mixture.SampleShape, new Generator(5)));
        }
    }

    private string ImageFolder() => Fixtures.ImageFolder(_root, train: 32, test: 16);

    private string TextFile() => Fixtures.TextFile(_root, words: 2000);
}
