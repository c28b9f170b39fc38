using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using Xunit;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>
/// --model NAME and udm models on a models folder made here (UDM_MODELS): sampling by name, an unknown
/// name, both --run and --model, and a damaged weight file refused by the checksum its card records.
/// </summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class ShippedModelsTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-models-").FullName;
    private readonly string _name = "toy-" + Guid.NewGuid().ToString("N")[..8];

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(ShippedModels.FolderVariable, null);
        Directory.Delete(_root, recursive: true);
        string cache = Path.Combine(DataCache.DefaultRoot, "models");
        if (Directory.Exists(cache))
            foreach (var imported in Directory.EnumerateDirectories(cache, _name + "-*")) Directory.Delete(imported, recursive: true);
    }

    [Fact]
    public void AShippedModelSamplesByNameAndADamagedOneIsRefusedByItsChecksum()
    {
        string run = Path.Combine(_root, "run"), models = Path.Combine(_root, "models"), folder = Path.Combine(models, _name);
        var config = new ExperimentConfig { Data = "gmm8", Training = new TrainingOptions(Steps: 3, BatchSize: 16, CheckpointEvery: 3, LogEvery: 1) };
        Experiment.Create(config).Train(run);
        Assert.Equal(0, CliTests.RunPrinting("export", "--run", run, "--out", folder).Code);
        Assert.Matches(ModelExport.ChecksumLabel + " `[0-9a-f]{64}`", File.ReadAllText(Path.Combine(folder, ModelExport.Files.Card)));
        Environment.SetEnvironmentVariable(ShippedModels.FolderVariable, models);

        var (listed, listing) = CliTests.RunPrinting("models");
        Assert.Equal(0, listed);
        Assert.Contains(_name, listing);
        Assert.Contains("checksum ok", listing);

        string samples = Path.Combine(_root, "samples.csv");
        var (code, _) = CliTests.RunPrinting("sample", "--model", _name, "--count", "8", "--steps", "3", "--out", samples);
        Assert.Equal(0, code);
        Assert.Equal(8, File.ReadAllLines(samples).Length);
        // The same samples as from the run it was exported from.
        string direct = Path.Combine(_root, "direct.csv");
        Assert.Equal(0, CliTests.RunPrinting("sample", "--run", run, "--count", "8", "--steps", "3", "--out", direct).Code);
        Assert.Equal(File.ReadAllLines(direct), File.ReadAllLines(samples));

        CliTests.AssertOneLineError(CliTests.Run("sample", "--model", "no-such-model"), $"use one of {_name}");
        CliTests.AssertOneLineError(CliTests.Run("sample", "--model", _name, "--run", run), "give --run or --model, not both");

        string weights = Path.Combine(folder, ModelExport.Files.Weights);
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        CliTests.AssertOneLineError(CliTests.Run("sample", "--model", _name, "--out", Path.Combine(_root, "again.csv")), "is damaged: its SHA-256");
        Assert.False(File.Exists(Path.Combine(_root, "again.csv")));
        Assert.Contains("DAMAGED", CliTests.RunPrinting("models").Output);
        CliTests.AssertOneLineError(CliTests.Run("import", folder, "--out", Path.Combine(_root, "imported")), "is damaged");
    }
}
