using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>How Γ_t is estimated from Monte-Carlo pairs (x_0, ε).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<GammaEstimator>))]
public enum GammaEstimator
{
    /// <summary>
    /// The paper's Γ_t = E‖ε̂‖²/d. Unbiased, but in few dimensions its Monte-Carlo error, multiplied
    /// by β̄_t²/ᾱ_t² in σ̄_t², is large at high t: on gmm8 at level 801, 2,000 draws miss 1 − Γ_t = 0.003
    /// by 50–1000% (GammaEstimateTests).
    /// </summary>
    NoiseNorm,

    /// <summary>
    /// Γ_t = 1 − E‖ε − ε̂‖²/d. Equal to <see cref="NoiseNorm"/> in expectation for the optimal ε̂
    /// (ε̂ = E[ε | x_t] is orthogonal to ε − ε̂), so σ̄_t² becomes E‖x_0 − x̂_0‖²/d, the x̂_0 error.
    /// Its variance is far smaller where ε̂ ≈ ε, and it stays a valid variance for an imperfect
    /// model (the imperfect-mean correction of Bao et al., 2022b). The default: on gmm8 at level 801,
    /// 2,000 draws give 1 − Γ_t within 0.5%.
    /// </summary>
    Residual,
}

/// <summary>
/// Γ_t for t = 1..T, the one statistic Analytic-DPM needs, by both estimators of
/// <see cref="GammaEstimator"/>. Estimated once by Monte Carlo over the training data and stored
/// beside the model; levels that were not estimated are NaN.
/// </summary>
public sealed class GammaTable
{
    private readonly double[] _noiseNorm;
    private readonly double[] _residual;
    private readonly double[] _noiseNormError;
    private readonly double[] _residualError;

    /// <summary>A table for levels 0..<paramref name="steps"/>, all unknown.</summary>
    public GammaTable(int steps) : this(Unknown(steps), Unknown(steps), Unknown(steps), Unknown(steps), double.NaN) { }

    private GammaTable(double[] noiseNorm, double[] residual, double[] noiseNormError, double[] residualError, double dataVariance)
    {
        _noiseNorm = noiseNorm;
        _residual = residual;
        _noiseNormError = noiseNormError;
        _residualError = residualError;
        DataVariance = dataVariance;
    }

    private static double[] Unknown(int steps) => Enumerable.Repeat(double.NaN, steps + 1).ToArray();

    /// <summary>
    /// The mean per-dimension variance of x_0, measured on the same data. By the law of total
    /// variance E[tr Cov(x_0 | x_t)]/d cannot exceed it, so it bounds σ̄_t² where Γ_t's Monte-Carlo
    /// error is amplified by β̄_t²/ᾱ_t² (large t). NaN until estimated.
    /// </summary>
    public double DataVariance { get; private set; }

    /// <summary>Number of levels T.</summary>
    public int Steps => _noiseNorm.Length - 1;

    /// <summary>
    /// Γ_t by the paper's estimator; throws if level t was not estimated. Setting it sets a known
    /// Γ_t for both estimators.
    /// </summary>
    public double this[int t]
    {
        get => Get(t, GammaEstimator.NoiseNorm);
        set
        {
            _noiseNorm[t] = _residual[t] = value;
            _noiseNormError[t] = _residualError[t] = 0;
        }
    }

    /// <summary>Γ_t by the chosen estimator; throws if level t was not estimated.</summary>
    public double Get(int t, GammaEstimator estimator)
    {
        double v = (estimator == GammaEstimator.Residual ? _residual : _noiseNorm)[t];
        if (double.IsNaN(v)) throw new UdmException($"Γ_{t} has not been estimated; run `udm sample` with the training data available, or re-estimate with GammaTable.Estimate.");
        return v;
    }

    /// <summary>
    /// The Monte-Carlo standard error of Γ_t by the chosen estimator: the spread of the per-draw
    /// values over √n. NaN where level t was not estimated, 0 where it was set exactly.
    /// </summary>
    public double StandardError(int t, GammaEstimator estimator) => (estimator == GammaEstimator.Residual ? _residualError : _noiseNormError)[t];

    /// <summary>
    /// The standard error of Γ_t relative to 1 − Γ_t, the quantity σ̄_t² scales: how far Analytic-DPM's
    /// posterior variance at level t can be off. Above about 0.5 the variance may be clipped to 0.
    /// </summary>
    public double RelativeError(int t, GammaEstimator estimator) => StandardError(t, estimator) / Math.Abs(1 - Get(t, estimator));

    /// <summary>True when every nonzero level of <paramref name="levels"/> has an estimate.</summary>
    public bool Covers(IEnumerable<int> levels) => levels.Where(t => t > 0).All(t => !double.IsNaN(_noiseNorm[t]));

