using System.Text.Json.Nodes;
using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using Xunit;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>
/// A shipped model samples on a machine that never fetched its data: the export's data card stands
/// in for the data set (shape, classes, vocabulary), and the cold family's colour prior travels with
/// the weights. The samples equal those of the run the model came from; whatever needs real samples
/// is one line naming the command that fetches them. The exports here are renamed to a data set
/// (mnist, moby-dick) that an empty cache (UDM_DATA) does not hold.
/// </summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class DataCardTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-card-").FullName;
    private readonly string? _dataBefore = Environment.GetEnvironmentVariable("UDM_DATA");

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("UDM_DATA", _dataBefore);
        Environment.SetEnvironmentVariable(ShippedModels.FolderVariable, null);
        Directory.Delete(_root, recursive: true);
    }

    private static readonly TrainingOptions Tiny = new(Steps: 2, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: 2, LogEvery: 1, Seed: 3);

    /// <summary>Trains <paramref name="config"/>, exports it as models/NAME with its data renamed to <paramref name="dataName"/>; returns the run.</summary>
    private string TrainAndShip(string name, ExperimentConfig config, string dataName)
    {
        string run = Path.Combine(_root, "runs", name), folder = Path.Combine(_root, "models", name);
        Experiment.Create(config).Train(run);
        Assert.Equal(0, CliTests.RunPrinting("export", "--run", run, "--out", folder).Code);
        string configPath = Path.Combine(folder, ModelExport.Files.Config), cardPath = Path.Combine(folder, DataCard.FileName);
        var exported = JsonNode.Parse(File.ReadAllText(configPath))!;
        exported["data"] = dataName;
        exported["experiment"]!["data"] = dataName;
        File.WriteAllText(configPath, exported.ToJsonString());
        var card = JsonNode.Parse(File.ReadAllText(cardPath))!;
        card["name"] = dataName;
        File.WriteAllText(cardPath, card.ToJsonString());
        return run;
    }

    private void UseEmptyCacheAndShippedModels()
    {
        Environment.SetEnvironmentVariable("UDM_DATA", Path.Combine(_root, "empty-cache"));
        Environment.SetEnvironmentVariable(ShippedModels.FolderVariable, Path.Combine(_root, "models"));
        Assert.False(DataSets.IsOnThisMachine("mnist") || DataSets.IsOnThisMachine("moby-dick"));
    }

    private static string[] Body(byte[] text) => [.. System.Text.Encoding.UTF8.GetString(text).Split('\n').Where(l => !l.StartsWith('#'))];

    [Fact]
    public void ShippedModelsSampleWithoutTheirDataAsTheirRunsDo()
    {
        string images = "idx:" + Fixtures.ImageFolder(_root);
        var unet = new UNetConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], AttentionAtLowest: false, TimeEmbedding: 16);
        string gaussian = TrainAndShip("digits-cond", new ExperimentConfig
        {
            Data = images, UNet = unet with { ClassCount = 2 }, Schedule = new ScheduleConfig(Kind: ScheduleKind.Cosine, Levels: 100),
            ClipSample = 1.0, Training = Tiny,
        }, "mnist");
        string cold = TrainAndShip("digits-blur", new ExperimentConfig
        {
            Family = "cold", Data = images, UNet = unet, Cold = new ColdConfig(Degradation: "blur", Levels: 4, KernelSize: 5, BlurStd: 2), Training = Tiny,
        }, "mnist");
        string text = TrainAndShip("words-mask", new ExperimentConfig
        {
            Family = "mask", Data = "text:" + Fixtures.TextFile(_root), Transformer = new TransformerConfig(Dimension: 32, Layers: 1, Heads: 2, FeedForward: 64),
            Training = Tiny with { BatchSize = 16 },
        }, "moby-dick");
        Assert.True(File.Exists(Path.Combine(_root, "models", "digits-blur", ColdFamilyModel.PriorFile)), "the cold export carries its colour prior");

        // The same commands on the runs (data at hand) and on the shipped models (no data).
        (string Model, string Run, string[] Arguments, string Extension)[] cases =
        [
            ("digits-cond", gaussian, ["--label", "1", "--sampler", "ddim", "--steps", "3"], ".png"),
            ("digits-blur", cold, ["--generate", "--sampler", "tacos"], ".png"),
            ("words-mask", text, ["--sampler", "fill", "--steps", "4"], ".txt"),
        ];
        var fromRuns = cases.Select(c =>
        {
            string output = Path.Combine(_root, $"{c.Model}-run{c.Extension}");
            Assert.Equal(0, CliTests.RunPrinting(["sample", "--run", c.Run, "--count", "4", "--out", output, .. c.Arguments]).Code);
            return File.ReadAllBytes(output);
        }).ToList();
        UseEmptyCacheAndShippedModels();
        for (int i = 0; i < cases.Length; i++)
        {
            string output = Path.Combine(_root, $"{cases[i].Model}-shipped{cases[i].Extension}");
            var (code, printed) = CliTests.RunPrinting(["sample", "--model", cases[i].Model, "--count", "4", "--out", output, .. cases[i].Arguments]);
            Assert.True(code == 0, printed);
            if (cases[i].Extension == ".png") Assert.Equal(fromRuns[i], File.ReadAllBytes(output));
            else Assert.Equal(Body(fromRuns[i]), Body(File.ReadAllBytes(output))); // the header names the data set, which was renamed
        }
        Assert.False(Directory.Exists(Path.Combine(_root, "empty-cache", "mnist")), "nothing was fetched");

        // What needs the data itself says how to fetch it, in one line.
        CliTests.AssertOneLineError(CliTests.Run("sample", "--model", "digits-blur", "--count", "2", "--out", Path.Combine(_root, "restored.png")), "`udm data get mnist`");
        CliTests.AssertOneLineError(CliTests.Run("sample", "--model", "digits-cond", "--sampler", "analytic-ddim", "--steps", "3", "--count", "2",
            "--out", Path.Combine(_root, "analytic.png")), "`udm data get mnist`");
        Assert.False(File.Exists(Path.Combine(_root, "restored.png")) || File.Exists(Path.Combine(_root, "analytic.png")));
    }
}
