using System.CommandLine;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Runs;

namespace UnifiedDiffusion.Cli;

/// <summary>Options shared by several commands, defined once.</summary>
internal static class Options
{
    /// <summary>The most libtorch threads a user may ask for: beyond 4 per core only oversubscription (and, at thousands, a hung machine).</summary>
    public static int MaxThreads => 4 * Environment.ProcessorCount;

    public static Option<int> Threads()
    {
        var option = new Option<int>("--threads") { Description = $"libtorch threads (0 = one per core; at most {MaxThreads}, 4 per core)", DefaultValueFactory = _ => 0 };
        option.Validators.Add(result =>
        {
            // Only values that parse: the others get the parser's own error.
            if (result.Tokens is [var token] && int.TryParse(token.Value, out int n) && (n < 0 || n > MaxThreads))
                result.AddError($"--threads: {n} is out of range; use 0 (one per core) up to {MaxThreads} (4 per core)");
        });
        return option;
    }

    public static Option<string?> Device() => new("--device") { Description = "cpu or cuda (default: the run's own device, cpu for new runs)" };

    public static Option<string?> Precision(string whose) => new("--precision")
    {
        Description = $"fp32, or bf16: mixed precision, bfloat16 convolutions and linear layers with float32 weights, optimizer, EMA and checkpoints (needs avx512_bf16 or AMX; default: {whose})",
    };

    public static Option<long> Seed(string what) => new("--seed") { Description = $"seed for {what}; the same seed gives the same result", DefaultValueFactory = _ => 0 };

    public static Option<int> Count(int defaultValue) => new("--count") { Description = "number of samples", DefaultValueFactory = _ => defaultValue };

    public static Option<string?> Run(string what = "run folder written by `udm train` (or `udm import`)") => new("--run") { Description = what };

    public static Option<string?> Model() => new("--model") { Description = "a shipped pretrained model by name, instead of --run (`udm models` lists them)" };

    /// <summary>The command line that was parsed, as `udm …`, with the run folder written RUN (for a run's records).</summary>
    public static string CommandLine(ParseResult r, string? runDir) =>
        RunRecords.CommandLine(["udm", .. r.Tokens.Select(t => t.Value)], runDir);

    /// <summary>
    /// The run folder that --run names, or that --model's shipped model is imported into (once, in the
    /// cache); exactly one of the two. <paramref name="alternatives"/> names other choices for the message.
    /// </summary>
    public static string? RunFolder(ParseResult r, Option<string?> run, Option<string?> model, string alternatives = "")
    {
        string? runDir = r.GetValue(run), name = r.GetValue(model);
        if (runDir is not null && name is not null) throw new UdmException("give --run or --model, not both.") { Subject = "model" };
        return name is null ? runDir : ShippedModels.RunFolder(name, SampleCommand.DataProgress());
    }

    /// <summary><see cref="RunFolder"/> for commands that need a model: neither option is a one-line error.</summary>
    public static string RequiredRunFolder(ParseResult r, Option<string?> run, Option<string?> model) =>
        RunFolder(r, run, model)
        ?? throw new UdmException("give --run RUN (a folder `udm train` wrote) or --model NAME (a shipped model; `udm models` lists them).") { Subject = "run" };

    public static int Positive(ParseResult r, Option<int> option, string name)
    {
        int v = r.GetValue(option);
        if (v < 1) throw new UdmException($"{name} must be at least 1, got {v}.");
        return v;
    }

    /// <summary>The options that choose a sampler, shared by `sample` and `eval`, for every family.</summary>
    /// <remarks>
    /// Options are passed on only when given, so that a sampler that does not take one reports it
    /// (its family's registry decides); names and help come from the registries.
    /// </remarks>
    internal sealed class SamplerSet
    {
        private readonly Option<string?> _sampler = new("--sampler")
        {
            Description = $"sampler, by family: {SamplerCatalog.Describe()}. eval takes a comma list, or all, and in every family data: real samples through the same metrics (the reference row)",
        };
        private readonly Option<string?> _steps = new("--steps") { Description = "reverse steps (network evaluations); default 50, or the sequence length for text, T for cold; eval takes a comma list such as 10,20,50" };
        private readonly Option<double?> _eta = new("--eta") { Description = "DDIM η in [0, 1] (0 deterministic, 1 DDPM-like noise); for cold interpolate, σ̃" };
        private readonly Option<string> _grid = new("--grid") { Description = "time grid: leading, trailing, quadratic, or explicit levels such as \"999,500,0\"", DefaultValueFactory = _ => "leading" };
        private readonly Option<double?> _clip = new("--analytic-clip") { Description = "analytic samplers: cap the noise of the step onto the lowest level at this many pixel bins of 2/255 (official code: 2 for analytic-ddpm, 1 for analytic-ddim); 0 disables" };
        private readonly Option<string?> _gamma = new("--gamma") { Description = "analytic samplers: Γ estimator, residual (1 − E‖ε − ε̂‖²/d, the default) or noise-norm (the paper's E‖ε̂‖²/d, far noisier where Γ is near 1)" };
        private readonly Option<string?> _order = new("--order") { Description = "mask fill and edit repair samplers: which positions to fill or repair, random or confident (most confident / least trusted first)" };
        private readonly Option<double?> _guidance = new("--guidance") { Description = "class-conditional image models: classifier-free guidance scale w (0 = conditional model alone)" };
        private readonly Option<string?> _label = new("--label") { Description = "class-conditional image models: the class to draw, or none for the unconditional model that label dropout trained (default: cycle through the classes)" };
        private readonly Option<bool> _generate = new("--generate") { Description = "cold: generate from the prior over fully degraded images instead of restoring held-out ones" };
        private readonly Option<double?> _priorNoise = new("--prior-noise") { Description = "cold generation: std of the noise added to prior draws (the paper's 0.002; 0 = none)" };

