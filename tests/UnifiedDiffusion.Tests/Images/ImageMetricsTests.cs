using TorchSharp;
using UnifiedDiffusion.Metrics;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Images;

public sealed class ImageMetricsTests
{
    [Fact]
    public void FidOfASetWithItselfIsZero()
    {
        using var scope = torch.NewDisposeScope();
        var mixing = torch.randn([16, 16], dtype: ScalarType.Float64, generator: new Generator(1));
        var a = torch.randn([500, 16], dtype: ScalarType.Float64, generator: new Generator(2)).matmul(mixing) + 3;
        double trace = torch.cov(a.T).trace().item<double>();
        double fid = ImageMetrics.FrechetDistance(a, a.clone());
        Assert.True(fid < 1e-6 * trace, $"FID {fid}, trace {trace}");
    }

    [Fact]
    public void FidOfAShiftedSetIsTheSquaredShift()
    {
        using var scope = torch.NewDisposeScope();
        var mixing = torch.randn([8, 8], dtype: ScalarType.Float64, generator: new Generator(3));
        var a = torch.randn([1000, 8], dtype: ScalarType.Float32, generator: new Generator(4)).to(ScalarType.Float64).matmul(mixing);
        var delta = torch.linspace(-1, 1.5, 8, dtype: ScalarType.Float64);
        double expected = delta.pow(2).sum().item<double>();
        Assert.Equal(expected, ImageMetrics.FrechetDistance(a, a + delta), 1e-3);
        Assert.Equal(expected, ImageMetrics.FrechetDistance(a + delta, a), 1e-3);
    }

    // n standard normal draws in d dimensions whose sample mean is exactly 0 and sample covariance exactly I.
    private static Tensor Whitened(int n, int d, ulong seed)
    {
        var z = torch.randn([n, d], dtype: ScalarType.Float64, generator: new Generator(seed));
        z = z - z.mean([0]);
        var cov = z.T.matmul(z) / (n - 1);
        var lower = torch.linalg.cholesky(cov);
        return torch.linalg.solve_triangular(lower, z.T, upper: false).T;
    }

    // N(μa, diag(sa²)) and N(μb, diag(sb²)): FID = ‖μa − μb‖² + Σ (sa_i − sb_i)².
    private static readonly double[] Sa = [1.0, 2.0, 0.5, 1.5], Sb = [2.0, 1.0, 1.0, 0.5];
    private static readonly double[] Ma = [0.0, 1.0, -1.0, 0.5], Mb = [0.5, 1.0, 0.0, 0.5];
    private static readonly double DiagonalFid = Ma.Zip(Mb, (x, y) => (x - y) * (x - y)).Sum() + Sa.Zip(Sb, (x, y) => (x - y) * (x - y)).Sum(); // 1.25 + 3.25

    [Fact]
    public void FidOfSetsWithExactlyDiagonalMomentsMatchesTheClosedForm()
    {
        using var scope = torch.NewDisposeScope();
        var a = Whitened(300, 4, 7) * torch.tensor(Sa) + torch.tensor(Ma);
        var b = Whitened(200, 4, 8) * torch.tensor(Sb) + torch.tensor(Mb);
        Assert.Equal(DiagonalFid, ImageMetrics.FrechetDistance(a, b), 1e-8);
        // A common rotation changes nothing (the covariances stop being diagonal).
        var (q, _) = torch.linalg.qr(torch.randn([4, 4], dtype: ScalarType.Float64, generator: new Generator(9)));
        Assert.Equal(DiagonalFid, ImageMetrics.FrechetDistance(a.matmul(q), b.matmul(q)), 1e-8);
    }

    [Fact]
    public void FidOfLargeSamplesOfTwoDiagonalGaussiansIsNearTheClosedForm()
    {
        using var scope = torch.NewDisposeScope();
        const int n = 40_000; // sampling error of the estimate: about 0.03 (one standard deviation)
        var a = torch.randn([n, 4], dtype: ScalarType.Float64, generator: new Generator(7)) * torch.tensor(Sa) + torch.tensor(Ma);
        var b = torch.randn([n, 4], dtype: ScalarType.Float64, generator: new Generator(8)) * torch.tensor(Sb) + torch.tensor(Mb);
        Assert.Equal(DiagonalFid, ImageMetrics.FrechetDistance(a, b), 0.15);
    }

