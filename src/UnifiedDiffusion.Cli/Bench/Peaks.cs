using TorchSharp;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>
/// The machine's own limits, measured in the same run as the rows they judge: a large matrix
/// product, and every 3×3 convolution shape of the MNIST UNet as the network runs it
/// (<see cref="ChannelPaddedConv2d"/>, counted at its true channels), each in fp32 and bf16.
/// </summary>
internal static class Peaks
{
    /// <summary>The best rate (GFLOP/s) of each kind, and what it was measured on.</summary>
    public sealed record Result(double MatmulFp32, double MatmulBf16, double ConvFp32, double ConvBf16, string ConvFp32Shape, string ConvBf16Shape);

    /// <summary>Median seconds of <paramref name="run"/> over <paramref name="repeats"/> timed calls after a warm-up.</summary>
    private static double Seconds(Action run, int repeats) => Workload.MedianMilliseconds(repeats, run) / 1e3;

    /// <summary>Measures the peaks; <paramref name="convolutions"/> are the network's shapes (3×3 ones are timed).</summary>
    public static Result Measure(IEnumerable<ConvolutionShape> convolutions, int repeats, Action<string> log)
    {
        using var noGrad = torch.no_grad();
        var generator = new Generator(17);
        const long n = 2048;
        double Matmul(Precision precision)
        {
            using var scope = torch.NewDisposeScope();
            var type = Precisions.ComputeType(precision);
            var a = torch.randn([n, n], generator: generator).to(type);
            var b = torch.randn([n, n], generator: generator).to(type);
            double rate = 2.0 * n * n * n / Seconds(() => torch.matmul(a, b).Dispose(), repeats) / 1e9;
            log($"peak: {n}² matmul {Precisions.Name(precision)} {rate:F0} GFLOP/s");
            return rate;
        }
        (double Rate, string Shape) Convolution(Precision precision)
        {
            double best = 0;
            string where = "none";
            foreach (var shape in convolutions.Where(c => c.Kernel == 3).Distinct())
            {
                using var scope = torch.NewDisposeScope();
                var conv = new ChannelPaddedConv2d(shape.Input, shape.Output, 3, shape.Stride, padding: 1);
                var x = torch.randn([shape.Batch, shape.Input, shape.Height, shape.Width], generator: generator);
                double seconds;
                using (Autocast.Enter(precision)) seconds = Seconds(() => conv.forward(x).Dispose(), repeats);
                double rate = shape.Flops / seconds / 1e9;
                string text = $"{shape.Input}→{shape.Output} at {shape.Height}×{shape.Width}{(shape.Stride > 1 ? ", stride " + shape.Stride : "")}, batch {shape.Batch}";
                log($"peak: 3×3 conv {text} {Precisions.Name(precision)} {rate:F0} GFLOP/s");
                if (rate > best) (best, where) = (rate, text);
            }
            return (best, where);
        }
        double matmul32 = Matmul(Precision.Fp32);
        double matmul16 = Precisions.CpuHasBf16 ? Matmul(Precision.Bf16) : double.NaN;
        var conv32 = Convolution(Precision.Fp32);
        var conv16 = Precisions.CpuHasBf16 ? Convolution(Precision.Bf16) : (double.NaN, "no bf16 units");
        return new Result(matmul32, matmul16, conv32.Rate, conv16.Item1, conv32.Shape, conv16.Item2);
    }
}
