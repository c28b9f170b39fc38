using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Data;

/// <summary>
/// An isotropic Gaussian mixture Σ_k π_k N(μ_k, s² I). Besides sampling and density, it gives the
/// exact posterior of x_0 given x_t = a·x_0 + b·ε: the oracle that sampler tests rely on.
/// </summary>
public sealed class GaussianMixture : IDataSource
{
    private readonly Tensor _means;   // [K, d], float64
    private readonly Tensor _logWeights; // [K], float64

    /// <summary>Creates a mixture from component means, a shared std and optional weights.</summary>
    public GaussianMixture(string name, double[,] means, double std, double[]? weights = null)
    {
        int k = means.GetLength(0), d = means.GetLength(1);
        Name = name;
        Std = std;
        Components = k;
        Dimension = d;
        var w = weights ?? Enumerable.Repeat(1.0 / k, k).ToArray();
        double total = w.Sum();
        _means = torch.tensor(means, dtype: ScalarType.Float64).DetachFromDisposeScope();
        _logWeights = torch.tensor(w.Select(v => Math.Log(v / total)).ToArray(), dtype: ScalarType.Float64).DetachFromDisposeScope();
    }

    /// <summary>8 Gaussians of std 0.1 evenly spaced on a circle of radius 2.</summary>
    public static GaussianMixture Ring8()
    {
        var m = new double[8, 2];
        for (int i = 0; i < 8; i++) { m[i, 0] = 2 * Math.Cos(2 * Math.PI * i / 8); m[i, 1] = 2 * Math.Sin(2 * Math.PI * i / 8); }
        return new GaussianMixture("gmm8", m, 0.1);
    }

    /// <summary>A 5×5 grid of Gaussians of std 0.1 at coordinates −2..2.</summary>
    public static GaussianMixture Grid25()
    {
        var m = new double[25, 2];
        for (int i = 0; i < 25; i++) { m[i, 0] = i / 5 - 2; m[i, 1] = i % 5 - 2; }
        return new GaussianMixture("gmm25", m, 0.1);
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <summary>The shared component standard deviation s.</summary>
    public double Std { get; }

    /// <summary>Number of components K.</summary>
    public int Components { get; }

    /// <summary>Data dimension d.</summary>
    public int Dimension { get; }

    /// <inheritdoc />
    public long[] SampleShape => [Dimension];

    /// <inheritdoc />
    public Tensor Sample(int count, Generator generator, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var component = torch.multinomial(_logWeights.exp(), count, replacement: true, generator: generator);
        var x = _means.index_select(0, component) + torch.randn([count, Dimension], dtype: ScalarType.Float64, generator: generator) * Std;
        return x.to(ScalarType.Float32, device ?? torch.CPU).MoveToOuterDisposeScope();
    }

    /// <summary>log p(x) under the mixture, per sample.</summary>
    public Tensor LogDensity(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var xd = x.to(ScalarType.Float64, torch.CPU);
        var sq = (xd.unsqueeze(1) - _means.unsqueeze(0)).pow(2).sum(2); // [B, K]
        double logNorm = -0.5 * Dimension * Math.Log(2 * Math.PI * Std * Std);
        var logp = _logWeights.unsqueeze(0) + logNorm - sq / (2 * Std * Std);
        return torch.logsumexp(logp, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The exact posterior of x_0 given x_t = a·x_0 + b·ε: its mean E[x_0 | x_t] ([B, d]) and
    /// tr Cov[x_0 | x_t]/d ([B]). Component k gives x_t ~ N(a μ_k, (a²s² + b²) I), and
    /// x_0 | x_t, k ~ N(μ_k + (a s²/(a²s²+b²))(x_t − a μ_k), (s² b²/(a²s²+b²)) I).
    /// </summary>
    public (Tensor Mean, Tensor MeanVariance) Posterior(Tensor xt, double a, double b)
    {
        using var scope = torch.NewDisposeScope();
        var x = xt.to(ScalarType.Float64, torch.CPU);
        double s2 = Std * Std;
        double marginalVar = a * a * s2 + b * b;
        var diff = x.unsqueeze(1) - _means.unsqueeze(0) * a;              // [B, K, d]
        var logResp = _logWeights.unsqueeze(0) - diff.pow(2).sum(2) / (2 * marginalVar);
        var resp = torch.softmax(logResp, 1);                            // [B, K]
        var componentMean = _means.unsqueeze(0) + diff * (a * s2 / marginalVar); // [B, K, d]
        var mean = (resp.unsqueeze(2) * componentMean).sum(1);          // [B, d]
        double withinVar = s2 * b * b / marginalVar;
        // tr Cov/d = within-component variance + spread of the component means around the mean.
        var between = (resp * (componentMean - mean.unsqueeze(1)).pow(2).sum(2)).sum(1) / Dimension;
        var meanVariance = between + withinVar;
        return (mean.to(xt.dtype, xt.device).MoveToOuterDisposeScope(), meanVariance.MoveToOuterDisposeScope());
    }
}
