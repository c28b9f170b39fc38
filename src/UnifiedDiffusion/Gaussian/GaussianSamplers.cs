using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// The Gaussian kernels, all as the core's interpolate kernel x_s = ᾱ_s x̂_0 + √(β̄_s² − σ²)·ε̂ + σ·ε,
/// i.e. σ̃ = σ/β̄_s: DDPM has σ = β̄_s β_{t|s}/β̄_t, DDIM σ = 0, DDIM-η σ = η·(the DDPM value).
/// </summary>
public static class GaussianKernels
{
    /// <summary>DDIM-η: η = 1 is DDPM, η = 0 is DDIM.</summary>
    public static InterpolateKernel DdimEta(NoiseSchedule schedule, double eta)
    {
        if (eta < 0 || eta > 1 || double.IsNaN(eta)) throw new UdmException($"η = {eta} is out of range: use a value in [0, 1].") { Subject = "eta" };
        return new InterpolateKernel((t, s) => schedule.DdimNoiseFraction(t, s, eta));
    }

    /// <summary>DDPM (ancestral sampling with the posterior variance).</summary>
    public static InterpolateKernel Ddpm(NoiseSchedule schedule) => DdimEta(schedule, 1.0);

    /// <summary>DDIM, deterministic.</summary>
    public static InvertKernel Ddim() => new();

    /// <summary>
    /// DPM-Solver++(2M): the invert kernel (DDIM) on D = (1 + 1/(2r))·x̂_0 − 1/(2r)·x̂_0', with
    /// h = λ_s − λ_t, r = h'/h (<see cref="NoiseSchedule.MultistepWeight"/>). In the paper's form,
    /// x_s = (β̄_s/β̄_t)·x_t − ᾱ_s(e^{−h} − 1)·D.
    /// </summary>
    public static MultistepKernel DpmSolver2M(NoiseSchedule schedule) => new(new InvertKernel(), schedule.MultistepWeight);

    /// <summary>
    /// DPM-Solver++(2M) SDE (midpoint form): the interpolate kernel with σ̃ = √(1 − e^{−2h}) on the
    /// same D, i.e. x_s = (β̄_s/β̄_t)e^{−h}·x_t + ᾱ_s(1 − e^{−2h})·D + β̄_s√(1 − e^{−2h})·z.
    /// </summary>
    public static MultistepKernel DpmSolver2MSde(NoiseSchedule schedule) =>
        new(new InterpolateKernel((t, s) => Math.Sqrt(-double.ExpM1(-2 * (schedule.LogSnr(s) - schedule.LogSnr(t))))), schedule.MultistepWeight);
}

/// <summary>Settings of the Analytic-DPM kernel.</summary>
/// <param name="Eta">0 for Analytic-DDIM, 1 for Analytic-DDPM, or in between.</param>
/// <param name="ClipPixels">
/// The paper's clipping of the first step: the variance of the step that lands on the lowest
/// nonzero level is capped so that E|σ·z| ≤ ClipPixels pixel bins, i.e.
/// σ² ≤ (ClipPixels·DataRange/255·√(π/2))². Null: no clipping (continuous, non-pixel data).
/// The official code uses 2 for Analytic-DDPM and 1 for Analytic-DDIM on images.
/// </param>
/// <param name="DataRange">b − a for data in [a, b]: bounds the posterior variance by (b − a)²/4
/// (the paper's Theorem 2) and sets the pixel bin width. Null: no such bound, and bins of 2/255.</param>
/// <param name="Estimator">Which Γ_t estimate to use (see <see cref="GammaEstimator"/>); residual by default,
/// whose error relative to 1 − Γ_t stays small where the paper's noise-norm estimate's does not.</param>
public sealed record AnalyticOptions(double Eta = 0, double? ClipPixels = null, double? DataRange = null,
    GammaEstimator Estimator = GammaEstimator.Residual);

