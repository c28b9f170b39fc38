using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Core;

/// <summary>A posterior that always returns the same x̂_0: makes kernel steps computable by hand.</summary>
internal sealed class FixedPosterior(Tensor x0) : IPosterior
{
    public Tensor Draw(Generator? generator) => x0;
}

/// <summary>Values written out independently of the library, in double precision.</summary>
internal static class Reference
{
    /// <summary>ᾱ_t² = ∏_{i≤t}(1 − β_i) of DDPM's linear schedule, β_i = β_1 + (β_T − β_1)(i − 1)/(T − 1).</summary>
    public static double[] LinearSignalSquared(int steps, double betaStart = 1e-4, double betaEnd = 0.02)
    {
        var result = new double[steps + 1];
        result[0] = 1;
        double product = 1;
        for (int i = 1; i <= steps; i++)
        {
            product *= 1 - (betaStart + (betaEnd - betaStart) * (i - 1) / (steps - 1));
            result[i] = product;
        }
        return result;
    }

    public static GaussianProcess LinearProcess(int steps = 1000) =>
        new(NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Linear, steps)));

    /// <summary>A CPU tensor of a rectangular array, as float32.</summary>
    public static Tensor Float(double[,] values) => torch.tensor(values, dtype: ScalarType.Float64).to(ScalarType.Float32);

    /// <summary>Reads a 2-D tensor into a double array.</summary>
    public static double[,] Read(Tensor t)
    {
        var d = t.to(ScalarType.Float64, torch.CPU).contiguous();
        var flat = d.data<double>().ToArray();
        int rows = (int)d.shape[0], cols = (int)d.shape[1];
        var result = new double[rows, cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                result[i, j] = flat[i * cols + j];
        return result;
    }

    /// <summary>Standard normal draws exactly as a kernel draws them: randn of the given shape, float32, from a fresh generator.</summary>
    public static double[,] Normal(long rows, long cols, ulong seed) =>
        Read(torch.randn([rows, cols], dtype: ScalarType.Float32, generator: new Generator(seed)));

    public static double MaxAbsDifference(double[,] a, double[,] b)
    {
        Xunit.Assert.Equal(a.GetLength(0), b.GetLength(0));
        Xunit.Assert.Equal(a.GetLength(1), b.GetLength(1));
        double max = 0;
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++)
                max = Math.Max(max, Math.Abs(a[i, j] - b[i, j]));
        return max;
    }

    public static double[,] Map(double[,] a, double[,] b, Func<double, double, double> f)
    {
        var r = new double[a.GetLength(0), a.GetLength(1)];
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++)
                r[i, j] = f(a[i, j], b[i, j]);
        return r;
    }
}
