using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// The model's belief <c>q(x_0 | x_t)</c> for one batch at one level. Families expose richer
/// views (a Gaussian mean, categorical marginals); generic kernels only need a draw of x̂_0.
/// </summary>
public interface IPosterior
{
    /// <summary>Draws x̂_0 ~ q(x_0 | x_t), or returns the point estimate for point posteriors.</summary>
    Tensor Draw(Generator? generator);

    /// <summary>
    /// A point estimate of x_0 for showing, which draws nothing, so that looking at a trajectory
    /// never changes it: the point itself for point posteriors (the default), the mode for categorical ones.
    /// </summary>
    Tensor Estimate() => Draw(null);
}

/// <summary>A posterior that is a single point: <see cref="Draw"/> returns the estimate itself.</summary>
public sealed class PointPosterior(Tensor estimate) : IPosterior
{
    /// <summary>The point estimate x̂_0.</summary>
    public Tensor Estimate { get; } = estimate;

    /// <inheritdoc />
    public Tensor Draw(Generator? generator) => Estimate;
}

/// <summary>A posterior model <c>q(x_0 | x_t)</c>: a network, or an exact oracle in tests.</summary>
public interface IPosteriorModel<out TPosterior> where TPosterior : IPosterior
{
    /// <summary>
    /// The posterior given x_t at per-sample levels t (int64 [B]), for the trajectory that
    /// <paramref name="context"/> describes (its class labels and guidance); null: unconditional.
    /// </summary>
    TPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null);
}

/// <summary>A posterior model backed by a trainable network.</summary>
public interface ITrainablePosteriorModel<out TPosterior> : IPosteriorModel<TPosterior> where TPosterior : IPosterior
{
    /// <summary>The parameters that training updates.</summary>
    nn.Module Network { get; }

    /// <summary>
    /// The training loss (a scalar): a simple surrogate of −log q(x_0 | x_t), for a class-conditional
    /// network given <paramref name="conditioning"/> (the batch's labels after label dropout).
    /// </summary>
    Tensor Loss(Tensor x0, Tensor xt, Tensor t, Tensor noise, Conditioning? conditioning = null);
}

/// <summary>The standard denoising objective shared by every family.</summary>
public static class DenoisingObjective
{
    /// <summary>
    /// Draws ε's trajectory part (if the process has one), t ~ U{1..T} and ε ~ q(ε), corrupts x_0 to
    /// x_t = F_t(x_0, ε), and returns the model's loss. Every random draw uses
    /// <paramref name="generator"/> so that training is reproducible.
    /// </summary>
    public static Tensor Loss<TPosterior>(IForwardProcess process, ITrainablePosteriorModel<TPosterior> model, Tensor x0, Generator generator,
        Conditioning? conditioning = null)
        where TPosterior : IPosterior
    {
        process = process.WithTrajectoryNoise(process.SampleTrajectoryNoise(x0.shape[0], x0.device, generator));
        var t = torch.randint(1, process.Levels + 1, x0.shape[0], dtype: ScalarType.Int64, device: x0.device, generator: generator);
        var noise = process.SampleNoise(x0, generator);
        var xt = process.Corrupt(x0, t, noise);
        return model.Loss(x0, xt, t, noise, conditioning);
    }
}