        public IEnumerable<Option> All => [_sampler, _steps, _eta, _grid, _clip, _gamma, _order, _guidance, _label, _generate, _priorNoise];

        /// <summary>With lists allowed (eval): --sampler ddpm,ddim --steps 10,100 gives every combination.</summary>
        public bool AllowLists { get; init; }

        public SamplerRequest Build(ParseResult r) => BuildAll(r).Single();

        public List<SamplerRequest> BuildAll(ParseResult r)
        {
            var samplers = r.GetValue(_sampler) is { } names ? Split(names, "--sampler") : [null];
            List<int?> steps = r.GetValue(_steps) is { } values ? [.. Split(values, "--steps").Select(v =>
                int.TryParse(v, out int k) && k >= 1 ? k : throw new UdmException($"--steps must be a whole number of at least 1, got \"{v}\"."))] : [null];
            string grid = r.GetValue(_grid)!;
            if (!TimeGrid.IsSpacingName(grid))
            {
                // An explicit grid fixes the step count; levels are checked against T when the process is known.
                int count = TimeGrid.Parse(grid, int.MaxValue, 1).Length - 1;
                if (r.GetValue(_steps) is not null && (steps.Count != 1 || steps[0] != count))
                    throw new UdmException($"--steps {r.GetValue(_steps)} does not match --grid {grid}, which has {count} steps; leave --steps out.");
                steps = [count];
            }
            return [.. from name in samplers from k in steps select Build(r, name, k)];
        }

        private List<string?> Split(string value, string name)
        {
            var parts = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
            if (parts.Count == 0) throw new UdmException($"{name} needs a value.");
            if (parts.Count > 1 && !AllowLists) throw new UdmException($"{name} takes one value here; lists such as \"{value}\" work with `udm eval`.");
            if (parts.Contains("all") && !AllowLists) throw new UdmException($"{name} all works with `udm eval`; name one sampler here.");
            return [.. parts];
        }

        private SamplerRequest Build(ParseResult r, string? sampler, int? k)
        {
            GammaEstimator? estimator = r.GetValue(_gamma)?.ToLowerInvariant() switch
            {
                null => null,
                "noise-norm" => GammaEstimator.NoiseNorm,
                "residual" => GammaEstimator.Residual,
                var other => throw new UdmException($"unknown --gamma \"{other}\": use noise-norm or residual."),
            };
            double? eta = r.GetValue(_eta);
            if (eta is { } e && !(e >= 0 && e <= 1)) throw new UdmException($"--eta {e} is out of range; use a value in [0, 1].");
            if (r.GetValue(_priorNoise) is < 0 and var noise) throw new UdmException($"--prior-noise must be 0 or more, got {noise}.");
            string? labelText = r.GetValue(_label)?.Trim();
            bool unconditional = string.Equals(labelText, "none", StringComparison.OrdinalIgnoreCase);
            int? label = labelText is null || unconditional ? null
                : int.TryParse(labelText, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int l) ? l
                : throw new UdmException($"--label \"{labelText}\" is not a class: give a class number such as 7, or none for the unconditional model.");
            return new SamplerRequest(sampler, k, r.GetValue(_grid)!)
            {
                Eta = eta,
                AnalyticClip = r.GetValue(_clip),
                Gamma = estimator,
                Order = r.GetValue(_order),
                Guidance = r.GetValue(_guidance),
                Label = label,
                Unconditional = unconditional,
                Generate = r.GetValue(_generate),
                PriorNoise = r.GetValue(_priorNoise),
            };
        }
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
