using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cold;

/// <summary>
/// The cold forward process F_t(x_0, ε) = D_t(x_0) + σε for t ≥ 1, and F_0 = identity. Its "noise"
/// is the residual r = σε (zeros when σ = 0), so F_t is inverted by r = x_t − D_t(x_0), and the
/// core kernels become the Cold Diffusion samplers: invert is TACoS (the paper's improved sampler)
/// x_s = x_t − D_t(x̂_0) + D_s(x̂_0), re-corrupt is the naive x_s = D_s(x̂_0) (+ fresh σε), and
/// interpolate(σ̃) mixes inferred and fresh residuals when σ &gt; 0. A random choice of the
/// degradation (a mask centre) is the trajectory part of ε (<see cref="SampleTrajectoryNoise"/>).
/// </summary>
public sealed class ColdProcess : IForwardProcess
{
    /// <summary>A process over <paramref name="degradation"/> with noise level <paramref name="sigma"/> and an optional generative prior.</summary>
    public ColdProcess(Degradation degradation, double sigma = 0.0, ColdPrior? prior = null)
    {
        if (!(sigma >= 0) || !double.IsFinite(sigma)) throw new UdmException($"the cold noise level σ must be 0 or more, got {sigma}.") { Subject = "cold.sigma" };
        Degradation = degradation;
        Sigma = sigma;
        Prior = prior;
    }

    /// <summary>The deterministic part D_t.</summary>
    public Degradation Degradation { get; }

    /// <summary>The noise level σ added at every level t ≥ 1.</summary>
    public double Sigma { get; }

    /// <summary>The prior over x_T, or null for restoration only.</summary>
    public ColdPrior? Prior { get; }

    /// <inheritdoc />
    public int Levels => Degradation.Levels;

    /// <inheritdoc />
    public bool IsInvertible => true;

    /// <inheritdoc />
    public Tensor SampleNoise(Tensor x0, Generator? generator) =>
        Sigma == 0 ? torch.zeros_like(x0) : torch.randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator).mul_(Sigma);

    /// <inheritdoc />
    public Tensor Corrupt(Tensor x0, Tensor t, Tensor noise)
    {
        // The residual is added only where t ≥ 1, so that F_0 is the identity whatever the noise.
        var degraded = Degradation.Apply(x0, t);
        using var scope = torch.NewDisposeScope();
        var positive = (t.to(x0.device) > 0).expand(x0.shape[0]).reshape(-1, 1, 1, 1).to(x0.dtype);
        return degraded.add_(noise * positive).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public Tensor InferNoise(Tensor x0, Tensor xt, Tensor t)
    {
        using var degraded = Degradation.Apply(x0, t);
        return xt - degraded;
    }

    /// <inheritdoc />
    public Tensor SamplePrior(long[] shape, Device device, Generator? generator) =>
        Prior is null
            ? throw new UdmException("this cold process has no generative prior; restore degraded data instead (ColdSampling.Restore) or give it a prior such as ChannelMeanMixturePrior.") { Subject = "generate" }
            : Prior.Sample(shape, device, generator);

    /// <inheritdoc />
    /// <remarks>The degradation's random choice (a mask centre seed), or null for a deterministic degradation.</remarks>
    public Tensor? SampleTrajectoryNoise(long batch, Device device, Generator? generator) => Degradation.SampleChoice(generator);

    /// <inheritdoc />
    public IForwardProcess WithTrajectoryNoise(Tensor? trajectoryNoise) =>
        trajectoryNoise is null ? this : new ColdProcess(Degradation.WithChoice(trajectoryNoise), Sigma, Prior);

    /// <summary>The same process with another generative prior.</summary>
    public ColdProcess WithPrior(ColdPrior prior) => new(Degradation, Sigma, prior);
}

/// <summary>A prior over x_T for generation with a cold process.</summary>
public abstract class ColdPrior
{
    /// <summary>Draws a batch of the given shape [B, C, H, W].</summary>
    public abstract Tensor Sample(long[] shape, Device device, Generator? generator);

    /// <summary>The prior "D_T of held-out data": batches of <paramref name="data"/> degraded to level T.</summary>
    public static ColdPrior FromData(IDataSource data, Degradation degradation) => new DegradedDataPrior(data, degradation);

