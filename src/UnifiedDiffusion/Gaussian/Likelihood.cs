using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>The variance of the model's reverse step p(x_s | x_t) in the ELBO.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ElboVariance>))]
public enum ElboVariance
{
    /// <summary>DDPM "small": σ² = β̄_s²β_{t|s}²/β̄_t², the variance of q(x_s | x_t, x_0).</summary>
    DdpmSmall,
    /// <summary>DDPM "large": β_{t|s}² = 1 − (ᾱ_t/ᾱ_s)², the variance of the forward step s → t.</summary>
    DdpmLarge,
    /// <summary>Analytic-DPM: the total variance that <see cref="AnalyticKernel.StepVariance"/> gives.</summary>
    Analytic,
}

/// <summary>The decoder p(x_0 | x_{t_1}) at the last step of the grid.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ElboDecoder>))]
public enum ElboDecoder
{
    /// <summary>A Gaussian density N(x_0; x̂_0, v I): for continuous data (its NLL can be negative).</summary>
    Continuous,
    /// <summary>
    /// A Gaussian discretized into 256 bins on [−1, 1] (bin width 2/255, the two edge bins open to
    /// ±∞, each bin probability clamped below at 1e-12), as in DDPM and Analytic-DPM: for 8-bit
    /// images scaled to [−1, 1].
    /// </summary>
    Discretized,
}

/// <summary>Settings of <see cref="Likelihood.NegativeElbo"/>.</summary>
/// <param name="Variance">The reverse variance: DDPM small or large, or Analytic-DPM.</param>
/// <param name="Decoder">Continuous density or 256-bin discretized Gaussian at the last step.</param>
/// <param name="Analytic">
/// Required for <see cref="ElboVariance.Analytic"/>: the kernel whose <see cref="AnalyticKernel.StepVariance"/>
/// gives the step variance and the scale of ε̂ in the mean. The likelihood of Analytic-DPM uses
/// η = 1 (<see cref="AnalyticOptions.Eta"/>), so that the model's mean has the form of the mean of q(x_s | x_t, x_0).
/// </param>
public sealed record ElboOptions(
    ElboVariance Variance = ElboVariance.DdpmSmall,
    ElboDecoder Decoder = ElboDecoder.Discretized,
    AnalyticKernel? Analytic = null);

/// <summary>The mean contribution of one grid step to the negative ELBO.</summary>
/// <param name="T">The level the step starts from (for the prior term: the top level).</param>
/// <param name="S">The level the step lands on (for the prior term: −1).</param>
/// <param name="MeanNats">The term averaged over the batch, in nats per sample.</param>
/// <param name="Variance">The model's variance used for the term (for the prior: 1).</param>
public readonly record struct ElboStepTerm(int T, int S, double MeanNats, double Variance);

/// <summary>
/// The negative ELBO of a batch, per sample, in nats (float64, shape [B]), and its three parts:
/// prior + Σ transitions + decoder = total.
/// </summary>
public sealed class ElboTerms : IDisposable
{
    internal ElboTerms(Tensor total, Tensor prior, Tensor transitions, Tensor decoder, IReadOnlyList<ElboStepTerm> steps, long dimension)
    {
        Total = total;
        Prior = prior;
        Transitions = transitions;
        Decoder = decoder;
        Steps = steps;
        Dimension = dimension;
    }

    /// <summary>−ELBO per sample, in nats: an upper bound on −log p_θ(x_0).</summary>
    public Tensor Total { get; }

    /// <summary>KL(q(x_{t_K} | x_0) ‖ N(0, I)) per sample.</summary>
    public Tensor Prior { get; }

    /// <summary>Σ over steps t → s with s &gt; 0 of KL(q(x_s | x_t, x_0) ‖ p(x_s | x_t)) per sample.</summary>
    public Tensor Transitions { get; }

    /// <summary>−log p(x_0 | x_{t_1}) per sample.</summary>
    public Tensor Decoder { get; }

    /// <summary>Batch means of every term, from the prior down to the decoder.</summary>
    public IReadOnlyList<ElboStepTerm> Steps { get; }

    /// <summary>Number of dimensions d of one sample.</summary>
    public long Dimension { get; }

    /// <summary>The batch mean of <see cref="Total"/> in bits per dimension.</summary>
    public double BitsPerDim => Likelihood.BitsPerDim(Total.mean().item<double>(), Dimension);

    /// <inheritdoc />
    public void Dispose()
    {
        Total.Dispose();
        Prior.Dispose();
        Transitions.Dispose();
        Decoder.Dispose();
    }
}

/// <summary>
/// The variational bound on the negative log-likelihood of a Gaussian diffusion model along a
/// sampling grid, the quantity of DDPM's and Analytic-DPM's likelihood tables:
/// <code>
/// −log p(x_0) ≤ KL(q(x_{t_K}|x_0) ‖ N(0, I))
///             + Σ_{t→s, s&gt;0} KL(q(x_s|x_t, x_0) ‖ p(x_s|x_t))
///             − log p(x_0 | x_{t_1})
/// </code>
/// Each term is estimated with one draw x_t ~ q(x_t | x_0) per step.
/// </summary>
public static class Likelihood
{
    /// <summary>Half the width of one of the 256 bins on [−1, 1].</summary>
    public const double HalfBin = 1.0 / 255.0;

