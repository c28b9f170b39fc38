using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Tests.Core;
using Xunit;

namespace UnifiedDiffusion.Tests.Gaussian;

public sealed class NoiseScheduleTests
{
    private static NoiseSchedule Linear(int steps = 1000) => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Linear, steps));

    [Fact]
    public void LinearScheduleMatchesTheProductOfOneMinusBeta()
    {
        var schedule = Linear();
        var reference = Reference.LinearSignalSquared(1000);
        Assert.Equal(1000, schedule.Levels);
        Assert.Equal(1.0, schedule.Signal(0));
        Assert.Equal(0.0, schedule.Noise(0));
        Assert.Equal(1 - 1e-4, schedule.Signal(1) * schedule.Signal(1), 12);
        Assert.Equal((1 - 1e-4) * (1 - (1e-4 + 0.0199 / 999)), schedule.Signal(2) * schedule.Signal(2), 12);
        foreach (int t in new[] { 1, 10, 100, 500, 999, 1000 })
        {
            Assert.Equal(reference[t], schedule.Signal(t) * schedule.Signal(t), 12);
            Assert.Equal(1.0, schedule.Signal(t) * schedule.Signal(t) + schedule.Noise(t) * schedule.Noise(t), 12);
        }
        // ᾱ_T² = exp(Σ log(1 − β_i)) ≈ 4.04e-5 for DDPM's schedule.
        Assert.InRange(schedule.Signal(1000) * schedule.Signal(1000), 4.0e-5, 4.1e-5);
        Assert.Equal(reference[1000], schedule.Signal(1000) * schedule.Signal(1000), 15);
    }

    [Fact]
    public void CosineScheduleFollowsNicholAndDhariwal()
    {
        const double s = 0.008;
        static double F(double u) => Math.Pow(Math.Cos((u + s) / (1 + s) * Math.PI / 2), 2);
        var schedule = NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Cosine, 1000));
        // Away from the end, β is not clipped and ᾱ_t² telescopes to f(t/T)/f(0).
        foreach (int t in new[] { 1, 2, 100, 500, 900 })
            Assert.Equal(F(t / 1000.0) / F(0), schedule.Signal(t) * schedule.Signal(t), 10);
        // The last β is 1 − f(1)/f(0.999) ≈ 1, clipped at 0.999.
        double last = schedule.Signal(1000) * schedule.Signal(1000) / (schedule.Signal(999) * schedule.Signal(999));
        Assert.Equal(0.001, last, 10);
    }

    [Fact]
    public void CustomScheduleKeepsTheGivenSignalCoefficients()
    {
        double[] given = [0.9, 0.5, 0.1];
        var schedule = NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 3, AlphaBar: given));
        Assert.Equal([1.0, 0.9, 0.5, 0.1], schedule.SignalTable);
        Assert.Equal(Math.Sqrt(1 - 0.25), schedule.Noise(2), 15);
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 3, AlphaBar: [0.9, 0.5])));
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 3, AlphaBar: [0.9, 0.5, 0.1, 0.05])));
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 3)));
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 3, AlphaBar: [0.9, 0.95, 0.1])));
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Custom, 2, AlphaBar: [0.9, 0.0])));
        Assert.Throws<UdmException>(() => NoiseSchedule.Create(new ScheduleConfig(ScheduleKind.Linear, 0)));
    }

    [Fact]
    public void TransitionAndPosteriorStdFollowTheirDefinitions()
    {
        var schedule = Linear();
        var a2 = Reference.LinearSignalSquared(1000);
        foreach (var (t, s) in new[] { (2, 1), (10, 0), (500, 499), (700, 300), (1000, 1) })
        {
            double transition = Math.Sqrt(1 - a2[t] / a2[s]);
            Assert.Equal(transition, schedule.TransitionNoise(t, s), 12);
            Assert.Equal(Math.Sqrt(1 - a2[s]) * transition / Math.Sqrt(1 - a2[t]), schedule.PosteriorStd(t, s), 12);
        }
        Assert.Equal(0.0, schedule.PosteriorStd(10, 0));
        // One DDPM step t → t−1: β_{t|t−1}² is β_t.
        Assert.Equal(1e-4 + 0.0199 * 499 / 999, Math.Pow(schedule.TransitionNoise(500, 499), 2), 12);
    }
}
