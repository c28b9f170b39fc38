using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using UnifiedDiffusion.Tokens;
using Xunit;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>
/// Every family end to end through the run layer and the CLI, on fixtures the tests write
/// themselves (an IDX folder of 8×8 images, a plain-text file): train, checkpoint, reload,
/// sample, evaluate, and the one-line errors. Budgets are tiny; quality is not asserted here.
/// </summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class FamilyRunTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-family-").FullName;

    public FamilyRunTests()
    {
        ImageJudge.ClassifierSteps = 60;
        ImageJudge.ClassifierFolder = Path.Combine(_root, "classifiers");
    }

    public void Dispose()
    {
        ImageJudge.ClassifierSteps = 1500;
        ImageJudge.ClassifierFolder = null;
        Directory.Delete(_root, recursive: true);
    }

    private string ImageFolder() => Fixtures.ImageFolder(_root);

    private string TextFile() => Fixtures.TextFile(_root);

    private static TrainingOptions Tiny(int steps) => new(Steps: steps, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: steps, LogEvery: 1);

    private static readonly UNetConfig TinyUNet = new(BaseChannels: 8, ChannelMultipliers: [1, 2], AttentionAtLowest: false, TimeEmbedding: 16);

    private static (int Code, string Output, string Error) Cli(params string[] args) => CliTests.RunCaptured(args);

    private string WriteConfig(string name, ExperimentConfig config)
    {
        string path = Path.Combine(_root, name + ".json");
        File.WriteAllText(path, config.ToJson());
        return path;
    }

    [Fact]
    public void GaussianImageRunTrainsSamplesAGridInpaintsAndEvaluates()
    {
        var config = new ExperimentConfig { Data = "idx:" + ImageFolder(), UNet = TinyUNet with { ClassCount = 2 }, ClipSample = 1.0, Training = Tiny(3) };
        string run = Path.Combine(_root, "gaussian");
        Assert.Equal(0, Cli("train", WriteConfig("gaussian", config), "--out", run).Code);

        string grid = Path.Combine(_root, "grid.png");
        Assert.Equal(0, Cli("sample", "--run", run, "--count", "4", "--steps", "5", "--guidance", "1.5", "--label", "1", "--out", grid).Code);
        using (var image = ImageGrid.Load(grid, 1)) Assert.True(image.shape[2] > 8 && image.shape[3] > 16);

        // Inpainting: the known (white-mask) pixels come back exactly at t = 0.
        string source = Path.Combine(_root, "source.png"), mask = Path.Combine(_root, "mask.png"), filled = Path.Combine(_root, "filled.png");
        using (var one = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)) ImageGrid.Save(source, one, columns: 1, scale: 1, padding: 0);
        using (var keep = torch.zeros(1, 1, 8, 8)) { keep[.., .., .., ..4] = torch.tensor(1f); ImageGrid.Save(mask, keep * 2 - 1, columns: 1, scale: 1, padding: 0); }
        Assert.Equal(0, Cli("sample", "--run", run, "--count", "1", "--steps", "5", "--inpaint", source, "--mask", mask, "--out", filled).Code);
        using (var original = ImageGrid.Load(source, 1))
        using (var result = ImageGrid.Load(filled, 1))
        {
            var cropped = result.narrow(2, 2, 16).narrow(3, 2, 16)[.., .., torch.TensorIndex.Slice(0, 16, 2), torch.TensorIndex.Slice(0, 16, 2)];
            Assert.True((cropped - original)[.., .., .., ..4].abs().max().item<float>() < 0.02f, "the kept pixels changed");
        }

        var (code, json, _) = Cli("eval", "--run", run, "--count", "16", "--sampler", "ddim", "--steps", "4", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.GetProperty("fid").GetDouble() >= 0);
        Assert.InRange(doc.RootElement.GetProperty("class_coverage").GetDouble(), 0, 1);
        Assert.InRange(doc.RootElement.GetProperty("label_agreement").GetDouble(), 0, 1);

        // --label none: the unconditional model that label dropout trained, i.e. the network with ∅ for every row,
        // which is what a plain forward without labels computes; it has no label to agree with.
        var experiment = Experiment.Load(run);
        var gaussian = Assert.IsType<GaussianFamilyModel>(experiment.Model);
        using (var none = experiment.Sample(new SamplerRequest("ddim", 4) { Unconditional = true }, 4, seed: 5))
        using (var plain = gaussian.Sample(gaussian.Spec(new SamplerRequest("ddim", 4)), 4, seed: 5))
        using (var labelled = experiment.Sample(new SamplerRequest("ddim", 4) { Label = 0 }, 4, seed: 5))
        {
            Assert.True(none.equal(plain).all().item<bool>(), "--label none must sample ε(x, t, ∅)");
            Assert.False(none.equal(labelled).all().item<bool>(), "--label none gave the label-0 samples");
        }
        var (noneCode, noneJson, _) = Cli("eval", "--run", run, "--count", "16", "--sampler", "ddim", "--steps", "4", "--label", "none", "--json");
        Assert.Equal(0, noneCode);
        using (var noneDoc = JsonDocument.Parse(noneJson)) Assert.False(noneDoc.RootElement.TryGetProperty("label_agreement", out _));
        CliTests.AssertOneLineError(CliTests.Run("sample", "--run", run, "--label", "none", "--guidance", "2", "--out", Path.Combine(_root, "g.png")), "drop --guidance or give a label");
        CliTests.AssertOneLineError(CliTests.Run("sample", "--run", run, "--label", "seven", "--out", Path.Combine(_root, "g.png")), "give a class number such as 7, or none");
    }

    [Fact]
    public void ColdRunRestoresEvaluatesTheBaselinesAndGeneratesFromBlur()
    {
        var config = new ExperimentConfig
        {
            Family = "cold", Data = "idx:" + ImageFolder(), UNet = TinyUNet,
            Cold = new ColdConfig(Degradation: "blur", Levels: 4, KernelSize: 5, BlurStd: 2), Training = Tiny(3),
        };
        string run = Path.Combine(_root, "cold");
        var experiment = Experiment.Create(config);
        experiment.Train(run);
        var cold = Assert.IsType<ColdFamilyModel>(experiment.Model);

        var (originals, degraded, restored) = cold.Restore(new SamplerRequest("improved"), 6, seed: 1);
        using (originals) using (degraded) using (restored)
        {
            Assert.Equal(originals.shape, restored.shape);
            Assert.False(degraded.equal(originals).all().item<bool>(), "level T should differ from the data");
        }
        var rows = new[] { "degraded", "direct", "improved", "naive" }.Select(s => cold.Evaluate(new SamplerRequest(s), 8, 0)).ToList();
        Assert.All(rows, r => Assert.Contains("ssim", r.Metrics.Keys));
        Assert.Equal(0, rows[0].Steps);
        Assert.Equal(1, rows[1].Steps);

        using var generated = cold.Generate(new SamplerRequest("improved") { PriorNoise = 0.002 }, 5, seed: 2);
        Assert.Equal([5L, 1, 8, 8], generated.shape);

        Assert.Contains("sigma > 0", Assert.Throws<UdmException>(() => cold.Evaluate(new SamplerRequest("interpolate") { Eta = 0.5 }, 4, 0)).Message);
        var (code, _, _) = Cli("sample", "--run", run, "--count", "8", "--out", Path.Combine(_root, "sheet.png"));
        Assert.Equal(0, code);
    }

    /// <summary>A renderable as plain text, 200 columns wide.</summary>
    private static string Render(Spectre.Console.Rendering.IRenderable renderable)
    {
        var writer = new StringWriter();
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(writer), Ansi = Spectre.Console.AnsiSupport.No,
            ColorSystem = Spectre.Console.ColorSystemSupport.NoColors, Interactive = Spectre.Console.InteractionSupport.No,
        });
        console.Profile.Width = 200;
        console.Write(renderable);
        return writer.ToString();
    }

    [Theory]
    [InlineData("mask")]
    [InlineData("edit")]
    public void TokenRunTrainsSamplesWithATemplateAndEvaluates(string family)
    {
        var config = new ExperimentConfig
        {
            Family = family, Data = "text:" + TextFile(), Transformer = new TransformerConfig(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64),
            Text = new TextConfig(Window: 12), Training = Tiny(3),
        };
        string run = Path.Combine(_root, family);
        Assert.Equal(0, Cli("train", WriteConfig(family, config), "--out", run).Code);

        string output = Path.Combine(_root, family + ".txt");
        Assert.Equal(0, Cli("sample", "--run", run, "--count", "6", "--fix", "call me_____", "--out", output).Code);
        var lines = File.ReadAllLines(output).Where(l => !l.StartsWith('#')).ToList();
        Assert.Equal(6, lines.Count);
        Assert.All(lines, l => Assert.StartsWith("call me", l));

        // The trajectory: a line per step for each followed sample, changes marked, and the same samples as without it.
        string traced = Path.Combine(_root, family + "-traced.txt"), trajectory = Path.Combine(_root, family + "-trajectory.txt");
        Assert.Equal(0, Cli("sample", "--run", run, "--count", "6", "--fix", "call me_____", "--out", traced, "--trajectory", trajectory).Code);
        Assert.Equal(File.ReadAllLines(output).Skip(1), File.ReadAllLines(traced).Skip(1));
        var steps = File.ReadAllLines(trajectory).Where(l => l.StartsWith("t=", StringComparison.Ordinal)).ToList();
        Assert.Equal(4 * 5, steps.Count); // 4 samples × 5 steps: the template leaves 5 of the 12 positions free
        Assert.Contains(steps, l => l.Contains('⟨'));
        Assert.Equal(2, Cli("sample", "--run", run, "--trajectory", Path.Combine(_root, "t.png")).Code);
        // A token family is not invertible: the multistep sampler is refused, naming the samplers that apply.
        var multistep = Cli("sample", "--run", run, "--sampler", "dpm++2m");
        Assert.Equal(CommandLine.UserError, multistep.Code);
        Assert.Single(multistep.Error.Trim().Split('\n'));
        Assert.Contains("recorrupt", multistep.Error);

        // On a terminal the texts settle in place: a frame per step, the first with [MASK] (as _) or
        // replaced tokens, the last showing the finished samples.
        var experiment = Experiment.Load(run);
        var view = new UnifiedDiffusion.Cli.SettlingView((TextModality)experiment.Model.Modality, rows: 2);
        var frames = new List<string>();
        using (var samples = experiment.Model.Sample(new SamplerRequest(null) { Steps = 4 }, 3, seed: 5,
            new SamplingOptions { OnStep = p => { view.Record(p); frames.Add(Render(view.Render())); } }))
        {
            Assert.Equal(4, frames.Count);
            Assert.Contains("step 1 of 4", frames[0]);
            Assert.Contains("step 4 of 4", frames[^1]);
            var finished = ((TextModality)experiment.Model.Modality).Show(samples[1].data<long>().ToArray());
            Assert.Contains(finished, frames[^1]);
            Assert.DoesNotContain(finished, frames[0]);
            if (family == "mask") Assert.Contains("_", frames[0]);
        }

        var (code, json, _) = Cli("eval", "--run", run, "--count", "12", "--sampler", "improved,recorrupt", "--nll", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(2, doc.RootElement.GetArrayLength());
        foreach (var row in doc.RootElement.EnumerateArray())
        {
            Assert.True(row.GetProperty("perplexity").GetDouble() > 1);
            Assert.Equal(12, row.GetProperty("network_evaluations").GetDouble() + row.GetProperty("evaluations_saved").GetDouble());
            Assert.True(row.GetProperty("nelbo_bits_per_token").GetDouble() > 0);
        }

        var reference = Cli("eval", "--run", run, "--count", "5", "--sampler", "data", "--json");
        using (var data = JsonDocument.Parse(reference.Output))
        {
            // The reference row: held-out text through the same metrics, with no network call.
            Assert.Equal("data", data.RootElement.GetProperty("sampler").GetString());
            Assert.Equal(0, data.RootElement.GetProperty("steps").GetInt32());
            Assert.True(data.RootElement.GetProperty("perplexity").GetDouble() > 1);
            Assert.False(data.RootElement.TryGetProperty("network_evaluations", out var calls) && calls.GetDouble() != 0);
        }

        var error = Cli("sample", "--run", run, "--fix", "this template is far too long for twelve");
        Assert.Equal(CommandLine.UserError, error.Code);
        Assert.StartsWith("udm: error:", error.Error.Trim());
        Assert.Single(error.Error.Trim().Split('\n'));
    }

    [Fact]
    public void EncodingImageRunResumesExactlySamplesEveryKernelAndEvaluates()
    {
        var config = new ExperimentConfig
        {
            Family = "encoding", Data = "idx:" + ImageFolder(), UNet = TinyUNet, ClipSample = 1.0,
            Latent = new LatentConfig(EncoderWidth: 4, EncoderLayers: 2), Training = Tiny(6),
        };
        string full = Path.Combine(_root, "encoding-full"), split = Path.Combine(_root, "encoding-split");
        Experiment.Create(config).Train(full);
        using (var cancel = new CancellationTokenSource())
        {
            // Interrupted after step 3 (as Ctrl-C does), then resumed.
            var outcome = Experiment.Create(config).Train(split, progress: new StepProgress(p => { if (p.Step == 3) cancel.Cancel(); }), cancel: cancel.Token);
            Assert.Equal(TrainingOutcome.Interrupted, outcome);
        }
        Experiment.Create(config).Train(split, resume: true);
        var (a, b) = (Checkpoint.Load(Path.Combine(full, Checkpoint.FileName)), Checkpoint.Load(Path.Combine(split, Checkpoint.FileName)));
        Assert.Equal(a.Losses, b.Losses); // bitwise: the encoder and decoder continue exactly
        Assert.Equal(a.Ema, b.Ema);

        foreach (string sampler in new[] { "ddpm", "ddim", "analytic-ddpm", "analytic-ddim", "dpm++2m", "dpm++2m-sde" })
        {
            string grid = Path.Combine(_root, $"encoding-{sampler}.png");
            Assert.Equal(0, Cli("sample", "--run", full, "--sampler", sampler, "--count", "4", "--steps", "5", "--out", grid).Code);
            using var image = ImageGrid.Load(grid, 1);
            Assert.True(image.shape[2] > 8 && image.shape[3] > 16);
        }
        Assert.True(File.Exists(Path.Combine(full, Experiment.Files.Gamma)), "the latent Γ table is stored with the run");

        var (code, json, _) = Cli("eval", "--run", full, "--count", "12", "--sampler", "ddim", "--steps", "4", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.GetProperty("fid").GetDouble() >= 0);
        Assert.InRange(doc.RootElement.GetProperty("prior_variance").GetDouble(), 0.9, 1.1);
        Assert.True(doc.RootElement.GetProperty("prior_ks").GetDouble() < doc.RootElement.GetProperty("prior_ks_critical").GetDouble());

        foreach (var args in new[] { new[] { "eval", "--run", full, "--nll" }, ["sample", "--run", full, "--inpaint", "a.png", "--mask", "b.png"], ["sample", "--run", full, "--guidance", "2"] })
        {
            var error = Cli(args);
            Assert.Equal(CommandLine.UserError, error.Code);
            Assert.StartsWith("udm: error:", error.Error.Trim());
            Assert.Single(error.Error.Trim().Split('\n'));
        }
    }

    [Fact]
    public void EncodingTextRunTrainsSamplesAndEvaluates()
    {
        var config = new ExperimentConfig
        {
            Family = "encoding", Data = "text:" + TextFile(), Transformer = new TransformerConfig(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64),
            Text = new TextConfig(Window: 12), Latent = new LatentConfig(Width: 4), Training = Tiny(3),
        };
        string run = Path.Combine(_root, "encoding-text");
        Assert.Equal(0, Cli("train", WriteConfig("encoding-text", config), "--out", run).Code);

        string output = Path.Combine(_root, "encoding.txt");
        Assert.Equal(0, Cli("sample", "--run", run, "--count", "5", "--steps", "8", "--out", output).Code);
        var lines = File.ReadAllLines(output).Where(l => !l.StartsWith('#')).ToList();
        Assert.Equal(5, lines.Count);
        Assert.All(lines, l => Assert.Equal(12, l.Length)); // specials the data never has are never drawn

        var (code, json, _) = Cli("eval", "--run", run, "--count", "10", "--sampler", "ddpm,ddim", "--steps", "6", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(2, doc.RootElement.GetArrayLength());
        foreach (var row in doc.RootElement.EnumerateArray()) Assert.True(row.GetProperty("perplexity").GetDouble() > 1);

        foreach (var args in new[] { new[] { "sample", "--run", run, "--fix", "call me_____" }, ["sample", "--run", run, "--sampler", "analytic-ddim"] })
        {
            var error = Cli(args);
            Assert.Equal(CommandLine.UserError, error.Code);
            Assert.Single(error.Error.Trim().Split('\n'));
        }
    }

    [Fact]
    public void FamiliesRejectDataAndOptionsTheyCannotUse()
    {
        string text = "text:" + TextFile(), images = "idx:" + ImageFolder();
        Assert.Contains("text", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Family = "cold", Data = text })).Message);
        Assert.Contains("not a text set", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Family = "mask", Data = images })).Message);
        Assert.Contains("unknown data set", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Data = "cifar10" })).Message);
        Assert.Contains("does not exist", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Data = "idx:" + Path.Combine(_root, "nowhere") })).Message);
        Assert.Contains("classCount", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Data = images, UNet = TinyUNet with { ClassCount = 3 } })).Message);
        var toy = Experiment.Create(new ExperimentConfig { Data = "gmm8", Training = Tiny(1) });
        Assert.Contains("class-conditional", Assert.Throws<UdmException>(() => toy.Sample(new SamplerRequest("ddim", 5) { Guidance = 2 }, 4, 0)).Message);
        Assert.Contains("images or text", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Family = "encoding", Data = "gmm8" })).Message);
        Assert.Contains("cannot inpaint", Assert.Throws<UdmException>(() => Experiment.Create(new ExperimentConfig { Family = "edit", Data = text }).Model.Inpaint("a.png", "b.png", 1, new SamplingOptions())).Message);
    }
}

/// <summary>Reports training progress synchronously (Progress&lt;T&gt; would post to the thread pool).</summary>
internal sealed class StepProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress value) => report(value);
}

[CollectionDefinition(nameof(FamilyRunCollection), DisableParallelization = true)]
public sealed class FamilyRunCollection;
