using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cold;

/// <summary>The restoration loss of a cold model.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<RestorationLoss>))]
public enum RestorationLoss
{
    /// <summary>Mean absolute error (Laplace posterior), as the Cold Diffusion paper.</summary>
    L1,
    /// <summary>Mean squared error (Gaussian posterior).</summary>
    L2,
}

/// <summary>
/// The cold posterior model: a restoration network G(x_t, t) predicts x̂_0 directly, and the loss
/// is mean |G(x_t, t) − x_0| (or its square).
/// </summary>
public sealed class ColdPosteriorModel(ColdProcess process, nn.Module<Tensor, Tensor, Tensor> network, RestorationLoss loss = RestorationLoss.L1)
    : ITrainablePosteriorModel<PointPosterior>
{
    /// <summary>The process the model restores.</summary>
    public ColdProcess Process { get; } = process;

    /// <inheritdoc />
    public nn.Module Network => network;

    /// <summary>The training loss kind.</summary>
    public RestorationLoss LossKind { get; } = loss;

    /// <inheritdoc />
    public PointPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null) => new(ClassConditioning.Forward(network, xt, t, context?.Conditioning));

    /// <inheritdoc />
    public Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null)
    {
        var restored = ClassConditioning.Forward(network, xt, t, conditioning);
        return LossKind switch
        {
            RestorationLoss.L1 => nn.functional.l1_loss(restored, x0),
            RestorationLoss.L2 => nn.functional.mse_loss(restored, x0),
            _ => throw new ArgumentOutOfRangeException(nameof(loss)),
        };
    }
}
