using TorchSharp;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Latent;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Latent;

/// <summary>
/// The prior stays honest: over the data, x_T = ᾱ_T Enc(x_0) + β̄_T ε must look like N(0, I). A
/// normalised encoder passes whatever its scale; an unnormalised encoder that blows its output up
/// fails the same check. Thresholds are fixed in advance: |mean| &lt; 0.02, |variance − 1| &lt; 0.05,
/// and no KS rejection at α = 0.001 over 16 projections of 2,000 samples.
/// </summary>
public sealed class LatentPriorTests
{
    private static TensorData Images()
    {
        var generator = new Generator(51);
        // Bright blobs on a dark background, like digits: far from zero-mean, unit-variance data.
        var images = torch.rand([500, 1, 5, 5], generator: generator).gt(0.7).to(ScalarType.Float32).mul(2).sub(1);
        return new TensorData("blobs", images);
    }

    [Fact]
    public void ANormalisedEncoderGivesAStandardNormalPriorEvenWhenItsWeightsBlowUp()
    {
        using var scope = torch.NewDisposeScope();
        var process = new EncodingProcess(NoiseSchedule.Create(new ScheduleConfig()), EncodingProcessTests.RandomConvEncoder(normalize: true, scale: 1000), [1, 5, 5]);
        var prior = LatentPriorCheck.Measure(process, Images(), samples: 2000, projections: 16, seed: 52);
        Assert.True(Math.Abs(prior.Mean) < 0.02, $"mean {prior.Mean}");
        Assert.True(Math.Abs(prior.Variance - 1) < 0.05, $"variance {prior.Variance}");
        Assert.True(prior.KsPasses, $"KS {prior.MaxKs:F4} ≥ {prior.KsCritical:F4}");
    }

    [Fact]
    public void AnUnnormalisedEncoderThatBlowsUpFailsTheCheck()
    {
        using var scope = torch.NewDisposeScope();
        var process = new EncodingProcess(NoiseSchedule.Create(new ScheduleConfig()), EncodingProcessTests.RandomConvEncoder(normalize: false, scale: 1000), [1, 5, 5]);
        var prior = LatentPriorCheck.Measure(process, Images(), samples: 2000, projections: 16, seed: 52);
        Assert.False(prior.KsPasses, $"KS {prior.MaxKs:F4} < {prior.KsCritical:F4}: the check cannot see a blown-up latent");
        Assert.True(prior.Variance > 2, $"variance {prior.Variance}");
    }
}
