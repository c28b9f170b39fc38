using System.Text.Json;
using System.Text.Json.Serialization;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Tokens;
using UnifiedDiffusion.Cold;

namespace UnifiedDiffusion.Runs;

/// <summary>The cold family's settings: F_t(x_0, ε) = D_t(x_0) + σε.</summary>
/// <param name="Degradation">blur, mask (Gaussian-mask inpainting), superres (repeated 2× pooling) or fade.</param>
/// <param name="Levels">Levels T (JSON: <c>steps</c>; the paper's MNIST: 20 for blur, 50 for mask, 3 for superres).</param>
/// <param name="KernelSize">Blur kernel size (odd).</param>
/// <param name="BlurStd">Blur kernel std.</param>
/// <param name="Routine">Blur routine: incremental, constant or exponential.</param>
/// <param name="Padding">Blur padding: reflect or circular.</param>
/// <param name="MaskStd">Gaussian-mask growth per level (the paper's kernel std 0.1).</param>
/// <param name="RandomCentre">Gaussian mask: a random centre per image instead of the image centre.</param>
/// <param name="Sigma">σ of the added noise (0 = deterministic degradation).</param>
/// <param name="Loss">Restoration loss: l1 or l2.</param>
/// <param name="PriorComponents">Generation: components of the Gaussian mixture over per-channel means.</param>
/// <param name="PriorNoise">Generation: std of the small noise added to prior draws (paper: 0.002; 0 = none).</param>
public sealed record ColdConfig(
    string Degradation = "blur",
    [property: JsonPropertyName("steps")] int Levels = 20,
    int KernelSize = 11,
    double BlurStd = 7.0,
    BlurRoutine Routine = BlurRoutine.Constant,
    BlurPadding Padding = BlurPadding.Reflect,
    double MaskStd = 0.1,
    bool RandomCentre = false,
    double Sigma = 0.0,
    RestorationLoss Loss = RestorationLoss.L1,
    int PriorComponents = 10,
    double PriorNoise = 0.002);

/// <summary>Text data and loss settings.</summary>
/// <param name="VocabularySize">Cap on the character vocabulary, specials included (rarer characters become [UNK]).</param>
/// <param name="Window">Moby-Dick window length in characters.</param>
/// <param name="NameLength">Names are padded to this length; longer names are dropped.</param>
/// <param name="Weighting">Mask-model loss: meanOverMasked (masked-LM) or elbo (l/t-weighted, a bound on NLL).</param>
public sealed record TextConfig(int VocabularySize = 3000, int Window = 32, int NameLength = 12, MaskLossWeighting Weighting = MaskLossWeighting.MeanOverMasked);

/// <summary>The encoding family's encoder: x_t = ᾱ_t Enc(x_0) + β̄_t ε.</summary>
/// <param name="Normalize">Project every latent to unit RMS, which keeps x_T ~ N(0, I) honest (off only for experiments).</param>
/// <param name="EncoderWidth">Images: channels of the encoder's hidden convolutions.</param>
/// <param name="EncoderLayers">Images: 3×3 convolutions in the encoder (at least 2).</param>
/// <param name="Width">Text: latent dimensions per token.</param>
public sealed record LatentConfig(bool Normalize = true, int EncoderWidth = 32, int EncoderLayers = 3, int Width = 16);

/// <summary>
/// Everything that defines a run: the family, the data, the network, the process and the
/// optimisation. Read from and written to JSON (config.json in the run folder).
/// </summary>
public sealed record ExperimentConfig
{
    /// <summary>The model family: gaussian, cold (images), mask or edit (text), or encoding (images or text).</summary>
    public string Family { get; init; } = "gaussian";

    /// <summary>
    /// The data set: a built-in toy set (gmm8, gmm25, moons, swissroll, checkerboard), an image set
    /// (mnist, fashion-mnist, digits, or idx:FOLDER for your own IDX files), or a text set (wujue,
    /// qijue, line5, moby-dick, names). Real sets are fetched into the data cache on first use.
    /// </summary>
    public string Data { get; init; } = "gmm8";

    /// <summary>The MLP denoiser's sizes (toy data).</summary>
    public MlpConfig Network { get; init; } = new();

    /// <summary>The UNet's sizes (image data); null takes the defaults.</summary>
    [JsonPropertyName("unet")]
    public UNetConfig? UNet { get; init; }

    /// <summary>The Transformer's sizes (text data); null takes the defaults.</summary>
    public TransformerConfig? Transformer { get; init; }

    /// <summary>The cold family's degradation and loss; null takes the paper's MNIST blur.</summary>
    public ColdConfig? Cold { get; init; }

    /// <summary>The encoding family's encoder; null takes the defaults.</summary>
    public LatentConfig? Latent { get; init; }

    /// <summary>Text settings (vocabulary cap, window lengths, mask-loss weighting); null takes the defaults.</summary>
    public TextConfig? Text { get; init; }