    /// <summary>The lower clamp of a bin probability in the discretized decoder.</summary>
    public const double MinBinProbability = 1e-12;

    /// <summary>
    /// Estimates −ELBO for each sample of <paramref name="x0"/> (shape [B, …]) along the descending
    /// <paramref name="grid"/> (t_K &gt; … &gt; t_1 &gt; 0, as <see cref="TimeGrid.Create"/> makes it).
    /// <list type="bullet">
    /// <item>Prior: KL(N(ᾱ_{t_K} x_0, β̄_{t_K}² I) ‖ N(0, I)) at the grid's top level.</item>
    /// <item>Each step t → s with s &gt; 0: x_t ~ q(x_t | x_0) is drawn once with <paramref name="generator"/>;
    /// q(x_s | x_t, x_0) = N(ᾱ_s x_0 + √(β̄_s² − σ²)(x_t − ᾱ_t x_0)/β̄_t, σ² I) with σ = β̄_s β_{t|s}/β̄_t;
    /// the model is N(ᾱ_s x̂_0 + m (x_t − ᾱ_t x̂_0)/β̄_t, v I) with x̂_0 the posterior model's mean,
    /// m = √(β̄_s² − σ²) for DDPM and the kernel's own scale for Analytic-DPM, and v from
    /// <see cref="ElboOptions.Variance"/>. The term is the closed-form Gaussian KL.</item>
    /// <item>Decoder t_1 → 0: −log N(x_0; x̂_0, v I) (continuous) or its 256-bin discretization, with
    /// v = β̄_{t_1}² for DDPM large, the clamped σ̄_{t_1}² of the kernel for Analytic-DPM, and for DDPM
    /// small (whose σ² is 0 at s = 0) the small variance between levels 1 and 2,
    /// β̄_1²β_{2|1}²/β̄_2², whatever t_1 is, as the official Analytic-DPM and DDPM code does.</item>
    /// </list>
    /// Arithmetic is in float64; the model sees x_t in the dtype of <paramref name="x0"/>, and the
    /// terms use that same rounded x_t.
    /// </summary>
    /// <exception cref="UdmException">The grid is invalid, the analytic kernel is missing, or a model variance is not positive.</exception>
    public static ElboTerms NegativeElbo(GaussianProcess process, IPosteriorModel<GaussianPosterior> model, Tensor x0,
        IReadOnlyList<int> grid, ElboOptions options, Generator generator)
    {
        var schedule = process.Schedule;
        int[] levels = TimeGrid.Explicit(process.Levels, grid);
        if (options.Variance == ElboVariance.Analytic && options.Analytic is null)
            throw new UdmException("the analytic ELBO needs an AnalyticKernel (with a Γ table covering the grid) in ElboOptions.Analytic.");
        if (options.Variance == ElboVariance.DdpmSmall && schedule.Levels < 2)
            throw new UdmException("the DDPM-small decoder variance uses levels 1 and 2; the schedule needs T ≥ 2.");

        long batch = x0.shape[0];
        long dimension = x0.numel() / Math.Max(1, batch);
        var steps = new List<ElboStepTerm>(levels.Length);
        using var outer = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var data = x0.to(ScalarType.Float64).flatten(1);

        // Prior: KL(N(a x_0, b²) ‖ N(0, 1)) = ½(a²x_0² + b² − 1 − log b²) per dimension.
        int top = levels[0];
        double aTop = schedule.Signal(top), bTop = schedule.Noise(top);
        var prior = (data.pow(2).sum(1) * (aTop * aTop)).add_(dimension * (bTop * bTop - 1 - Math.Log(bTop * bTop))).mul_(0.5);
        steps.Add(new ElboStepTerm(top, -1, prior.mean().item<double>(), 1.0));

        var transitions = torch.zeros(batch, dtype: ScalarType.Float64, device: x0.device);
        Tensor? decoder = null;
        for (int i = 0; i + 1 < levels.Length; i++)
        {
            using var scope = torch.NewDisposeScope();
            var step = new ReverseStep(levels[i], levels[i + 1], i, levels);
            int t = step.T, s = step.S;
            double aT = schedule.Signal(t), bT = schedule.Noise(t), aS = schedule.Signal(s);

            // x_t ~ q(x_t | x_0), rounded once to the model's dtype; the terms use the rounded value.
            var noise = process.SampleNoise(x0, generator).to(ScalarType.Float64).flatten(1);
            var xtModel = (data * aT + noise * bT).to(x0.dtype).view(x0.shape);
            var xt = xtModel.to(ScalarType.Float64).flatten(1);
            var x0Hat = model.Predict(xtModel, ForwardProcessExtensions.LevelTensor(t, batch, x0.device)).Mean.to(ScalarType.Float64).flatten(1);

            Tensor term;
            double variance;
            if (step.IsFinal)
            {
                variance = options.Variance switch
                {
                    ElboVariance.DdpmSmall => Square(schedule.PosteriorStd(2, 1)),
                    ElboVariance.DdpmLarge => bT * bT,
                    _ => options.Analytic!.StepVariance(step).Variance,
                };
                RequirePositive(variance, step);
                term = options.Decoder == ElboDecoder.Continuous
                    ? GaussianNll(data, x0Hat, variance)
                    : DiscretizedGaussianNll(data, x0Hat, variance);
                decoder = term.MoveToOuterDisposeScope();
            }
            else
            {
                double sigma = schedule.PosteriorStd(t, s);
                double qVariance = sigma * sigma;
                double qScale = schedule.MeanNoiseScale(s, sigma);
                double pScale;
                switch (options.Variance)
                {
                    case ElboVariance.DdpmSmall:
                        variance = qVariance;
                        pScale = qScale;
                        break;
                    case ElboVariance.DdpmLarge:
                        variance = Square(schedule.TransitionNoise(t, s));
                        pScale = qScale;
                        break;
                    default:
                        (variance, pScale) = options.Analytic!.StepVariance(step);
                        break;
                }
                RequirePositive(variance, step);
                // μ_q − μ_p = ᾱ_s(x_0 − x̂_0) + [m_q(x_t − ᾱ_t x_0) − m_p(x_t − ᾱ_t x̂_0)]/β̄_t.
                var meanGap = (data - x0Hat).mul_(aS)
                    .add_(((xt - data * aT) * qScale - (xt - x0Hat * aT) * pScale) / bT);
                double constant = 0.5 * dimension * (Math.Log(variance / qVariance) + qVariance / variance - 1);
                term = meanGap.pow(2).sum(1).div_(2 * variance).add_(constant);
                transitions.add_(term);
            }
            steps.Add(new ElboStepTerm(t, s, term.mean().item<double>(), variance));
        }

        var total = prior + transitions + decoder!;
        return new ElboTerms(total.MoveToOuterDisposeScope(), prior.MoveToOuterDisposeScope(),
            transitions.MoveToOuterDisposeScope(), decoder!.MoveToOuterDisposeScope(), steps, dimension);
    }

