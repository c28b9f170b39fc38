using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;

namespace UnifiedDiffusion.Runs;

/// <summary>Named, ready-to-train configurations.</summary>
public static class Recipes
{
    /// <summary>Recipe names: one per toy data set, plus "demo" (gmm8 on a short budget).</summary>
    public static IReadOnlyList<string> Names { get; } = [.. ToyData.Names, "demo"];

    /// <summary>The recipe of that name.</summary>
    public static ExperimentConfig Get(string name)
    {
        string key = name.Trim().ToLowerInvariant();
        if (key == "demo")
            return new ExperimentConfig { Data = "gmm8", Training = new TrainingOptions(Steps: 10_000, BatchSize: 512, LearningRate: 2e-3, EmaDecay: 0.995, CheckpointEvery: 2000) };
        if (ToyData.Names.Contains(key))
            return new ExperimentConfig { Data = key, Training = new TrainingOptions(Steps: 20_000, BatchSize: 512, LearningRate: 1e-3, EmaDecay: 0.999) };
        throw new UdmException($"unknown recipe \"{name}\": use one of {string.Join(", ", Names)}, or a path to a JSON config.");
    }

    /// <summary>A recipe name or a JSON file path.</summary>
    public static ExperimentConfig Resolve(string nameOrPath) =>
        nameOrPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || File.Exists(nameOrPath)
            ? ExperimentConfig.Load(nameOrPath)
            : Get(nameOrPath);
}