    /// <summary>Class-conditional image models: the probability of dropping a label in training (classifier-free guidance).</summary>
    public double LabelDropout { get; init; } = 0.1;

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

    /// <summary>
    /// The arithmetic of training and sampling: "fp32", or "bf16" (mixed precision: bfloat16
    /// convolutions and linear layers with float32 weights, optimizer, EMA and checkpoints).
    /// Null is fp32. It is not part of the model: a run trained in one precision samples in the other.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Precision { get; init; }

    /// <summary>
    /// The config with its precision filled in when it names none: bf16 on a CPU with bfloat16 units for
    /// the token families (mask, edit), whose bf16 quality was measured within fp32's seed-to-seed
    /// spread (issue 12 in BENCHMARKS.md), and fp32 for the rest: Gaussian diffusion on MNIST missed the
    /// spread at 50 steps (FID +0.64 against a spread of 0.37), cold restoration missed it in SSIM and
    /// RMSE, the encoding family was not measured, and toy points gain at most 15%. <c>udm train</c>
    /// applies it to new runs and stores the result; the library reads null as fp32.
    /// </summary>
    public ExperimentConfig WithDefaultPrecision() => Precision is not null ? this : this with { Precision = Precisions.Name(DefaultPrecision()) };

    /// <summary>
    /// The config as a trained run samples it on this CPU: a run trained in bf16 samples in fp32 where
    /// the CPU has no bfloat16 units (its checkpoint is float32 either way), so that a shipped or
    /// imported model runs on any machine. Training keeps refusing bf16 there.
    /// </summary>
    public ExperimentConfig ForSamplingOnThisCpu() => ForSamplingOn(Precisions.CpuHasBf16);

    /// <summary>As <see cref="ForSamplingOnThisCpu"/>, for a CPU that has (or lacks) bfloat16 units.</summary>
    internal ExperimentConfig ForSamplingOn(bool cpuHasBf16) =>
        !cpuHasBf16 && Precisions.Parse(Precision, cpuHasBf16: true) == Networks.Precision.Bf16 ? this with { Precision = Precisions.Name(Networks.Precision.Fp32) } : this;

    private Networks.Precision DefaultPrecision() =>
        Precisions.CpuHasBf16 && Family.Trim().ToLowerInvariant() is "mask" or "edit" ? Networks.Precision.Bf16 : Networks.Precision.Fp32;

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
    /// The part of the config that fixes the model's shape and meaning (everything but training,
    /// device and precision). A checkpoint only loads into a run whose model identity matches.
    /// </summary>
    public string ModelIdentity() => JsonSerializer.Serialize(this with { Training = new(), Device = "cpu", Precision = null }, Json);

    /// <summary>Parses JSON, turning every problem into a one-line <see cref="UdmException"/>.</summary>
    public static ExperimentConfig FromJson(string json, string source)
    {
        try
        {
            // Every field has a default, so an object without "data" would silently train the toy default.
            using (var document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip }))
                if (document.RootElement.ValueKind == JsonValueKind.Object && !document.RootElement.EnumerateObject().Any(p => p.Name.Equals("data", StringComparison.OrdinalIgnoreCase)))
                    throw new UdmException($"{source} names no \"data\"; a config says at least what to train on (and usually \"family\"); start from the output of `udm recipes gmm8`.");
            return JsonSerializer.Deserialize<ExperimentConfig>(json, Json) ?? throw new UdmException($"{source} is empty; give a JSON object such as the one `udm recipes gmm8` prints.");
        }
        catch (JsonException e)
        {
            string path = e.Path is { Length: > 1 } p ? $" at {p}" : "";
            throw new UdmException($"{source} is not a valid config{path} (line {e.LineNumber + 1}): {CleanJsonMessage(e.Message)} Compare with the output of `udm recipes gmm8`.", e);
        }
    }

    /// <summary>System.Text.Json's message without .NET type names, paths and line numbers (said separately) or programmer advice.</summary>
    private static string CleanJsonMessage(string message)
    {
        string first = message.Split('\n')[0];
        first = System.Text.RegularExpressions.Regex.Replace(first, @"\s*(Path: |LineNumber: ).*$", "");
        first = System.Text.RegularExpressions.Regex.Replace(first, @"The JSON value could not be converted to \S+", "the value has the wrong type for this field.");
        first = System.Text.RegularExpressions.Regex.Replace(first, @"\s*Change the reader options\.?", "");
        first = System.Text.RegularExpressions.Regex.Replace(first, @"'?System\.[A-Za-z0-9_.`\[\]]+'?", "a value");
        return first.Trim().TrimEnd('.') + ".";
    }

    /// <summary>Reads a config file.</summary>
    public static ExperimentConfig Load(string path)
    {
        if (!File.Exists(path)) throw new UdmException($"config file {path} does not exist; give a JSON file or a recipe name ({string.Join(", ", Recipes.Names)}).");
        return FromJson(File.ReadAllText(path), path);
    }
}