    /// <summary>Converts nats per sample to bits per dimension: nats / (d·ln 2).</summary>
    public static double BitsPerDim(double nats, long dimension) => nats / (dimension * Math.Log(2));

    /// <summary>The batch mean of per-sample nats (shape [B]) in bits per dimension.</summary>
    public static double BitsPerDim(Tensor nats, long dimension) => BitsPerDim(nats.to(ScalarType.Float64).mean().item<double>(), dimension);

    /// <summary>−log N(x; μ, v I) summed over dimensions: ½ d log(2πv) + ‖x − μ‖²/(2v). Inputs are [B, d].</summary>
    public static Tensor GaussianNll(Tensor x, Tensor mean, double variance) =>
        (x - mean).pow(2).sum(1).div_(2 * variance).add_(0.5 * x.shape[1] * Math.Log(2 * Math.PI * variance));

    /// <summary>
    /// −log P(x) summed over dimensions, for x on the 256-level grid of [−1, 1] and a Gaussian
    /// N(μ, v) discretized into bins of width 2/255 centred on the levels. The bin of x &lt; −0.999
    /// extends to −∞ and that of x &gt; 0.999 to +∞. Each probability is clamped below at 1e-12.
    /// Inputs are [B, d].
    /// </summary>
    public static Tensor DiscretizedGaussianNll(Tensor x, Tensor mean, double variance)
    {
        using var scope = torch.NewDisposeScope();
        var centred = (x - mean).to(ScalarType.Float64);
        double inverseStd = 1 / Math.Sqrt(variance);
        var upper = (centred + HalfBin) * inverseStd;
        var lower = (centred - HalfBin) * inverseStd;
        var cdfUpper = torch.special.ndtr(upper);
        var survivalLower = torch.special.ndtr(-lower); // 1 − Φ(lower), without cancellation
        var logLeftEdge = cdfUpper.clamp_min(MinBinProbability).log();
        var logRightEdge = survivalLower.clamp_min(MinBinProbability).log();
        var logInner = (cdfUpper - torch.special.ndtr(lower)).clamp_min(MinBinProbability).log();
        var xd = x.to(ScalarType.Float64);
        var logProbability = torch.where(xd < -0.999, logLeftEdge, torch.where(xd > 0.999, logRightEdge, logInner));
        return (-logProbability.sum(1)).MoveToOuterDisposeScope();
    }

    private static double Square(double v) => v * v;

    private static void RequirePositive(double variance, ReverseStep step)
    {
        if (!(variance > 0))
            throw new UdmException($"the model's reverse variance at t={step.T}→s={step.S} is {variance}; the ELBO needs a positive variance (for Analytic-DPM use η = 1, or re-estimate Γ).");
    }
}
