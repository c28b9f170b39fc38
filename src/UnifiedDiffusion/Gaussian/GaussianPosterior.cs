using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>What the denoising network predicts.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PredictionType>))]
public enum PredictionType
{
    /// <summary>The noise ε (DDPM); loss MSE on ε.</summary>
    Epsilon,
    /// <summary>The clean data x_0; loss MSE on x_0.</summary>
    Sample,
    /// <summary>The velocity v = ᾱ_t ε − β̄_t x_0 (Salimans &amp; Ho); loss MSE on v.</summary>
    Velocity,
}

/// <summary>
/// The Gaussian posterior q(x_0 | x_t) ≈ N(μ̄, σ̄² I) as a point estimate: <see cref="Mean"/> is
/// x̂_0 (after optional clipping), <see cref="RawNoise"/> is the network's own ε̂ before clipping,
/// which Analytic-DPM's Γ_t needs. Draw returns the mean; Analytic-DPM adds σ̄ in its kernel.
/// </summary>
public sealed class GaussianPosterior(Tensor mean, Tensor rawNoise) : IPosterior
{
    /// <summary>x̂_0 = E[x_0 | x_t].</summary>
    public Tensor Mean { get; } = mean;

    /// <summary>ε̂ as predicted, before any clipping of x̂_0.</summary>
    public Tensor RawNoise { get; } = rawNoise;

    /// <inheritdoc />
    public Tensor Draw(Generator? generator) => Mean;
}

/// <summary>
/// A network-backed Gaussian posterior model. The network maps (x_t, t) to ε, x_0 or v; this class
/// converts to x̂_0 and ε̂, clips x̂_0 if asked (for data in a known range, e.g. [−1, 1] images),
/// and computes the MSE loss on the network's own target.
/// </summary>
public sealed class GaussianPosteriorModel(
    GaussianProcess process,
    nn.Module<Tensor, Tensor, Tensor> network,
    PredictionType prediction = PredictionType.Epsilon,
    double? clipSample = null) : ITrainablePosteriorModel<GaussianPosterior>
{
    /// <inheritdoc />
    public nn.Module Network => network;

    /// <summary>What the network predicts.</summary>
    public PredictionType Prediction => prediction;

    /// <inheritdoc />
    public GaussianPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        var (a, b) = process.Coefficients(t, xt);
        var output = ClassConditioning.Forward(network, xt, t, context?.Conditioning);
        Tensor x0, eps;
        switch (prediction)
        {
            case PredictionType.Epsilon:
                eps = output;
                x0 = GaussianProcess.CleanOf(xt, eps, a, b);
                break;
            case PredictionType.Sample:
                x0 = output;
                eps = GaussianProcess.NoiseOf(xt, x0, a, b);
                break;
            case PredictionType.Velocity:
                x0 = xt * a - output * b;
                eps = xt * b + output * a;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(prediction));
        }
        if (clipSample is double c) x0 = x0.clamp(-c, c);
        return new GaussianPosterior(x0, eps);
    }

    /// <inheritdoc />
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null)
    {
        var output = ClassConditioning.Forward(network, xt, t, conditioning);
        Tensor target = prediction switch
        {
            PredictionType.Epsilon => noise,
            PredictionType.Sample => x0,
            PredictionType.Velocity => VelocityTarget(x0, t, noise),
            _ => throw new ArgumentOutOfRangeException(nameof(prediction)),
        };
        return nn.functional.mse_loss(output, target);
    }

    private Tensor VelocityTarget(Tensor x0, Tensor t, Tensor noise)
    {
        var (a, b) = process.Coefficients(t, x0);
        return noise * a - x0 * b;
    }
}
