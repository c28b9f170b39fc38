using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>Sizes of the MLP denoiser.</summary>
/// <param name="Hidden">Width of each hidden layer.</param>
/// <param name="Depth">Number of hidden layers.</param>
/// <param name="TimeEmbedding">Width of the sinusoidal time embedding.</param>
public sealed record MlpConfig(int Hidden = 256, int Depth = 3, int TimeEmbedding = 64);

/// <summary>
/// An MLP denoiser for low-dimensional data: the input and a learned projection of a sinusoidal
/// embedding of t are concatenated, then passed through <c>Depth</c> SiLU layers with residual
/// connections. Output has the input's width (ε, x_0 or v, depending on the prediction type).
/// </summary>
public sealed class MlpDenoiser : nn.Module<Tensor, Tensor, Tensor>, IMixedPrecision, ITwinNetwork
{
    private readonly IReadOnlyDictionary<string, object?> _twinConfig;

    /// <inheritdoc />
    public string TwinModel => "mlp";

    /// <inheritdoc />
    public IReadOnlyDictionary<string, object?> TwinConfig => _twinConfig;

    private readonly SinusoidalEmbedding _timeFeatures;
    private readonly Sequential _timeMlp;
    private readonly MixedLinear _input;
    private readonly ModuleList<MixedLinear> _hidden;
    private readonly MixedLinear _output;

    /// <summary>Creates the network for <paramref name="dimension"/>-dimensional data.</summary>
    public MlpDenoiser(int dimension, MlpConfig config) : base(nameof(MlpDenoiser))
    {
        _twinConfig = new Dictionary<string, object?>
        {
            ["Dimension"] = dimension, [nameof(MlpConfig.Hidden)] = config.Hidden, [nameof(MlpConfig.Depth)] = config.Depth, [nameof(MlpConfig.TimeEmbedding)] = config.TimeEmbedding,
        };
        _timeFeatures = new SinusoidalEmbedding(config.TimeEmbedding);
        _timeMlp = nn.Sequential(new MixedLinear(config.TimeEmbedding, config.Hidden), nn.SiLU(), new MixedLinear(config.Hidden, config.Hidden));
        _input = new MixedLinear(dimension + config.Hidden, config.Hidden);
        _hidden = new ModuleList<MixedLinear>([.. Enumerable.Range(0, config.Depth).Select(_ => new MixedLinear(config.Hidden, config.Hidden))]);
        _output = new MixedLinear(config.Hidden, dimension);
        RegisterComponents();
    }

    /// <inheritdoc />
    public Precision Precision { get; set; }

    /// <summary>(x_t [B, d], t [B]) → [B, d], float32.</summary>
    public override Tensor forward(Tensor x, Tensor t)
    {
        using var autocast = Autocast.Enter(Precision);
        var embedding = _timeMlp.forward(_timeFeatures.forward(t));
        var h = nn.functional.silu(_input.forward(torch.cat([Autocast.Cast(x), Autocast.Cast(embedding)], 1)));
        foreach (var layer in _hidden) h = h + nn.functional.silu(layer.forward(h));
        return _output.forward(h).to(ScalarType.Float32);
    }
}