    [Fact]
    public void ClassCoverageCountsClassesAndEntropy()
    {
        using var scope = torch.NewDisposeScope();
        var balanced = ImageMetrics.ClassCoverage(torch.tensor(new long[] { 0, 1, 2, 3, 3, 2, 1, 0 }), 4);
        Assert.Equal(1.0, balanced.CoveredShare);
        Assert.Equal(1.0, balanced.NormalizedEntropy, 1e-12);
        Assert.Equal(0.25, balanced.SmallestShare, 1e-12);

        var collapsed = ImageMetrics.ClassCoverage(torch.zeros(10, dtype: ScalarType.Int64), 4);
        Assert.Equal(0.25, collapsed.CoveredShare);
        Assert.Equal(0.0, collapsed.NormalizedEntropy, 1e-12);

        // Counts 6, 1, 1, 0 of 8: the threshold is 8/(2·4) = 1, so three classes are covered.
        var skewed = ImageMetrics.ClassCoverage(torch.tensor(new long[] { 0, 0, 0, 0, 0, 0, 1, 2 }), 4);
        Assert.Equal(0.75, skewed.CoveredShare);
        Assert.Equal(new long[] { 6, 1, 1, 0 }, skewed.Counts);
        Assert.Equal(0.0, skewed.SmallestShare, 1e-12);
        Assert.Equal(1.0 / 6, ImageMetrics.ClassCoverage(torch.tensor(new long[] { 0, 0, 0, 1, 1, 2 }), 3).SmallestShare, 1e-12);
        double h = -(0.75 * Math.Log(0.75) + 2 * 0.125 * Math.Log(0.125)) / Math.Log(4);
        Assert.Equal(h, skewed.NormalizedEntropy, 1e-12);
    }

    [Fact]
    public void SsimOfAnImageWithItselfIsOneAndFallsWithNoise()
    {
        using var scope = torch.NewDisposeScope();
        var g = new Generator(11);
        var x = (torch.rand([4, 1, 28, 28], generator: g) * 2 - 1);
        x = torch.nn.functional.avg_pool2d(x, 3, 1, 1); // some spatial structure
        Assert.Equal(1.0, ImageMetrics.Ssim(x, x.clone()), 1e-12);
        double previous = 1.0;
        foreach (double level in new[] { 0.05, 0.1, 0.2, 0.4 })
        {
            var noisy = x + torch.randn(x.shape, generator: g) * level;
            double ssim = ImageMetrics.Ssim(x, noisy);
            Assert.True(ssim < previous, $"SSIM {ssim} at noise {level} is not below {previous}");
            previous = ssim;
        }
        Assert.True(previous < 0.5);
    }

    [Fact]
    public void SsimOfTwoConstantImagesIsTheLuminanceTerm()
    {
        using var scope = torch.NewDisposeScope();
        // −0.5 and 0.5 are 0.25 and 0.75 on [0, 1]; both variances are 0, so the contrast term is
        // C2/C2 = 1 and SSIM = (2·0.25·0.75 + C1)/(0.25² + 0.75² + C1) with C1 = (0.01·1)².
        var a = torch.full([2, 3, 16, 16], -0.5f);
        var b = torch.full([2, 3, 16, 16], 0.5f);
        double expected = (2 * 0.25 * 0.75 + 1e-4) / (0.0625 + 0.5625 + 1e-4);
        Assert.Equal(expected, ImageMetrics.Ssim(a, b), 1e-9);
    }

    [Fact]
    public void SsimMatchesADirectWindowedComputation()
    {
        using var scope = torch.NewDisposeScope();
        // Two 1×1×13×12 images: 3×2 valid positions of the 11×11 window, summed out by hand.
        var a = torch.rand([1, 1, 13, 12], dtype: ScalarType.Float64, generator: new Generator(21)) * 2 - 1;
        var b = (a + torch.randn([1, 1, 13, 12], dtype: ScalarType.Float64, generator: new Generator(22)) * 0.3).clamp(-1, 1);
        double[] x = ((a + 1) / 2).flatten().data<double>().ToArray(), y = ((b + 1) / 2).flatten().data<double>().ToArray();
        var weights = new double[11, 11];
        double total = 0;
        for (int i = 0; i < 11; i++)
            for (int j = 0; j < 11; j++)
                total += weights[i, j] = Math.Exp(-((i - 5) * (i - 5) + (j - 5) * (j - 5)) / (2 * 1.5 * 1.5));
        double sum = 0;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 2; c++)
            {
                double mx = 0, my = 0, xx = 0, yy = 0, xy = 0;
                for (int i = 0; i < 11; i++)
                    for (int j = 0; j < 11; j++)
                    {
                        double wgt = weights[i, j] / total, u = x[(r + i) * 12 + c + j], v = y[(r + i) * 12 + c + j];
                        mx += wgt * u; my += wgt * v; xx += wgt * u * u; yy += wgt * v * v; xy += wgt * u * v;
                    }
                double vx = xx - mx * mx, vy = yy - my * my, cxy = xy - mx * my;
                sum += (2 * mx * my + 1e-4) * (2 * cxy + 9e-4) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4));
            }
        Assert.Equal(sum / 6, ImageMetrics.Ssim(a, b), 1e-10);
    }

    [Fact]
    public void RmseIsMeasuredOnTheUnitScale()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.zeros([2, 1, 4, 4]);
        Assert.Equal(0.1, ImageMetrics.Rmse(a, a + 0.2f), 1e-6);
        // Half the pixels differ by 1 on [−1, 1] (0.5 on [0, 1]): RMSE = √(0.5 · 0.25).
        var b = a.clone();
        b[0] = torch.ones([1, 4, 4]);
        Assert.Equal(Math.Sqrt(0.125), ImageMetrics.Rmse(a, b), 1e-9);
        Assert.Equal(0.0, ImageMetrics.Rmse(b, b.clone()));
    }
}
