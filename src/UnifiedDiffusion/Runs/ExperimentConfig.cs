using System.Text.Json;
using System.Text.Json.Serialization;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Everything that defines a run: the family, the data, the network, the process and the
/// optimisation. Read from and written to JSON (config.json in the run folder).
/// </summary>
public sealed record ExperimentConfig
{
    /// <summary>The model family: "gaussian" (the others arrive with their issues).</summary>
    public string Family { get; init; } = "gaussian";

    /// <summary>The data set: a built-in toy set (gmm8, gmm25, moons, swissroll, checkerboard).</summary>
    public string Data { get; init; } = "gmm8";

    /// <summary>The MLP denoiser's sizes.</summary>
    public MlpConfig Network { get; init; } = new();

    /// <summary>The Gaussian noise schedule.</summary>
    public ScheduleConfig Schedule { get; init; } = new();

    /// <summary>What the network predicts: epsilon, sample (x_0) or velocity.</summary>
    public PredictionType Prediction { get; init; } = PredictionType.Epsilon;

    /// <summary>Clip x̂_0 to [−c, c] when sampling; null for unbounded data.</summary>
    public double? ClipSample { get; init; }

    /// <summary>Optimisation settings.</summary>
    public TrainingOptions Training { get; init; } = new();

    /// <summary>"cpu" or "cuda".</summary>
    public string Device { get; init; } = "cpu";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>The config as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>
    /// The part of the config that fixes the model's shape and meaning (everything but training
    /// and device). A checkpoint only loads into a run whose model identity matches.
    /// </summary>
    public string ModelIdentity() => JsonSerializer.Serialize(this with { Training = new(), Device = "cpu" }, Json);

    /// <summary>Parses JSON, turning every problem into a one-line <see cref="UdmException"/>.</summary>
    public static ExperimentConfig FromJson(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<ExperimentConfig>(json, Json) ?? throw new UdmException($"{source} is empty; give a JSON object such as the one `udm recipes gmm8` prints.");
        }
        catch (JsonException e)
        {
            throw new UdmException($"{source} is not a valid config: {e.Message.Split('\n')[0]} Compare with the output of `udm recipes gmm8`.", e);
        }
    }

    /// <summary>Reads a config file.</summary>
    public static ExperimentConfig Load(string path)
    {
        if (!File.Exists(path)) throw new UdmException($"config file {path} does not exist; give a JSON file or a recipe name ({string.Join(", ", Recipes.Names)}).");
        return FromJson(File.ReadAllText(path), path);
    }
}
