using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// Γ_t = E‖ε̂(x_t, t)‖²/d for t = 1..T, the one statistic Analytic-DPM needs. Estimated once by
/// Monte Carlo over the training data and stored beside the model; levels that were not
/// estimated are NaN.
/// </summary>
public sealed class GammaTable
{
    private readonly double[] _values;

    /// <summary>A table for levels 0..<paramref name="steps"/>, all unknown.</summary>
    public GammaTable(int steps) : this(Enumerable.Repeat(double.NaN, steps + 1).ToArray()) { }

    private GammaTable(double[] values) => _values = values;

    /// <summary>Number of levels T.</summary>
    public int Steps => _values.Length - 1;

    /// <summary>Γ_t; throws if level t was not estimated.</summary>
    public double this[int t]
    {
        get
        {
            double v = _values[t];
            if (double.IsNaN(v)) throw new UdmException($"Γ_{t} has not been estimated; run `udm sample` with the training data available, or re-estimate with GammaTable.Estimate.");
            return v;
        }
        set => _values[t] = value;
    }

    /// <summary>True when every nonzero level of <paramref name="levels"/> has an estimate.</summary>
    public bool Covers(IEnumerable<int> levels) => levels.Where(t => t > 0).All(t => !double.IsNaN(_values[t]));

    /// <summary>
    /// Estimates Γ_t at the given levels: <paramref name="samplesPerLevel"/> fresh pairs (x_0, ε) per
    /// level, x_t = ᾱ_t x_0 + β̄_t ε, and the mean square of the model's ε̂ over dimensions.
    /// </summary>
    public void Estimate(IPosteriorModel<GaussianPosterior> model, GaussianProcess process, IDataSource data,
        IEnumerable<int> levels, int samplesPerLevel, Generator generator, Device? device = null, int batchSize = 4096,
        Action<int>? onLevel = null)
    {
        using var noGrad = torch.no_grad();
        foreach (int t in levels.Where(t => t > 0).Distinct())
        {
            double sum = 0;
            int done = 0;
            while (done < samplesPerLevel)
            {
                using var scope = torch.NewDisposeScope();
                int n = Math.Min(batchSize, samplesPerLevel - done);
                var x0 = data.Sample(n, generator, device);
                var tt = ForwardProcessExtensions.Levels(t, n, x0.device);
                var xt = process.Corrupt(x0, tt, process.SampleNoise(x0, generator));
                var eps = model.Predict(xt, tt).RawNoise;
                sum += eps.pow(2).flatten(1).mean([1]).sum().item<float>();
                done += n;
            }
            _values[t] = sum / samplesPerLevel;
            onLevel?.Invoke(t);
        }
    }

    /// <summary>Writes the table as JSON (null for unknown levels).</summary>
    public void Save(string path, long checkpointStep)
    {
        var doc = new GammaFile(checkpointStep, _values.Select(v => double.IsNaN(v) ? (double?)null : v).ToArray());
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(doc));
    }

    /// <summary>Reads a table written by <see cref="Save"/>; null if it is missing or was made for another checkpoint step.</summary>
    public static GammaTable? Load(string path, int steps, long checkpointStep)
    {
        if (!File.Exists(path)) return null;
        try
        {
            var doc = JsonSerializer.Deserialize<GammaFile>(File.ReadAllText(path));
            if (doc is null || doc.CheckpointStep != checkpointStep || doc.Gamma.Length != steps + 1) return null;
            return new GammaTable(doc.Gamma.Select(v => v ?? double.NaN).ToArray());
        }
        catch (JsonException) { return null; }
    }

    private sealed record GammaFile(long CheckpointStep, double?[] Gamma);
}
