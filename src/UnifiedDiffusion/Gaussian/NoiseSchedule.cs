using System.Text.Json.Serialization;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Gaussian;

/// <summary>The kind of noise schedule.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ScheduleKind>))]
public enum ScheduleKind
{
    /// <summary>β_t linear in t (DDPM): ᾱ_t² = ∏(1 − β_i).</summary>
    Linear,
    /// <summary>Nichol &amp; Dhariwal's cosine schedule, with s = 0.008 and β clipped at 0.999.</summary>
    Cosine,
    /// <summary>A user-given list of ᾱ_1..ᾱ_T (signal coefficients, strictly decreasing in (0, 1)).</summary>
    Custom,
}

/// <summary>Settings of a Gaussian noise schedule.</summary>
/// <param name="Kind">Linear, cosine or custom.</param>
/// <param name="Levels">T, the number of levels (JSON: <c>steps</c>, diffusers' <c>num_train_timesteps</c>).</param>
/// <param name="BetaStart">β_1 of the linear schedule (diffusers' <c>beta_start</c>).</param>
/// <param name="BetaEnd">β_T of the linear schedule (diffusers' <c>beta_end</c>).</param>
/// <param name="AlphaBar">
/// For <see cref="ScheduleKind.Custom"/>: ᾱ_1..ᾱ_T, the signal coefficients of x_t = ᾱ_t x_0 + β̄_t ε.
/// This is the square root of diffusers' <c>alphas_cumprod</c>: ᾱ_t here = √alphas_cumprod[t − 1]
/// there (diffusers counts timesteps from 0, our levels from 1).
/// </param>
public sealed record ScheduleConfig(
    ScheduleKind Kind = ScheduleKind.Linear,
    [property: JsonPropertyName("steps")] int Levels = 1000,
    double BetaStart = 1e-4,
    double BetaEnd = 0.02,
    double[]? AlphaBar = null);

/// <summary>
/// A Gaussian schedule in the notation of the UDM design: x_t = ᾱ_t x_0 + β̄_t ε with
/// ᾱ_t² + β̄_t² = 1, ᾱ_0 = 1 and β̄_0 = 0. (Papers often write ᾱ for what is ᾱ² here: DDPM's and
/// diffusers' <c>alphas_cumprod</c> is ᾱ_t², and their timestep t − 1 is our level t.)
/// </summary>
public sealed class NoiseSchedule
{
    private readonly double[] _signal;
    private readonly double[] _noise;

    /// <summary>Number of levels T.</summary>
    public int Levels { get; }

    /// <summary>Builds a schedule from explicit signal coefficients ᾱ_0..ᾱ_T (ᾱ_0 must be 1).</summary>
    public NoiseSchedule(double[] signal)
    {
        if (signal.Length < 2 || signal[0] != 1.0) throw new ArgumentException("ᾱ must start at ᾱ_0 = 1 and have at least one level.");
        for (int t = 1; t < signal.Length; t++)
            if (!(signal[t] > 0 && signal[t] < signal[t - 1]))
                throw new UdmException($"the schedule's ᾱ_{t} = {signal[t]} must lie in (0, ᾱ_{t - 1}) = (0, {signal[t - 1]}); give a strictly decreasing list in (0, 1).");
        _signal = signal;
        _noise = signal.Select(a => Math.Sqrt(Math.Max(0, 1 - a * a))).ToArray();
        Levels = signal.Length - 1;
    }