/// <summary>
/// Analytic-DPM (Bao et al., 2022). It keeps the DDIM-η mean but does not treat x̂_0 as a point:
/// x̂_0 ~ N(μ̄, σ̄_t² I) with σ̄_t² = (β̄_t²/ᾱ_t²)(1 − Γ_t), Γ_t = E‖ε̂(x_t, t)‖²/d estimated by
/// Monte Carlo (by default as 1 − E‖ε − ε̂‖²/d, <see cref="GammaEstimator.Residual"/>). The step's total variance is σ² + (ᾱ_s − √(β̄_s² − σ²)·ᾱ_t/β̄_t)²·σ̄_t². As in the
/// official code, the final step to 0 returns the mean.
/// </summary>
public sealed class AnalyticKernel : IReverseKernel<GaussianPosterior>
{
    private readonly NoiseSchedule schedule;
    private readonly GammaTable gamma;
    private readonly AnalyticOptions options;

    /// <summary>The kernel for a schedule, a Γ table covering the grid, and its options.</summary>
    public AnalyticKernel(NoiseSchedule schedule, GammaTable gamma, AnalyticOptions options)
    {
        if (!(options.Eta >= 0 && options.Eta <= 1)) throw new UdmException($"η = {options.Eta} is out of range: use a value in [0, 1].") { Subject = "eta" };
        if (options.ClipPixels is double p && !(p > 0)) throw new UdmException($"the analytic clip must be positive pixel bins (or off), got {p}.") { Subject = "analyticClip" };
        this.schedule = schedule;
        this.gamma = gamma;
        this.options = options;
    }

    /// <inheritdoc />
    public Tensor Step(IForwardProcess process, Tensor xt, ReverseStep step, GaussianPosterior posterior, SamplingContext context)
    {
        var x0 = posterior.Mean;
        if (step.IsFinal) return x0;
        var (variance, meanNoiseScale) = StepVariance(step);
        // ᾱ_s x̂_0 + √(β̄_s² − σ²)·ε̂, written as F_s(x̂_0, ε̂·scale/β̄_s) so that a process whose x_t lives
        // elsewhere than x_0 (the encoding model's latent) gets the same step in its own space.
        var mean = process.CorruptAt(x0, step.S, process.InferNoiseAt(x0, xt, step.T).mul_(meanNoiseScale / schedule.Noise(step.S)));
        return variance > 0 ? mean.add_(torch.randn(mean.shape, dtype: mean.dtype, device: mean.device, generator: context.Generator).mul_(Math.Sqrt(variance))) : mean;
    }

    /// <summary>The total variance of step t → s and the scale √(β̄_s² − σ²) of ε̂ in its mean.</summary>
    public (double Variance, double MeanNoiseScale) StepVariance(ReverseStep step)
    {
        int t = step.T, s = step.S;
        double lambda = schedule.DdimStd(t, s, options.Eta);
        double meanNoiseScale = schedule.MeanNoiseScale(s, lambda);
        double coefficient = schedule.Signal(s) - meanNoiseScale * schedule.Signal(t) / schedule.Noise(t);
        double variance = lambda * lambda + coefficient * coefficient * PosteriorVariance(t);
        if (options.ClipPixels is double pixels && step.LandsOnLowestLevel)
        {
            double binWidth = (options.DataRange ?? 2.0) / 255.0;
            double threshold = Math.Pow(pixels * binWidth * Math.Sqrt(Math.PI / 2), 2);
            variance = Math.Min(variance, threshold);
        }
        return (variance, meanNoiseScale);
    }

    /// <summary>
    /// σ̄_t² = (β̄_t²/ᾱ_t²)(1 − Γ_t), clamped to [0, upper]: upper is (b − a)²/4 for data in [a, b]
    /// (the paper's Theorem 2) and the data's own variance (law of total variance), whichever is
    /// known and smaller.
    /// </summary>
    public double PosteriorVariance(int t)
    {
        double ratio = schedule.Noise(t) / schedule.Signal(t);
        double v = ratio * ratio * (1 - gamma.Get(t, options.Estimator));
        double upper = options.DataRange is double range ? range * range / 4 : double.PositiveInfinity;
        if (!double.IsNaN(gamma.DataVariance)) upper = Math.Min(upper, gamma.DataVariance);
        return Math.Clamp(v, 0, upper);
    }
}
