using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Latent;

/// <summary>
/// The exact decoder of an encoding process for data on a finite set {x_k} with probabilities
/// p_k: q(x_0 = x_k | x_t) ∝ p_k·N(x_t; ᾱ_t Enc(x_k), β̄_t² I). An oracle for tests (Enc fixed, any
/// map) that works for vectors, images and token strings alike.
/// </summary>
public sealed class FiniteSetDecoder : IPosteriorModel<FiniteSetPosterior>
{
    private readonly EncodingProcess _process;
    private readonly Tensor _support;
    private readonly Tensor _logPrior;
    private readonly Tensor _latents;
    private readonly bool _drawMean;

    /// <summary>
    /// The oracle for <paramref name="support"/> [K, ...] with <paramref name="probabilities"/> [K].
    /// With <paramref name="drawMean"/> the posterior's draw is E[x_0 | x_t] (a point decoder, as a
    /// Gaussian decoder's mean); otherwise it draws whole x_0 from the exact posterior.
    /// </summary>
    public FiniteSetDecoder(EncodingProcess process, Tensor support, Tensor probabilities, bool drawMean = false)
    {
        _process = process;
        _drawMean = drawMean;
        using var noGrad = torch.no_grad();
        _support = support.clone().DetachFromDisposeScope();
        _logPrior = probabilities.to(ScalarType.Float64).div(probabilities.sum()).log().DetachFromDisposeScope();
        _latents = process.Encoder.forward(support).flatten(1).to(ScalarType.Float64).DetachFromDisposeScope();
    }

    /// <inheritdoc />
    public FiniteSetPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        using var scope = torch.NewDisposeScope();
        var z = xt.flatten(1).to(ScalarType.Float64);
        var (signal, noise) = _process.Coefficients(t, z);
        var a = signal.to(ScalarType.Float64); // [B, 1]
        var b = noise.to(ScalarType.Float64);
        var distance = z.pow(2).sum(1, keepdim: true) - z.matmul(_latents.T).mul(a).mul(2) + a.pow(2) * _latents.pow(2).sum(1).unsqueeze(0);
        var logWeights = _logPrior.unsqueeze(0) - distance / (b.pow(2) * 2);
        var weights = logWeights.softmax(1);
        return new FiniteSetPosterior(weights.MoveToOuterDisposeScope(), _support, _drawMean);
    }
}

/// <summary>The exact posterior over a finite support: weights [B, K].</summary>
public sealed class FiniteSetPosterior(Tensor weights, Tensor support, bool drawMean) : IPosterior
{
    /// <summary>q(x_0 = x_k | x_t), [B, K].</summary>
    public Tensor Weights { get; } = weights;

    /// <summary>E[x_0 | x_t] (float support only).</summary>
    public Tensor Mean()
    {
        using var scope = torch.NewDisposeScope();
        var flat = Weights.matmul(support.flatten(1).to(ScalarType.Float64)).to(ScalarType.Float32);
        return flat.view([Weights.shape[0], .. support.shape.Skip(1)]).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor Draw(Generator? generator)
    {
        if (drawMean) return Mean();
        using var scope = torch.NewDisposeScope();
        var index = torch.multinomial(Weights, 1, generator: generator).squeeze(1);
        return support.index_select(0, index).MoveToOuterDisposeScope();
    }
}
