using System.Text;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static UnifiedDiffusion.Tests.Oracles.OracleSupport;

namespace UnifiedDiffusion.Tests.Oracles;

/// <summary>
/// The oracle tables for BENCHMARKS.md (gmm8, linear schedule, T = 1000, exact posterior mean). Not
/// part of the default suite; run with
/// <c>UDM_REPORT=1 dotnet test tests/UnifiedDiffusion.Tests --filter Category=Report --logger "console;verbosity=detailed"</c>
/// and optionally <c>UDM_REPORT_FILE=path.md</c> to also write the markdown to a file.
/// </summary>
[Trait("Category", "Report")]
public sealed class OracleReport(ITestOutputHelper output)
{
    private const int N = 10_000;
    private const int GammaSamplesPerLevel = 10_000;
    private static readonly GaussianMixture Ring = GaussianMixture.Ring8();
    private static readonly MixtureOracle Oracle = new(Ring, Process);

    private static IEnumerable<(string Name, IReverseKernel<GaussianPosterior> Kernel)> Kernels(int[] grid, bool withAnalyticDdpm)
    {
        var gamma = new GammaTable(1000);
        gamma.Estimate(Oracle, Process, Ring, grid, GammaSamplesPerLevel, new Generator(5));
        yield return ("DDPM", GaussianKernels.Ddpm(Process.Schedule));
        yield return ("DDIM", GaussianKernels.Ddim());
        yield return ("Analytic-DDIM", new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 0)));
        if (!withAnalyticDdpm) yield break;
        yield return ("Analytic-DDPM", new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 1)));
        // The paper's clip of the step onto the lowest level, with the data taken to span [−2, 2]:
        // its std is capped at 1·(4/255)·√(π/2) ≈ 0.02.
        yield return ("Analytic-DDIM clipped", new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 0, ClipPixels: 1, DataRange: 4)));
    }

    private static (double SlicedW2, double LogDensity) Measure(IReverseKernel<GaussianPosterior> kernel, int[] grid)
    {
        using var scope = torch.NewDisposeScope();
        var samples = new Sampler<GaussianPosterior>(Process, Oracle, kernel).Sample([N, 2], grid, torch.CPU, new Generator(11));
        return (SlicedW2(samples, Ring.Sample(N, new Generator(12))), Ring.LogDensity(samples).mean().item<double>());
    }

    [ReportFact]
    public void OracleTables()
    {
        var total = System.Diagnostics.Stopwatch.StartNew();
        var md = new StringBuilder();
        md.AppendLine($"Oracle tables: gmm8 (8 Gaussians, std 0.1, radius 2), linear schedule T = 1000, exact E[x_0 | x_t]; {N} samples per cell,");
        md.AppendLine($"sliced W2 with {Projections} fixed directions against {N} fresh data points; Γ for Analytic from {GammaSamplesPerLevel} draws per grid level.");
        md.AppendLine();
        {
            using var scope = torch.NewDisposeScope();
            var noise = DataVersusData(Ring, N, 10, seed: 40);
            double dataLog = Ring.LogDensity(Ring.Sample(N, new Generator(12))).mean().item<double>();
            md.AppendLine($"Reference: data vs data sliced W2 {Mean(noise):F4} ± {StandardDeviation(noise):F4} (10 pairs); data mean log-density {dataLog:F3}; " +
                          $"−H = {-(Math.Log(8) + Math.Log(2 * Math.PI * Math.E * 0.01)):F3}.");
            md.AppendLine();
        }

        md.AppendLine("### Sample quality, leading grids (sliced W2, lower is better / mean log-density, best when equal to the data's: above it the samples are too concentrated)");
        md.AppendLine();
        md.AppendLine("| steps | DDPM | DDIM | Analytic-DDIM |");
        md.AppendLine("|---|---|---|---|");
        foreach (int steps in new[] { 10, 20, 50, 100, 1000 })
        {
            var grid = TimeGrid.Create(1000, steps);
            var cells = Kernels(grid, false).Select(k => Measure(k.Kernel, grid)).Select(m => $"{m.SlicedW2:F4} / {m.LogDensity:F3}");
            md.AppendLine($"| {steps} | {string.Join(" | ", cells)} |");
            output.WriteLine($"[{total.Elapsed.TotalSeconds:F0} s] sample quality, {steps} steps done");
        }
        md.AppendLine();

        md.AppendLine("### Few steps: the grid spacing decides the order (sliced W2 / mean log-density)");
        md.AppendLine();
        md.AppendLine("| grid | DDPM | DDIM | Analytic-DDIM | Analytic-DDPM | Analytic-DDIM, clipped (ClipPixels 1, DataRange 4) |");
        md.AppendLine("|---|---|---|---|---|---|");
        foreach (int steps in new[] { 5, 10 })
            foreach (var spacing in new[] { TimeSpacing.Leading, TimeSpacing.Trailing, TimeSpacing.Quadratic })
            {
                var grid = TimeGrid.Create(1000, steps, spacing);
                var cells = Kernels(grid, true).Select(k => Measure(k.Kernel, grid)).Select(m => $"{m.SlicedW2:F4} / {m.LogDensity:F3}");
                md.AppendLine($"| {spacing.ToString().ToLowerInvariant()} {steps}: {string.Join(",", grid)} | {string.Join(" | ", cells)} |");
            }
        output.WriteLine($"[{total.Elapsed.TotalSeconds:F0} s] spacing table done");
        md.AppendLine();

        md.AppendLine("### ELBO, leading grids, continuous decoder (bits/dim; the true NLL is on the first line)");
        md.AppendLine();
        {
            using var scope = torch.NewDisposeScope();
            var x0 = Ring.Sample(N, new Generator(21));
            double trueNll = -Ring.LogDensity(x0).mean().item<double>() / (2 * Math.Log(2));
            md.AppendLine($"True NLL of these {N} points: {trueNll:F4} bits/dim.");
            md.AppendLine();
            md.AppendLine("| steps | DDPM small | DDPM large | Analytic (η = 1) |");
            md.AppendLine("|---|---|---|---|");
            foreach (int steps in new[] { 10, 20, 50, 100, 1000 })
            {
                var grid = TimeGrid.Create(1000, steps);
                var gamma = new GammaTable(1000);
                gamma.Estimate(Oracle, Process, Ring, grid, GammaSamplesPerLevel, new Generator(5));
                var kernel = new AnalyticKernel(Process.Schedule, gamma, new AnalyticOptions(Eta: 1));
                var cells = new[] { ElboVariance.DdpmSmall, ElboVariance.DdpmLarge, ElboVariance.Analytic }.Select(v =>
                {
                    using var terms = Likelihood.NegativeElbo(Process, Oracle, x0, grid, new ElboOptions(v, ElboDecoder.Continuous, kernel), new Generator(22));
                    return terms.BitsPerDim.ToString("F4");
                });
                md.AppendLine($"| {steps} | {string.Join(" | ", cells)} |");
                output.WriteLine($"[{total.Elapsed.TotalSeconds:F0} s] ELBO, {steps} steps done");
            }
        }
        md.AppendLine();
        md.AppendLine($"Wall time: {total.Elapsed.TotalSeconds:F0} s.");

        output.WriteLine(md.ToString());
        if (Environment.GetEnvironmentVariable("UDM_REPORT_FILE") is { Length: > 0 } path) File.WriteAllText(path, md.ToString());
    }
}
