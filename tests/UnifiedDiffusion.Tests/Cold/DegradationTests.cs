using TorchSharp;
using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using Xunit;
using static TorchSharp.torch;
using static UnifiedDiffusion.Tests.Cold.Degradations;

namespace UnifiedDiffusion.Tests.Cold;

/// <summary>Properties every degradation must have, and the defining formula of each one.</summary>
public sealed class DegradationTests
{
    private const double Tolerance = 1e-5; // float32 arithmetic on values in [−1, 1]

    [Theory]
    [MemberData(nameof(All), MemberType = typeof(Degradations))]
    public void LevelZeroIsTheIdentityAndShapesAreKept(string name)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create(name);
        var x = RandomImages(4, 3, 8, 1);
        Assert.True(degradation.Apply(x, 0).eq(x).all().item<bool>());
        Assert.Equal(x.shape, degradation.Apply(x, degradation.Levels).shape);
        Assert.True(degradation.Apply(x, Levels(0, 1, 0, degradation.Levels)).narrow(0, 0, 1).eq(x.narrow(0, 0, 1)).all().item<bool>());
    }

    [Theory]
    [MemberData(nameof(All), MemberType = typeof(Degradations))]
    public void OutputStaysWithinEachImagesRange(string name)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create(name);
        var x = RandomImages(4, 3, 8, 2);
        // Every image holds values of both signs, so 0 (the mask's target) lies inside its range too.
        var low = x.amin([1, 2, 3], keepdim: true) - Tolerance;
        var high = x.amax([1, 2, 3], keepdim: true) + Tolerance;
        for (int t = 1; t <= degradation.Levels; t++)
        {
            var y = degradation.Apply(x, t);
            Assert.True((y >= low).all().item<bool>() && (y <= high).all().item<bool>(), $"level {t} leaves the input range");
        }
    }

    [Theory]
    [MemberData(nameof(All), MemberType = typeof(Degradations))]
    public void DistanceToTheCleanImageGrowsWithTheLevel(string name)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create(name);
        var x = RandomImages(4, 3, 8, 3);
        var previous = torch.zeros(4);
        for (int t = 1; t <= degradation.Levels; t++)
        {
            var distance = (degradation.Apply(x, t) - x).square().sum([1, 2, 3]).sqrt();
            Assert.True((distance >= previous - Tolerance).all().item<bool>(), $"distance shrank at level {t}");
            Assert.True((distance > 0).all().item<bool>());
            previous = distance;
        }
    }

    [Theory]
    [MemberData(nameof(All), MemberType = typeof(Degradations))]
    public void PerSampleLevelsEqualOneLevelAtATime(string name)
    {
        using var scope = torch.NewDisposeScope();
        var degradation = Create(name);
        var x = RandomImages(4, 3, 8, 4);
        long[] levels = [0, 2, degradation.Levels - 1, degradation.Levels];
        var mixed = degradation.Apply(x, Levels(levels));
        for (int b = 0; b < 4; b++)
        {
            // Each image at its own batch position (random mask centres depend on the position).
            var alone = degradation.Apply(x, (int)levels[b]).narrow(0, b, 1);
            Assert.True(MaxAbs(mixed.narrow(0, b, 1), alone) < Tolerance, $"image {b} at level {levels[b]}");
        }
    }

    [Fact]
    public void BlurRoutinesFollowTheReferenceCode()
    {
        // deblurring_diffusion_pytorch.get_kernels: Incremental std·(i+1), Constant std, Exponential exp(std·i), i 0-based.
        var incremental = new BlurDegradation(3, 5, 0.5, BlurRoutine.Incremental);
        var constant = new BlurDegradation(3, 5, 7.0, BlurRoutine.Constant);
        var exponential = new BlurDegradation(3, 5, 0.1, BlurRoutine.Exponential);
        Assert.Equal([0.5, 1.0, 1.5], [incremental.StdAt(1), incremental.StdAt(2), incremental.StdAt(3)]);
        Assert.Equal([7.0, 7.0], [constant.StdAt(1), constant.StdAt(3)]);
        Assert.Equal([1.0, Math.Exp(0.1), Math.Exp(0.2)], [exponential.StdAt(1), exponential.StdAt(2), exponential.StdAt(3)]);
    }

    [Fact]
    public void BlurRemovesDetailStepByStepAndCircularBlurKeepsTheMean()
    {
        using var scope = torch.NewDisposeScope();
        var blur = Create("blur-circular");
        var x = RandomImages(4, 3, 8, 5);
        static Tensor Variation(Tensor y) =>
            (y.narrow(2, 1, 7) - y.narrow(2, 0, 7)).abs().sum([1, 2, 3]) + (y.narrow(3, 1, 7) - y.narrow(3, 0, 7)).abs().sum([1, 2, 3]);
        var previous = Variation(x);
        for (int t = 1; t <= blur.Levels; t++)
        {
            var y = blur.Apply(x, t);
            var variation = Variation(y);
            Assert.True((variation < previous).all().item<bool>(), $"total variation did not fall at level {t}");
            previous = variation;
            Assert.True(MaxAbs(y.mean([2, 3]), x.mean([2, 3])) < Tolerance);
        }
    }

    [Fact]
    public void BlurWithMeanAtTheFinalStepEndsOnConstantImages()
    {
        using var scope = torch.NewDisposeScope();
        var blur = Create("blur-mean");
        var x = RandomImages(3, 3, 8, 11);
        // The mean of the T-fold blur (as the reference code), which differs from x's mean under reflect padding.
        var blurred = new BlurDegradation(4, kernelSize: 3, std: 0.7, BlurRoutine.Constant, BlurPadding.Reflect).Apply(x, 4);
        double error = MaxAbs(blur.Apply(x, blur.Levels), blurred.mean([2, 3], keepdim: true).expand_as(x));
        Assert.True(error < Tolerance, $"D_T differs from the mean by {error}");
        var before = blur.Apply(x, blur.Levels - 1);
        Assert.True((before.amax([2, 3]) - before.amin([2, 3])).min().item<float>() > 0.01);
    }

    /// <summary>
    /// The blur as the reference code runs it, t passes of pad-then-convolve (separable, depthwise), against
    /// the level maps V_t·x·H_tᵀ: both paddings, every level, a non-square image and per-sample levels.
    /// </summary>
    [Theory]
    [InlineData(BlurPadding.Reflect, BlurRoutine.Constant)]
    [InlineData(BlurPadding.Circular, BlurRoutine.Incremental)]
    public void BlurLevelMapsEqualRepeatedPaddedConvolutions(BlurPadding padding, BlurRoutine routine)
    {
        using var scope = torch.NewDisposeScope();
        const int levels = 5, size = 5;
        var blur = new BlurDegradation(levels, size, routine == BlurRoutine.Constant ? 2.0 : 0.6, routine, padding);
        var x = torch.rand([levels + 1, 2, 9, 7], generator: new Generator(12)) * 2 - 1;
        var mode = padding == BlurPadding.Reflect ? PaddingModes.Reflect : PaddingModes.Circular;
        var expected = new List<Tensor>();
        for (int b = 0; b <= levels; b++)
        {
            var y = x.narrow(0, b, 1).to(ScalarType.Float64);
            for (int i = 1; i <= b; i++)
            {
                double std = blur.StdAt(i);
                var k = torch.tensor(Enumerable.Range(0, size).Select(j => Math.Exp(-Math.Pow(j - size / 2, 2) / (2 * std * std))).ToArray(), dtype: ScalarType.Float64);
                k /= k.sum();
                var padded = nn.functional.pad(y, [size / 2, size / 2, size / 2, size / 2], mode);
                y = nn.functional.conv2d(nn.functional.conv2d(padded, k.reshape(1, 1, size, 1).expand(2, 1, size, 1), groups: 2),
                    k.reshape(1, 1, 1, size).expand(2, 1, 1, size), groups: 2);
            }
            expected.Add(y);
        }
        var actual = blur.Apply(x, torch.arange(levels + 1, dtype: ScalarType.Int64));
        Assert.True(MaxAbs(actual.to(ScalarType.Float64), torch.cat(expected)) < Tolerance);
    }

    [Fact]
    public void BlurMatchesADirectTwoDimensionalConvolution()
    {
        using var scope = torch.NewDisposeScope();
        var blur = new BlurDegradation(1, 3, 0.8, BlurRoutine.Constant, BlurPadding.Circular);
        var x = RandomImages(1, 1, 5, 6);
        double[] g = [Math.Exp(-1 / (2 * 0.64)), 1, Math.Exp(-1 / (2 * 0.64))];
        double total = g.Sum();
        var image = x.to(ScalarType.Float64).reshape(5, 5);
        var expected = torch.zeros(5, 5, dtype: ScalarType.Float64);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
            {
                double sum = 0;
                for (int a = -1; a <= 1; a++)
                    for (int b = -1; b <= 1; b++)
                        sum += g[a + 1] * g[b + 1] / (total * total) * image[(i + a + 5) % 5, (j + b + 5) % 5].item<double>();
                expected[i, j] = sum;
            }
        Assert.True(MaxAbs(blur.Apply(x, 1).reshape(5, 5).to(ScalarType.Float64), expected) < Tolerance);
    }

    [Fact]
    public void MaskCompoundsOneMinusGaussianFactors()
    {
        using var scope = torch.NewDisposeScope();
        var mask = new GaussianMaskDegradation(4, kernelStd: 0.5, initialMask: 2);
        var ones = torch.ones(1, 1, 8, 8);
        // Pixel (0, 1) against the fixed centre (3.5, 3.5): d² = 3.5² + 2.5².
        double d2 = 3.5 * 3.5 + 2.5 * 2.5, expected = 1;
        for (int t = 1; t <= 4; t++)
        {
            double s = 0.5 * (t - 1 + 2);
            expected *= 1 - Math.Exp(-d2 / (2 * s * s));
            Assert.True(Math.Abs(mask.Apply(ones, t)[0, 0, 0, 1].item<float>() - expected) < Tolerance, $"level {t}");
        }
    }

    [Fact]
    public void RandomCentresAreFixedPerPositionUntilAnotherChoiceIsDrawn()
    {
        using var scope = torch.NewDisposeScope();
        var mask = (GaussianMaskDegradation)Create("mask-random");
        var same = RandomImages(1, 1, 8, 7).expand(6, 1, 8, 8).contiguous();
        var first = mask.Apply(same, 3);
        Assert.True(mask.Apply(same, 3).eq(first).all().item<bool>());
        var centres = mask.Centres(6, 8, 8);
        Assert.True(centres.Distinct().Count() >= 4, "six positions should get (nearly all) distinct centres");
        Assert.Equal(centres.Take(3), mask.Centres(3, 8, 8)); // a smaller batch keeps the same centres
        var choice = mask.SampleChoice(new Generator(5));
        Assert.NotNull(choice);
        Assert.False(mask.WithChoice(choice).Apply(same, 3).eq(first).all().item<bool>());
        Assert.True(mask.Apply(same, 3).eq(first).all().item<bool>(), "drawing a choice must not change the degradation itself");
        var process = new ColdProcess(mask);
        var drawn = process.SampleTrajectoryNoise(6, torch.CPU, new Generator(5));
        Assert.True(process.WithTrajectoryNoise(drawn).CorruptAt(same, 3, torch.zeros_like(same)).eq(mask.WithChoice(choice).Apply(same, 3)).all().item<bool>(),
            "the process's trajectory noise is the degradation's choice");

        var fixedCentre = (GaussianMaskDegradation)Create("mask");
        var before = fixedCentre.Apply(same, 3);
        Assert.Null(fixedCentre.SampleChoice(new Generator(5)));
        Assert.Same(fixedCentre, fixedCentre.WithChoice(choice));
        Assert.True(before.narrow(0, 0, 1).eq(before.narrow(0, 5, 1)).all().item<bool>());
    }

    [Fact]
    public void SuperResolutionAveragesBlocksAndEndsAtTheChannelMean()
    {
        using var scope = torch.NewDisposeScope();
        var degradation = new SuperResolutionDegradation(3);
        var x = RandomImages(2, 3, 8, 8);
        var level1 = degradation.Apply(x, 1);
        var block = x.narrow(2, 2, 2).narrow(3, 4, 2).mean([2, 3]);
        Assert.True(MaxAbs(level1.narrow(2, 2, 2).narrow(3, 4, 2), block.reshape(2, 3, 1, 1).expand(2, 3, 2, 2)) < Tolerance);
        Assert.True(MaxAbs(degradation.Apply(x, 3), x.mean([2, 3], keepdim: true).expand_as(x)) < Tolerance);
    }

    [Fact]
    public void FadeIsLinearTowardsTheChannelMean()
    {
        using var scope = torch.NewDisposeScope();
        var fade = new FadeDegradation(4);
        var x = RandomImages(2, 3, 8, 9);
        var mean = x.mean([2, 3], keepdim: true);
        Assert.True(MaxAbs(fade.Apply(x, 1), x * 0.75 + mean * 0.25) < Tolerance);
        Assert.True(MaxAbs(fade.Apply(x, 4), mean.expand_as(x)) < Tolerance);
    }

    [Fact]
    public void BadSettingsAndLevelsAreRejected()
    {
        Assert.Throws<UdmException>(() => new BlurDegradation(3, 4, 1.0));
        Assert.Throws<UdmException>(() => new BlurDegradation(0, 5, 1.0));
        Assert.Throws<UdmException>(() => new GaussianMaskDegradation(3, kernelStd: -1));
        Assert.Throws<UdmException>(() => new BlurDegradation(2, 11, 1.0, padding: BlurPadding.Reflect).Apply(torch.zeros(1, 1, 4, 4), 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new FadeDegradation(3).Apply(torch.zeros(1, 1, 4, 4), 4));
    }
}
