using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Runs;
using Xunit;
using Xunit.Abstractions;

namespace UnifiedDiffusion.Tests.Training;

/// <summary>Long loops must not accumulate native tensors (RSS is measured in `udm bench`, not here).</summary>
[Collection(nameof(LiveTensorCounting))]
public sealed class LeakTests(ITestOutputHelper output)
{
    [Fact]
    public void TrainingAndSamplingLeaveNoLiveTensorsBehind()
    {
        var experiment = Experiment.Create(TrainingTests.Small(0, hidden: 16));
        var trainer = experiment.CreateTrainer(experiment.Config.Training with { Steps = 20 });
        trainer.Run(null); // warm-up: optimizer state, schedule tables
        using (experiment.Model.Sample(new SamplerRequest("analytic-ddpm", 5), 64, 0)) { }

        long before = LiveCount();
        trainer.Options = trainer.Options with { Steps = 220 };
        trainer.Run(null);
        foreach (var kind in GaussianSamplers.Registry.Names)
            using (experiment.Model.Sample(new SamplerRequest(kind, 20), 64, 1)) { }
        long after = LiveCount();
        output.WriteLine($"live tensors before {before}, after {after}");
        Assert.True(after - before <= 0, $"{after - before} tensors leaked over 200 training steps and 4 samplers");
    }

    // No GC here on purpose: a tensor that escaped its dispose scope stays live until the finalizer
    // runs, which is exactly the native memory that piles up between collections.
    private static long LiveCount() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
}

[CollectionDefinition(nameof(LiveTensorCounting), DisableParallelization = true)]
public sealed class LiveTensorCounting;