    private sealed class DegradedDataPrior(IDataSource data, Degradation degradation) : ColdPrior
    {
        public override Tensor Sample(long[] shape, Device device, Generator? generator)
        {
            using var scope = torch.NewDisposeScope();
            var batch = data.Sample((int)shape[0], generator ?? new Generator(0, device), device);
            if (!batch.shape.SequenceEqual(shape))
                throw new UdmException($"the data source gives samples [{string.Join(", ", batch.shape)}], not the requested [{string.Join(", ", shape)}]; sample with the data's image shape.");
            return degradation.Apply(batch, degradation.Levels).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>
/// The Cold Diffusion prior for generation from blur: a diagonal Gaussian mixture over the
/// per-channel means of training images, fitted by a few deterministic EM iterations. A draw is a
/// constant image of a colour from the mixture, plus optional small Gaussian noise (the paper
/// adds std 0.002 to break the symmetry of constant images).
/// </summary>
public sealed class ChannelMeanMixturePrior : ColdPrior
{
    private ChannelMeanMixturePrior(double[] weights, double[,] means, double[,] variances, double noiseStd)
    {
        Weights = weights;
        Means = means;
        Variances = variances;
        NoiseStd = noiseStd;
    }

    /// <summary>Mixture weights [K], summing to 1.</summary>
    public IReadOnlyList<double> Weights { get; }

    /// <summary>Component means [K, C].</summary>
    public double[,] Means { get; }

    /// <summary>Component variances [K, C] (diagonal).</summary>
    public double[,] Variances { get; }

    /// <summary>Std of the Gaussian noise added to every pixel of a draw (0 for exactly constant images).</summary>
    public double NoiseStd { get; }

    /// <summary>The number of channels.</summary>
    public int Channels => Means.GetLength(1);

    /// <summary>
    /// Fits <paramref name="components"/> components to the per-channel means of
    /// <paramref name="images"/> [N, C, H, W]: initial means are distinct images chosen with
    /// <paramref name="seed"/>, then <paramref name="iterations"/> EM steps with a variance floor.
    /// </summary>
    public static ChannelMeanMixturePrior Fit(Tensor images, int components, long seed, double noiseStd = 0.002, int iterations = 50)
    {
        if (images.dim() != 4) throw new UdmException($"the colour prior is fitted to images [N, C, H, W], got [{string.Join(", ", images.shape)}].");
        if (components < 1) throw new UdmException($"the colour prior needs at least 1 component, got {components}.");
        if (images.shape[0] < components) throw new UdmException($"fitting {components} colour components needs at least as many images, got {images.shape[0]}.");
        if (!(noiseStd >= 0)) throw new UdmException($"the prior noise std must be 0 or more, got {noiseStd}.");
        int n = (int)images.shape[0], c = (int)images.shape[1];
        double[] flat;
        using (var means = images.mean([2, 3]).to(ScalarType.Float64, torch.CPU).contiguous()) flat = means.data<double>().ToArray();
        double At(int i, int j) => flat[i * c + j];

        const double floor = 1e-6;
        var globalVar = new double[c];
        for (int j = 0; j < c; j++)
        {
            double mean = 0;
            for (int i = 0; i < n; i++) mean += At(i, j);
            mean /= n;
            for (int i = 0; i < n; i++) globalVar[j] += (At(i, j) - mean) * (At(i, j) - mean);
            globalVar[j] = Math.Max(globalVar[j] / n, floor);
        }
        var order = Enumerable.Range(0, n).ToArray();
        new Random(unchecked((int)seed ^ (int)(seed >> 32))).Shuffle(order);
        var weights = Enumerable.Repeat(1.0 / components, components).ToArray();
        var mu = new double[components, c];
        var variance = new double[components, c];
        for (int k = 0; k < components; k++)
            for (int j = 0; j < c; j++)
            {
                mu[k, j] = At(order[k], j);
                variance[k, j] = globalVar[j];
            }
        var resp = new double[n, components];
        for (int iteration = 0; iteration < iterations; iteration++)
        {
            for (int i = 0; i < n; i++)
            {
                double max = double.NegativeInfinity;
                for (int k = 0; k < components; k++)
                {
                    double log = Math.Log(weights[k]);
                    for (int j = 0; j < c; j++)
                    {
                        double d = At(i, j) - mu[k, j];
                        log -= 0.5 * (Math.Log(2 * Math.PI * variance[k, j]) + d * d / variance[k, j]);
                    }
                    resp[i, k] = log;
                    max = Math.Max(max, log);
                }
                double total = 0;
                for (int k = 0; k < components; k++) total += resp[i, k] = Math.Exp(resp[i, k] - max);
                for (int k = 0; k < components; k++) resp[i, k] /= total;
            }
            for (int k = 0; k < components; k++)
            {
                double mass = 0;
                for (int i = 0; i < n; i++) mass += resp[i, k];
                weights[k] = Math.Max(mass / n, 1e-12);
                if (mass < 1e-12) continue; // an empty component keeps its parameters
                for (int j = 0; j < c; j++)
                {
                    double m = 0;
                    for (int i = 0; i < n; i++) m += resp[i, k] * At(i, j);
                    m /= mass;
                    double v = 0;
                    for (int i = 0; i < n; i++) v += resp[i, k] * (At(i, j) - m) * (At(i, j) - m);
                    mu[k, j] = m;
                    variance[k, j] = Math.Max(v / mass, floor);
                }
            }
            double sum = weights.Sum();
            for (int k = 0; k < components; k++) weights[k] /= sum;
        }
        return new ChannelMeanMixturePrior(weights, mu, variance, noiseStd);
    }

    /// <summary>Writes the mixture as JSON (weights [K], means and variances [K][C], noise std), atomically.</summary>
    public void Save(string path)
    {
        int k = Weights.Count, c = Channels;
        double[][] Rows(double[,] a) => [.. Enumerable.Range(0, k).Select(i => Enumerable.Range(0, c).Select(j => a[i, j]).ToArray())];
        AtomicFile.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new MixtureFile(Weights.ToArray(), Rows(Means), Rows(Variances), NoiseStd)) + "\n");
    }

