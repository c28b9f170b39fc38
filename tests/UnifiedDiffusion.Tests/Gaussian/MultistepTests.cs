using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Gaussian;

/// <summary>The multistep kernel is DPM-Solver++(2M) for the Gaussian process, step by step, on the exact GMM oracle.</summary>
public sealed class MultistepTests
{
    /// <summary>
    /// Lu et al. (2022), Algorithm 2, with λ = log(ᾱ/β̄), h_i = λ_{t_i} − λ_{t_{i−1}}, r_i = h_{i−1}/h_i:
    /// D_i = (1 + 1/(2r_i))·x̂_0(t_{i−1}) − 1/(2r_i)·x̂_0(t_{i−2}), x_{t_i} = (β̄_{t_i}/β̄_{t_{i−1}})·x_{t_{i−1}} − ᾱ_{t_i}(e^{−h_i} − 1)·D_i;
    /// first order (D = x̂_0) at the first step and onto the lowest nonzero level, x̂_0 at the end.
    /// </summary>
    [Theory]
    [InlineData("leading", 10)]
    [InlineData("trailing", 7)]
    public void DpmSolver2MIsTheClosedFormAtEveryStep(string spacing, int steps)
    {
        var schedule = NoiseSchedule.Create(new ScheduleConfig());
        var process = new GaussianProcess(schedule);
        var oracle = new MixtureOracle(GaussianMixture.Ring8(), process);
        int[] grid = TimeGrid.Parse(spacing, process.Levels, steps);
        double Lambda(int t) => Math.Log(schedule.Signal(t) / schedule.Noise(t));
        Tensor? previousClean = null;
        double worst = 0;
        int checkedSteps = 0;
        var sampler = new Sampler<GaussianPosterior>(process, oracle, GaussianKernels.DpmSolver2M(schedule));
        using var x = sampler.Sample([500, 2], grid, torch.CPU, new Generator(5), new SamplingOptions
        {
            OnStep = p =>
            {
                var (t, s, i) = (p.Step.T, p.Step.S, p.Step.Index);
                var clean = p.Posterior.Draw(null).to(ScalarType.Float64);
                Tensor expected;
                if (s == 0) expected = clean;
                else
                {
                    double h = Lambda(s) - Lambda(t);
                    bool firstOrder = i == 0 || i == grid.Length - 3;
                    var d = firstOrder ? clean : clean * (1 + 1 / (2 * ((Lambda(t) - Lambda(grid[i - 1])) / h))) - previousClean! * (1 / (2 * ((Lambda(t) - Lambda(grid[i - 1])) / h)));
                    expected = p.Xt.to(ScalarType.Float64) * (schedule.Noise(s) / schedule.Noise(t)) - d * (schedule.Signal(s) * double.ExpM1(-h));
                }
                worst = Math.Max(worst, (p.Xs.to(ScalarType.Float64) - expected).abs().max().item<double>());
                previousClean?.Dispose();
                previousClean = clean.detach().clone();
                previousClean.DetachFromDisposeScope();
                checkedSteps++;
            },
        });
        Assert.Equal(grid.Length - 1, checkedSteps);
        Assert.True(worst < 1e-4, $"largest difference from the closed form: {worst}");
    }

    [Fact]
    public void TheSecondOrderStepDiffersFromDdimAndTheHistoryIsClearedAfterARun()
    {
        var schedule = NoiseSchedule.Create(new ScheduleConfig());
        var process = new GaussianProcess(schedule);
        var oracle = new MixtureOracle(GaussianMixture.Ring8(), process);
        int[] grid = TimeGrid.Parse("leading", process.Levels, 10);
        using var start = process.SamplePrior([200, 2], torch.CPU, new Generator(3));
        var context = new SamplingContext();
        using var multistep = new Sampler<GaussianPosterior>(process, oracle, GaussianKernels.DpmSolver2M(schedule)).Run(start, grid, context);
        using var ddim = new Sampler<GaussianPosterior>(process, oracle, GaussianKernels.Ddim()).Run(start, grid, new SamplingContext());
        Assert.True((multistep - ddim).abs().max().item<float>() > 1e-3, "DPM-Solver++(2M) ran as DDIM");
        Assert.Null(context.History.PreviousClean);
    }
}