    /// <summary>Creates the schedule that <paramref name="config"/> describes.</summary>
    public static NoiseSchedule Create(ScheduleConfig config)
    {
        int T = config.Levels;
        if (T < 1) throw new UdmException($"the schedule needs at least 1 level, got {T}.") { Subject = "schedule.steps" };
        var signal = new double[T + 1];
        signal[0] = 1;
        switch (config.Kind)
        {
            case ScheduleKind.Linear:
                double alphaBarSq = 1;
                for (int t = 1; t <= T; t++)
                {
                    double beta = T == 1 ? config.BetaStart : config.BetaStart + (config.BetaEnd - config.BetaStart) * (t - 1) / (T - 1);
                    alphaBarSq *= 1 - beta;
                    signal[t] = Math.Sqrt(alphaBarSq);
                }
                break;
            case ScheduleKind.Cosine:
                const double s = 0.008;
                static double F(double u) => Math.Pow(Math.Cos((u + s) / (1 + s) * Math.PI / 2), 2);
                double prev = 1;
                for (int t = 1; t <= T; t++)
                {
                    double beta = Math.Min(1 - F((double)t / T) / F((double)(t - 1) / T), 0.999);
                    prev *= 1 - beta;
                    signal[t] = Math.Sqrt(prev);
                }
                break;
            case ScheduleKind.Custom:
                if (config.AlphaBar is null || config.AlphaBar.Length != T)
                    throw new UdmException($"a custom schedule needs alphaBar with exactly {T} values (ᾱ_1..ᾱ_T), got {config.AlphaBar?.Length ?? 0}.");
                config.AlphaBar.CopyTo(signal, 1);
                break;
            default:
                throw new UdmException($"unknown schedule kind {config.Kind}: use linear, cosine or custom.");
        }
        return new NoiseSchedule(signal);
    }

    /// <summary>ᾱ_t, the signal coefficient.</summary>
    public double Signal(int t) => _signal[t];

    /// <summary>β̄_t = √(1 − ᾱ_t²), the noise coefficient.</summary>
    public double Noise(int t) => _noise[t];

    /// <summary>λ_t = log(ᾱ_t/β̄_t), the half log signal-to-noise ratio of DPM-Solver (+∞ at t = 0).</summary>
    public double LogSnr(int t) => Math.Log(_signal[t] / _noise[t]);

    /// <summary>
    /// DPM-Solver++(2M)'s extrapolation weight w = 1/(2r) of the step t → s after the step from
    /// <paramref name="previous"/> to t: r = h'/h with h = λ_s − λ_t and h' = λ_t − λ_previous.
    /// </summary>
    public double MultistepWeight(int previous, int t, int s) => (LogSnr(s) - LogSnr(t)) / (2 * (LogSnr(t) - LogSnr(previous)));

    /// <summary>β_{t|s} = √(1 − (ᾱ_t/ᾱ_s)²): the noise added going from s up to t.</summary>
    public double TransitionNoise(int t, int s)
    {
        double ratio = _signal[t] / _signal[s];
        return Math.Sqrt(Math.Max(0, 1 - ratio * ratio));
    }

    /// <summary>
    /// The DDPM standard deviation σ = β̄_s·β_{t|s}/β̄_t of q(x_s | x_t, x_0), the true posterior
    /// step for an exact x_0 (0 when s = 0).
    /// </summary>
    public double PosteriorStd(int t, int s) => _noise[s] * TransitionNoise(t, s) / _noise[t];

    /// <summary>DDIM-η's step standard deviation σ = η·β̄_s·β_{t|s}/β̄_t (η = 1: DDPM, η = 0: DDIM).</summary>
    public double DdimStd(int t, int s, double eta) => eta * PosteriorStd(t, s);

    /// <summary>
    /// DDIM-η's σ as the interpolate kernel's noise fraction σ̃ = σ/β̄_s = η·β_{t|s}/β̄_t, written so
    /// that it stays finite at s = 0.
    /// </summary>
    public double DdimNoiseFraction(int t, int s, double eta) => eta * TransitionNoise(t, s) / _noise[t];

    /// <summary>
    /// √(β̄_s² − σ²): the scale of ε̂ in the mean ᾱ_s x̂_0 + √(β̄_s² − σ²)·ε̂ of a step with standard
    /// deviation σ (clamped at 0).
    /// </summary>
    public double MeanNoiseScale(int s, double sigma) => Math.Sqrt(Math.Max(0, _noise[s] * _noise[s] - sigma * sigma));

    /// <summary>All ᾱ_0..ᾱ_T, for moving onto a device.</summary>
    public IReadOnlyList<double> SignalTable => _signal;

    /// <summary>All β̄_0..β̄_T.</summary>
    public IReadOnlyList<double> NoiseTable => _noise;
}
