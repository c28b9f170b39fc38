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
public sealed class MlpDenoiser : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly SinusoidalEmbedding _timeFeatures;
    private readonly Sequential _timeMlp;
    private readonly Linear _input;
    private readonly ModuleList<Linear> _hidden;
    private readonly Linear _output;

    /// <summary>Creates the network for <paramref name="dimension"/>-dimensional data.</summary>
    public MlpDenoiser(int dimension, MlpConfig config) : base(nameof(MlpDenoiser))
    {
        _timeFeatures = new SinusoidalEmbedding(config.TimeEmbedding);
        _timeMlp = nn.Sequential(nn.Linear(config.TimeEmbedding, config.Hidden), nn.SiLU(), nn.Linear(config.Hidden, config.Hidden));
        _input = nn.Linear(dimension + config.Hidden, config.Hidden);
        _hidden = new ModuleList<Linear>([.. Enumerable.Range(0, config.Depth).Select(_ => nn.Linear(config.Hidden, config.Hidden))]);
        _output = nn.Linear(config.Hidden, dimension);
        RegisterComponents();
    }

    /// <summary>(x_t [B, d], t [B]) → [B, d].</summary>
    public override Tensor forward(Tensor x, Tensor t)
    {
        var embedding = _timeMlp.forward(_timeFeatures.forward(t));
        var h = nn.functional.silu(_input.forward(torch.cat([x, embedding], 1)));
        foreach (var layer in _hidden) h = h + nn.functional.silu(layer.forward(h));
        return _output.forward(h);
    }
}