    /// <summary>
    /// Estimates Γ_t at the given levels from <paramref name="samplesPerLevel"/> fresh pairs (x_0, ε)
    /// per level, x_t = F_t(x_0, ε) (ᾱ_t x_0 + β̄_t ε, or ᾱ_t Enc(x_0) + β̄_t ε for an encoding model), by
    /// both estimators in one pass; also the variance of the clean state F_0(x_0).
    /// Each level draws from its own generator seeded by (<paramref name="seed"/>, t), so an estimate
    /// does not depend on which levels were estimated before or in what order.
    /// </summary>
    public void Estimate(IPosteriorModel<GaussianPosterior> model, IForwardProcess process, IDataSource data,
        IEnumerable<int> levels, int samplesPerLevel, ulong seed, Device? device = null, int batchSize = 4096,
        Action<int>? onLevel = null)
    {
        using var noGrad = torch.no_grad();
        if (double.IsNaN(DataVariance))
        {
            using var scope = torch.NewDisposeScope();
            var generator = new Generator(seed, device ?? torch.CPU);
            var x0 = data.Sample(Math.Max(samplesPerLevel, 1000), generator, device);
            // The variance of the clean state F_0(x_0): x_0 itself, or the latent of an encoding model.
            var clean = process.CorruptAt(x0, 0, process.SampleNoise(x0, generator).zero_());
            DataVariance = clean.flatten(1).var([0]).mean().item<float>();
        }
        foreach (int t in levels.Where(t => t > 0).Distinct())
        {
            double norm = 0, normSquares = 0, residual = 0, residualSquares = 0;
            int done = 0;
            var generator = new Generator(unchecked(seed * 1_000_003UL + (ulong)t), device ?? torch.CPU);
            while (done < samplesPerLevel)
            {
                using var scope = torch.NewDisposeScope();
                int n = Math.Min(batchSize, samplesPerLevel - done);
                var x0 = data.Sample(n, generator, device);
                var tt = ForwardProcessExtensions.LevelTensor(t, n, x0.device);
                var noise = process.SampleNoise(x0, generator);
                var eps = model.Predict(process.Corrupt(x0, tt, noise), tt).RawNoise;
                // Per-draw values in float64, so that the sums of squares behind the standard errors keep their digits.
                var normPerDraw = eps.pow(2).flatten(1).mean([1]).to(ScalarType.Float64);
                var residualPerDraw = (noise - eps).pow(2).flatten(1).mean([1]).to(ScalarType.Float64);
                norm += normPerDraw.sum().item<double>();
                normSquares += normPerDraw.square().sum().item<double>();
                residual += residualPerDraw.sum().item<double>();
                residualSquares += residualPerDraw.square().sum().item<double>();
                done += n;
            }
            _noiseNorm[t] = norm / samplesPerLevel;
            _residual[t] = 1 - residual / samplesPerLevel;
            _noiseNormError[t] = StandardErrorOfMean(norm, normSquares, samplesPerLevel);
            _residualError[t] = StandardErrorOfMean(residual, residualSquares, samplesPerLevel);
            onLevel?.Invoke(t);
        }
    }

    /// <summary>The standard error √(s²/n) of a mean from the sum and the sum of squares of n draws (s² with n − 1).</summary>
    private static double StandardErrorOfMean(double sum, double sumOfSquares, int n)
    {
        if (n < 2) return double.PositiveInfinity;
        double mean = sum / n;
        return Math.Sqrt(Math.Max(0, (sumOfSquares - n * mean * mean) / (n - 1)) / n);
    }

    /// <summary>
    /// Estimates only the levels of <paramref name="levels"/> that have no estimate yet; returns true
    /// if anything was estimated.
    /// </summary>
    public bool EstimateMissing(IPosteriorModel<GaussianPosterior> model, IForwardProcess process, IDataSource data,
        IEnumerable<int> levels, int samplesPerLevel, ulong seed, Device? device = null)
    {
        var missing = levels.Where(t => t > 0 && !Covers([t])).Distinct().ToArray();
        if (missing.Length == 0) return false;
        Estimate(model, process, data, missing, samplesPerLevel, seed, device);
        return true;
    }

    /// <summary>Writes the table as JSON (null for unknown levels).</summary>
    public void Save(string path, long checkpointStep)
    {
        static double?[] Nullable(double[] v) => v.Select(x => double.IsNaN(x) ? (double?)null : x).ToArray();
        var doc = new GammaFile(checkpointStep, Nullable(_noiseNorm), Nullable(_residual), Nullable(_noiseNormError), Nullable(_residualError),
            double.IsNaN(DataVariance) ? null : DataVariance);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(doc));
    }

    /// <summary>Reads a table written by <see cref="Save"/>; null if it is missing, unreadable or made for another checkpoint step.</summary>
    public static GammaTable? Load(string path, int steps, long checkpointStep)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var doc = JsonSerializer.Deserialize<GammaFile>(File.ReadAllText(path));
            // A table without standard errors (written before they were kept) is estimated again.
            double?[]?[] columns = [doc?.NoiseNorm, doc?.Residual, doc?.NoiseNormError, doc?.ResidualError];
            if (doc is null || doc.CheckpointStep != checkpointStep || columns.Any(c => c is null || c.Length != steps + 1)) return null;
            static double[] Values(double?[] v) => v.Select(x => x ?? double.NaN).ToArray();
            return new GammaTable(Values(doc.NoiseNorm!), Values(doc.Residual!), Values(doc.NoiseNormError!), Values(doc.ResidualError!),
                doc.DataVariance ?? double.NaN);
        }
        catch (Exception e) when (e is JsonException or IOException) { return null; }
    }

    private sealed record GammaFile(long CheckpointStep, double?[]? NoiseNorm, double?[]? Residual, double?[]? NoiseNormError,
        double?[]? ResidualError, double? DataVariance);
}