    /// <summary>Reads a mixture that <see cref="Save"/> wrote.</summary>
    public static ChannelMeanMixturePrior Load(string path)
    {
        MixtureFile? file;
        try { file = System.Text.Json.JsonSerializer.Deserialize<MixtureFile>(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new UdmException($"{path} is not a colour prior ({e.Message.Split('\n')[0]}); delete it, and it is fitted again from the data."); }
        int k = file?.Weights?.Length ?? 0;
        if (file is null || k == 0 || file.Means?.Length != k || file.Variances?.Length != k || file.Means[0].Length == 0
            || file.Means.Concat(file.Variances).Any(row => row.Length != file.Means[0].Length) || !(file.NoiseStd >= 0))
            throw new UdmException($"{path} is not a complete colour prior; delete it, and it is fitted again from the data.");
        int c = file.Means[0].Length;
        var means = new double[k, c];
        var variances = new double[k, c];
        for (int i = 0; i < k; i++)
            for (int j = 0; j < c; j++) (means[i, j], variances[i, j]) = (file.Means[i][j], file.Variances[i][j]);
        return new ChannelMeanMixturePrior(file.Weights, means, variances, file.NoiseStd);
    }

    private sealed record MixtureFile(double[] Weights, double[][] Means, double[][] Variances, double NoiseStd);

    /// <summary>The same mixture with another per-pixel noise std.</summary>
    public ChannelMeanMixturePrior WithNoise(double noiseStd) =>
        noiseStd >= 0 ? new(Weights.ToArray(), Means, Variances, noiseStd) : throw new UdmException($"the prior noise std must be 0 or more, got {noiseStd}.");

    /// <inheritdoc />
    public override Tensor Sample(long[] shape, Device device, Generator? generator)
    {
        if (shape.Length != 4 || shape[1] != Channels)
            throw new UdmException($"the colour prior was fitted to {Channels}-channel images; sample shape [{string.Join(", ", shape)}] does not match.");
        using var scope = torch.NewDisposeScope();
        int c = Channels;
        var weights = torch.tensor(Weights.ToArray(), dtype: ScalarType.Float64);
        var means = torch.tensor(Means, dtype: ScalarType.Float64);
        var stds = torch.tensor(Variances, dtype: ScalarType.Float64).sqrt();
        var component = torch.multinomial(weights, shape[0], replacement: true, generator: generator);
        var colour = means.index_select(0, component) + stds.index_select(0, component) *
            torch.randn([shape[0], c], dtype: ScalarType.Float64, generator: generator);
        var images = colour.to(ScalarType.Float32).reshape(shape[0], c, 1, 1).expand(shape).contiguous();
        if (NoiseStd > 0) images = images + torch.randn(shape, dtype: ScalarType.Float32, generator: generator) * NoiseStd;
        return images.to(device).MoveToOuterDisposeScope();
    }
}
