using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>udm export and import: the exported folder, the exact round trip, and every way a folder can be wrong.</summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class ModelExportTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-export-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static readonly TrainingOptions Tiny = new(Steps: 2, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: 2, LogEvery: 1, Seed: 3);

    /// <summary>A trained tiny class-conditional image model, exported once per test.</summary>
    private (string Run, string Export) TrainAndExport()
    {
        var config = new ExperimentConfig
        {
            Data = "idx:" + Fixtures.ImageFolder(_root),
            UNet = new UNetConfig(BaseChannels: 16, ChannelMultipliers: [1, 2], AttentionAtLowest: true, TimeEmbedding: 16, ClassCount: 2),
            Schedule = new ScheduleConfig(Kind: ScheduleKind.Cosine, Levels: 100),
            ClipSample = 1.0,
            Training = Tiny,
        };
        string run = Path.Combine(_root, "run"), export = Path.Combine(_root, "export");
        Experiment.Create(config).Train(run);
        var (code, _) = CliTests.RunPrinting("export", "--run", run, "--out", export);
        Assert.Equal(0, code);
        return (run, export);
    }

    [Fact]
    public void ExportThenImportGivesTheSameWeightsAndSamples()
    {
        var (run, export) = TrainAndExport();
        Assert.Equal(["README.md", "config.json", "data.json", "loss.csv", "model.safetensors", "scheduler_config.json", "training.json"], Directory.GetFiles(export).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(export, ModelExport.Files.Config)))!;
        Assert.Equal(ModelExport.Format, config["format"]!.GetValue<string>());
        Assert.Equal("unet", config["network"]!["model"]!.GetValue<string>());
        Assert.Equal(16, config["network"]!["config"]!["BaseChannels"]!.GetValue<int>());

        string imported = Path.Combine(_root, "imported");
        var (code, _) = CliTests.RunPrinting("import", export, "--out", imported);
        Assert.Equal(0, code);
        var original = Experiment.Load(run);
        var copy = Experiment.Load(imported);
        var a = original.Model.Network.state_dict();
        var b = copy.Model.Network.state_dict();
        Assert.Equal(a.Keys, b.Keys);
        foreach (var (name, tensor) in a) Assert.True(tensor.equal(b[name]).all().item<bool>(), name);
        using var scope = torch.NewDisposeScope();
        var request = new SamplerRequest("ddim", 5) { Label = 1 };
        Assert.True(original.Sample(request, 4, seed: 9).equal(copy.Sample(request, 4, seed: 9)).all().item<bool>());

        // The safetensors names are the PyTorch twins' (no TorchSharp underscores), in float32.
        var names = Safetensors.LoadStateDict(Path.Combine(export, ModelExport.Files.Weights));
        Assert.Contains("down.0.conv1.weight", names.Keys);
        Assert.DoesNotContain(names.Keys, n => n.Split('.').Any(part => part.StartsWith('_')));
        Assert.All(names.Values, t => Assert.Equal(ScalarType.Float32, t.dtype));
    }

    [Fact]
    public void SchedulerConfigReproducesTheScheduleThroughDiffusersFormulas()
    {
        foreach (var schedule in new[] { new ScheduleConfig(), new ScheduleConfig(Kind: ScheduleKind.Cosine, Levels: 200) })
        {
            var json = ModelExport.SchedulerConfig(new ExperimentConfig { Schedule = schedule })!;
            int steps = json["num_train_timesteps"]!.GetValue<int>();
            string kind = json["beta_schedule"]!.GetValue<string>();
            double start = json["beta_start"]!.GetValue<double>(), end = json["beta_end"]!.GetValue<double>();
            // diffusers' DDPMScheduler: betas linspace(beta_start, beta_end, T) or betas_for_alpha_bar(cos²), alphas_cumprod = cumprod(1 − β).
            static double CosineBar(double u) => Math.Pow(Math.Cos((u + 0.008) / 1.008 * Math.PI / 2), 2);
            var noise = NoiseSchedule.Create(schedule);
            double cumprod = 1;
            for (int timestep = 0; timestep < steps; timestep++)
            {
                double beta = kind == "linear" ? start + (end - start) * timestep / (steps - 1)
                    : Math.Min(1 - CosineBar((timestep + 1.0) / steps) / CosineBar((double)timestep / steps), 0.999);
                cumprod *= 1 - beta;
                int level = timestep + json["udm_level_offset"]!.GetValue<int>();
                Assert.Equal(cumprod, Math.Pow(noise.Signal(level), 2), 1e-12);
            }
        }
        Assert.Null(ModelExport.SchedulerConfig(new ExperimentConfig { Family = "mask", Data = "wujue" }));
    }

    /// <summary>Rewrites the header of a safetensors file through <paramref name="change"/>, keeping the data.</summary>
    private static void EditHeader(string path, Action<JsonObject> change)
    {
        var bytes = File.ReadAllBytes(path);
        int length = (int)BitConverter.ToUInt64(bytes, 0);
        var header = JsonNode.Parse(bytes.AsSpan(8, length))!.AsObject();
        change(header);
        var text = Encoding.UTF8.GetBytes(header.ToJsonString());
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)text.Length), .. text, .. bytes.AsSpan(8 + length)]);
    }

    [Fact]
    public void ImportOfADamagedFolderIsOneLineNamingTheTensorAndWritesNoRun()
    {
        var (_, export) = TrainAndExport();
        string weights = Path.Combine(export, ModelExport.Files.Weights), card = Path.Combine(export, ModelExport.Files.Card);
        var good = File.ReadAllBytes(weights);
        string target = Path.Combine(_root, "never");
        // Any change to the weights fails the checksum that the card records, before any tensor is read.
        File.WriteAllBytes(weights, [.. good[..^1], (byte)(good[^1] ^ 1)]);
        var (checksumCode, checksumError) = CliTests.Run("import", export, "--out", target);
        Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, checksumCode);
        Assert.Contains("is damaged: its SHA-256", checksumError);
        Assert.False(Directory.Exists(target));
        // Without a recorded checksum (a folder written by hand or by PyTorch), each tensor check names what is wrong.
        File.WriteAllText(card, System.Text.RegularExpressions.Regex.Replace(File.ReadAllText(card), ModelExport.ChecksumLabel + " `[0-9a-f]{64}`", ""));
        Assert.Null(ModelExport.RecordedChecksum(export));
        var cases = new (string Expected, Action Damage)[]
        {
            ("has no tensor down.0.conv1.weight", () => EditHeader(weights, h => h.Remove("down.0.conv1.weight"))),
            ("tensor down.0.conv1.weight has shape [16, 16, 3, 1]", () => EditHeader(weights, h => h["down.0.conv1.weight"]!["shape"] = new JsonArray(16, 16, 3, 1))),
            ("tensor down.0.conv1.weight is F16; it must be F32", () => EditHeader(weights, h => h["down.0.conv1.weight"]!["dtype"] = "F16")),
            ("lies outside the file", () => File.WriteAllBytes(weights, good[..(good.Length - 100)])),
            ("header claims", () => File.WriteAllBytes(weights, [.. BitConverter.GetBytes((ulong)good.Length), .. good.AsSpan(8)])),
            ("holds tensor extra.weight", () => EditHeader(weights, h => h["extra.weight"] = h["down.0.conv1.weight"]!.DeepClone())),
        };
        foreach (var (expected, damage) in cases)
        {
            File.WriteAllBytes(weights, good);
            damage();
            var (code, error) = CliTests.Run("import", export, "--out", target);
            Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
            Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains(expected, error);
            Assert.False(Directory.Exists(target), $"{expected}: a failed import wrote {target}");
            Assert.Empty(Directory.GetDirectories(_root, ".never*"));
        }
    }

    [Fact]
    public void ExportRefusesANonEmptyFolderUnlessForced()
    {
        var (run, export) = TrainAndExport();
        var (code, error) = CliTests.Run("export", "--run", run, "--out", export);
        Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
        Assert.Contains("--out: ", error);
        Assert.Contains("is not empty; export into a new folder, or pass --force", error);
        File.WriteAllText(Path.Combine(export, "stale.txt"), "old");
        Assert.Equal(0, CliTests.RunPrinting("export", "--run", run, "--out", export, "--force").Code);
        Assert.False(File.Exists(Path.Combine(export, "stale.txt")), "--force replaces the folder");
    }

    [Fact]
    public void APyTorchStateDictImportsAndPickledCodeIsRefused()
    {
        var (run, export) = TrainAndExport();
        string pthFolder = Path.Combine(_root, "pth");
        Directory.CreateDirectory(pthFolder);
        File.Copy(Path.Combine(export, ModelExport.Files.Config), Path.Combine(pthFolder, ModelExport.Files.Config));
        var network = Experiment.Load(run).Model.Network;
        PyTorchPickler.PickleStateDict(Path.Combine(pthFolder, ModelExport.Files.PyTorchWeights), ModelExport.TwinStateDict(network));
        Assert.Equal(0, CliTests.RunPrinting("import", pthFolder, "--out", Path.Combine(_root, "from-pth")).Code);
        var imported = Experiment.Load(Path.Combine(_root, "from-pth")).Model.Network.state_dict();
        foreach (var (name, tensor) in network.state_dict()) Assert.True(tensor.equal(imported[name]).all().item<bool>(), name);

        // torch.save's zip layout around a pickle that calls os.system: refused, and nothing runs.
        string marker = Path.Combine(_root, "pwned");
        var pickle = new List<byte> { 0x80, 0x02 };
        pickle.AddRange(Encoding.ASCII.GetBytes("cposix\nsystem\n"));
        byte[] command = Encoding.ASCII.GetBytes($"touch {marker}");
        pickle.Add((byte)'X');
        pickle.AddRange(BitConverter.GetBytes(command.Length));
        pickle.AddRange(command);
        pickle.AddRange([0x85, (byte)'R', (byte)'.']);
        string evil = Path.Combine(pthFolder, ModelExport.Files.PyTorchWeights);
        File.Delete(evil);
        using (var zip = ZipFile.Open(evil, ZipArchiveMode.Create))
        using (var entry = zip.CreateEntry("archive/data.pkl").Open())
            entry.Write(pickle.ToArray());
        var (code, error) = CliTests.Run("import", pthFolder, "--out", Path.Combine(_root, "evil"));
        Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
        Assert.Contains("model.pth", error);
        Assert.False(File.Exists(marker));
        Assert.False(Directory.Exists(Path.Combine(_root, "evil")));
    }
}
