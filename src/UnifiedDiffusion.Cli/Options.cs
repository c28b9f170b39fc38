using System.CommandLine;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;

namespace UnifiedDiffusion.Cli;

/// <summary>Options shared by several commands, defined once.</summary>
internal static class Options
{
    public static Option<int> Threads() => new("--threads") { Description = "libtorch threads (0 = one per core)", DefaultValueFactory = _ => 0 };

    public static Option<string?> Device() => new("--device") { Description = "cpu or cuda (default: the run's own device, cpu for new runs)" };

    public static Option<long> Seed(string what) => new("--seed") { Description = $"seed for {what}; the same seed gives the same result", DefaultValueFactory = _ => 0 };

    public static Option<string> Sampler() => new("--sampler")
    {
        Description = $"sampler: {string.Join(", ", GaussianSamplerSpec.Names)} (ddim with --eta > 0 is DDIM-η)",
        DefaultValueFactory = _ => "ddim",
    };

    public static Option<int> Steps(string what, int defaultValue) => new("--steps") { Description = what, DefaultValueFactory = _ => defaultValue };

    public static Option<double> Eta() => new("--eta") { Description = "DDIM η in [0, 1]: 0 deterministic, 1 DDPM-like noise", DefaultValueFactory = _ => 0.0 };

    public static Option<string> Grid() => new("--grid") { Description = "time grid: leading, trailing, quadratic, or explicit levels such as \"999,500,0\"", DefaultValueFactory = _ => "leading" };

    public static Option<int> Count(int defaultValue) => new("--count") { Description = "number of samples", DefaultValueFactory = _ => defaultValue };

    public static GaussianSamplerSpec Spec(ParseResult r, Option<string> sampler, Option<int> steps, Option<double> eta, Option<string> grid)
    {
        int k = r.GetValue(steps);
        if (k < 1) throw new UdmException($"--steps must be at least 1, got {k}.");
        return new GaussianSamplerSpec(GaussianSamplerSpec.ParseKind(r.GetValue(sampler)!), k, r.GetValue(eta), r.GetValue(grid)!);
    }

    public static int Positive(ParseResult r, Option<int> option, string name)
    {
        int v = r.GetValue(option);
        if (v < 1) throw new UdmException($"{name} must be at least 1, got {v}.");
        return v;
    }

    /// <summary>Ctrl-C requests a clean stop (a checkpoint is saved) instead of killing the process.</summary>
    public static CancellationTokenSource CancelOnCtrlC()
    {
        var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            if (cts.IsCancellationRequested) return; // a second Ctrl-C kills
            e.Cancel = true;
            Console.Error.WriteLine("udm: stopping after this step and saving a checkpoint (Ctrl-C again to abort)...");
            cts.Cancel();
        };
        return cts;
    }
}
