using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Latent;

/// <summary>
/// The encoding model's trainable parameters in one module: Enc and the decoder q(x_0 | x_t).
/// They are trained together, checkpointed together and averaged together (EMA).
/// </summary>
public sealed class EncoderDecoder : nn.Module
{
    /// <summary>Pairs an encoder with a decoder network (x_t latent, level t) → x̂_0 or logits.</summary>
    public EncoderDecoder(LatentEncoder encoder, nn.Module<Tensor, Tensor, Tensor> decoder) : base(nameof(EncoderDecoder))
    {
        _encoder = encoder;
        _decoder = decoder;
        RegisterComponents();
    }

    private readonly LatentEncoder _encoder;
    private readonly nn.Module<Tensor, Tensor, Tensor> _decoder;

    /// <summary>Enc.</summary>
    public LatentEncoder Encoder => _encoder;

    /// <summary>The decoder network.</summary>
    public nn.Module<Tensor, Tensor, Tensor> Decoder => _decoder;
}

/// <summary>
/// The Gaussian decoder for continuous data: q(x_0 | x_t) = N(D(x_t, t), σ² I), trained by MSE
/// on x_0 (−log q up to constants), through both D and Enc. Its posterior's mean is x̂_0 in data
/// space, and its <see cref="GaussianPosterior.RawNoise"/> is the latent ε̂ = F_t⁻¹(x̂_0, x_t),
/// which Analytic-DPM's Γ_t needs.
/// </summary>
public sealed class GaussianDecoderModel(EncodingProcess process, EncoderDecoder network, double? clipSample = null)
    : ITrainablePosteriorModel<GaussianPosterior>
{
    /// <inheritdoc />
    public nn.Module Network => network;

    /// <inheritdoc />
    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        var x0 = network.Decoder.forward(xt, t);
        if (clipSample is double c) x0 = x0.clamp(-c, c);
        return new GaussianPosterior(x0, process.InferNoise(x0, xt, t));
    }

    /// <inheritdoc />
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null) => nn.functional.mse_loss(network.Decoder.forward(xt, t), x0);
}

/// <summary>
/// The categorical decoder for tokens: q(x_0 | x_t) = Π_i Cat(softmax(D(x_t, t))_i), trained by
/// cross-entropy on every position, through both D and Enc. Tokens the data never contains
/// (special symbols) can be excluded: their logits are −∞, so they are never drawn.
/// </summary>
public sealed class CategoricalDecoderModel : ITrainablePosteriorModel<TokenDecoderPosterior>
{
    private readonly EncoderDecoder _network;
    private readonly Tensor? _excluded;

    /// <summary>The decoder of <paramref name="network"/>, never predicting <paramref name="excludedTokens"/>.</summary>
    public CategoricalDecoderModel(EncoderDecoder network, IReadOnlyCollection<long>? excludedTokens = null)
    {
        _network = network;
        if (excludedTokens is { Count: > 0 }) _excluded = torch.tensor(excludedTokens.ToArray()).DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public nn.Module Network => _network;

    /// <inheritdoc />
    public TokenDecoderPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null) => new(Logits(xt, t).log_softmax(-1));

    /// <inheritdoc />
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null) =>
        nn.functional.cross_entropy(Logits(xt, t).flatten(0, 1), x0.flatten());

    private Tensor Logits(Tensor xt, Tensor t)
    {
        var logits = _network.Decoder.forward(xt, t);
        return _excluded is null ? logits : logits.index_fill(-1, _excluded.to(logits.device), float.NegativeInfinity);
    }
}

/// <summary>Per-position categorical beliefs over tokens, [B, L, V] log-probabilities.</summary>
public sealed class TokenDecoderPosterior(Tensor logProbabilities) : IPosterior
{
    /// <summary>log q(x_0,i = v | x_t), [B, L, V].</summary>
    public Tensor LogProbabilities { get; } = logProbabilities;

    /// <summary>Draws every position independently from its marginal: x̂_0 int64 [B, L].</summary>
    public Tensor Draw(Generator? generator)
    {
        using var scope = torch.NewDisposeScope();
        // Gumbel-max: argmax(log p + G) with G = −log(−log U) is a draw from p, in one vectorised pass.
        var uniform = torch.rand(LogProbabilities.shape, dtype: LogProbabilities.dtype, device: LogProbabilities.device, generator: generator);
        var gumbel = uniform.clamp_min_(1e-20).log_().neg_().clamp_min_(1e-20).log_().neg_();
        return (LogProbabilities + gumbel).argmax(-1).MoveToOuterDisposeScope();
    }
}
