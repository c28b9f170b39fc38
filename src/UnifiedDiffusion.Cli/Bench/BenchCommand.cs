using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>
/// `udm bench`: training-step time, sampler throughput and memory of the reference model of each
/// family (toy MLP; MNIST UNet, Gaussian and cold; poem Transformer, mask and edit), optionally
/// interleaved round by round with the PyTorch reference (bench/pytorch/bench.py) as ratios, with a
/// forward-parity check of the twins on shared weights.
/// </summary>
internal static class BenchCommand
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    public static Command Create()
    {
        var suite = new Option<string>("--suite") { Description = "toy, unet (Gaussian and cold UNet), text (mask and edit Transformer), or all; a comma list is allowed", DefaultValueFactory = _ => "all" };
        var only = new Option<string?>("--only") { Description = "only rows whose id starts with one of these comma-separated prefixes (e.g. unet.ddim,mem.); ids are in --json" };
        var rounds = new Option<int?>("--rounds") { Description = "interleaved measurement rounds after warm-up; medians are reported (default 5, smoke 2)" };
        var rssSteps = new Option<int?>("--rss-steps") { Description = "training steps of the RSS drift row (default 20000, smoke 2000); 0 skips it" };
        var pytorch = new Option<bool>("--pytorch") { Description = "also run the PyTorch reference, round by round, and check forward parity (needs bench/install-pytorch.sh)" };
        var smoke = new Option<bool>("--smoke") { Description = "tiny counts and steps: checks the whole pipeline in minutes; not for publishing" };
        var json = new Option<bool>("--json") { Description = "print JSON instead of the Markdown table" };
        var output = new Option<string?>("--out") { Description = "also write the Markdown table to this file, and the JSON next to it (.json)" };
        var levers = new Option<bool>("--levers") { Description = "instead of the table: measure the performance levers (inference mode, channels-last, bfloat16, threads) on the C# side" };
        var precision = new Option<string?>("--precision") { Description = "fp32, bf16 (mixed precision; PyTorch: CPU autocast), or both (the default where the CPU has bf16 units, else fp32): bf16 rows carry @bf16 in their ids" };
        var memoryRow = new Option<string?>("--memory-row") { Hidden = true };
        var settingsFile = new Option<string?>("--settings") { Hidden = true };
        var threads = Options.Threads();
        var command = new Command("bench", "Speed and memory of the reference model of each family (toy MLP, MNIST UNet, cold UNet, poem Transformer): "
            + "training step, samples per second per sampler, peak RSS, RSS drift; with --pytorch, the same against PyTorch as ratios.")
        {
            suite, only, rounds, rssSteps, pytorch, smoke, json, output, levers, precision, threads, memoryRow, settingsFile,
        };
        command.SetAction(r =>
        {
            int threadCount = r.GetValue(threads) > 0 ? r.GetValue(threads) : Environment.ProcessorCount;
            Platform.SetThreads(threadCount);
            if (r.GetValue(memoryRow) is { } row)
            {
                var childSettings = JsonSerializer.Deserialize<BenchSettings>(File.ReadAllText(r.GetValue(settingsFile) ?? throw new UdmException("--memory-row needs --settings")), Json)!;
                var readings = Workload.RunMemoryRow(row, childSettings, Console.Error.WriteLine);
                Console.WriteLine(JsonSerializer.Serialize(readings));
                return 0;
            }
            var settings = (r.GetValue(smoke) ? BenchSettings.Smoke : BenchSettings.Full) with { Threads = threadCount, AnalyticVariances = [] };
            if (r.GetValue(rounds) is int n) settings = settings with { Rounds = n >= 1 ? n : throw new UdmException($"--rounds must be at least 1, got {n}.") };
            if (r.GetValue(rssSteps) is int steps) settings = settings with { RssSteps = Math.Max(0, steps) };
            if (r.GetValue(levers))
            {
                Levers.Run(settings);
                return 0;
            }
            var suites = ParseSuites(r.GetValue(suite)!);
            var prefixes = r.GetValue(only)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
            var precisions = r.GetValue(precision) switch
            {
                null => Precisions.CpuHasBf16 ? ["fp32", "bf16"] : ["fp32"],
                "both" => ["fp32", "bf16"],
                var one => new List<string> { Precisions.Name(Precisions.Parse(one)) },
            };
            if (precisions.Contains("bf16")) Precisions.Parse("bf16");
            var report = Run(settings, suites, prefixes, r.GetValue(pytorch), precisions);
            string markdown = Markdown(report);
            Console.WriteLine(r.GetValue(json) ? JsonSerializer.Serialize(report, Json) : markdown);
            if (r.GetValue(output) is { } path)
            {
                File.WriteAllText(path, markdown + "\n");
                File.WriteAllText(Path.ChangeExtension(path, ".json"), JsonSerializer.Serialize(report, Json) + "\n");
            }
            return 0;
        });
        return command;
    }

    private static List<string> ParseSuites(string value)
    {
        var names = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => s.ToLowerInvariant()).ToList();
        if (names.Contains("all")) return [.. Workload.Suites];
        foreach (var name in names)
            if (!Workload.Suites.Contains(name)) throw new UdmException($"unknown suite \"{name}\": use toy, unet, text or all.");
        return names;
    }

    public sealed record Row(string Id, string Suite, string Measure, string Unit, double? CSharp, double? PyTorch, List<double> CSharpRounds, List<double> PyTorchRounds)
    {
        /// <summary>Counted FLOPs behind one unit of the row (a training step, or one sample), or null.</summary>
        public double? Flops { get; init; }

        /// <summary>The rate of useful work: FLOPs per unit over the unit's time, in GFLOP/s.</summary>
        public double? CSharpGflops => Gflops(CSharp);

        /// <summary>The same for PyTorch.</summary>
        public double? PyTorchGflops => Gflops(PyTorch);

        /// <summary>C#'s GFLOP/s as a share of the matching peak (the row's precision; convolutions for UNet rows, matmul otherwise), in %.</summary>
        public double? PeakPercent { get; init; }

        /// <summary>For a bf16 row: C#'s bf16 time over its fp32 time (below 1: bf16 is faster).</summary>
        public double? Bf16OverFp32 { get; init; }

        /// <summary>The same for PyTorch (autocast against plain fp32).</summary>
        public double? PyTorchBf16OverFp32 { get; init; }

        private double? Gflops(double? value) => Flops is double f && value is double v && v > 0
            ? Unit switch { "ms" => f / (v / 1e3) / 1e9, "samples/s" => f * v / 1e9, _ => null }
            : null;

        /// <summary>C# cost over PyTorch cost (time, or memory): below 1 means C# is better. Null where no ratio applies.</summary>
        public double? Ratio => CSharp is double c && PyTorch is double p && c > 0 && p > 0
            ? Unit switch { "ms" or "MB" => c / p, "samples/s" => p / c, _ => null }
            : null;
    }

    public sealed record Report(string Settings, Dictionary<string, string> Machine, Dictionary<string, string> PyTorchSide, string Command, List<Row> Rows)
    {
        /// <summary>The machine's peaks measured in the same run, or null when no timed row ran.</summary>
        public Peaks.Result? Peaks { get; init; }
    }

    private static void Log(string message) => Console.Error.WriteLine($"[bench {DateTime.Now:HH:mm:ss}] {message}");

    private static Report Run(BenchSettings settings, List<string> suites, string[] prefixes, bool pytorch, List<string> precisions)
    {
        bool Selected(string id, string suite) => (suite == "all" || suites.Contains(suite)) && (prefixes.Length == 0 || prefixes.Any(p => id.StartsWith(p, StringComparison.Ordinal)));

        var workloads = suites.SelectMany(s => precisions.SelectMany(p => Workload.For(s, settings with { Precision = p })))
            .Where(w => w.Rows.Any(row => Selected(row.Id, row.Suite))).ToList();
        foreach (var w in workloads)
        {
            Log($"setting up {w.GetType().Name} (untimed warm-up)");
            w.Setup();
        }
        var timed = workloads.SelectMany(w => w.Rows.Where(row => Selected(row.Id, row.Suite)).Select(row => (Workload: w, Row: row))).ToList();
        string temp = Directory.CreateTempSubdirectory("udm-bench-").FullName;
        string settingsPath = Path.Combine(temp, "settings.json");
        File.WriteAllText(settingsPath, JsonSerializer.Serialize(settings, Json));

        var csharp = timed.ToDictionary(t => t.Row.Id, _ => new List<double>());
        var python = timed.ToDictionary(t => t.Row.Id, _ => new List<double>());
        var pythonSide = new Dictionary<string, string>();
        JsonElement? pythonParameters = null;
        for (int round = 0; round < settings.Rounds; round++)
        {
            foreach (var (w, row) in timed)
            {
                double value = w.Measure(row.Id, round);
                csharp[row.Id].Add(value);
                Log($"round {round + 1}/{settings.Rounds} C#      {row.Id}: {value:0.###} {row.Unit}");
            }
            if (pytorch && timed.Count > 0)
            {
                var result = PythonSide.Round(settingsPath, timed.Select(t => t.Row.Id), round);
                foreach (var (id, values) in python)
                    if (result.GetProperty("rows").TryGetProperty(id, out var v))
                    {
                        values.Add(v.GetDouble());
                        Log($"round {round + 1}/{settings.Rounds} PyTorch {id}: {v.GetDouble():0.###}");
                    }
                foreach (var p in result.GetProperty("versions").EnumerateObject()) pythonSide[p.Name] = p.Value.ToString();
                pythonParameters = result.GetProperty("parameters");
            }
        }

        // The machine's peaks, in the same run, on the UNet's own convolution shapes.
        Peaks.Result? peaks = null;
        if (timed.Count > 0)
        {
            var unet = new GaussianUNetWorkload(settings);
            var shapes = workloads.OfType<GaussianUNetWorkload>().FirstOrDefault()?.Convolutions.Keys;
            if (shapes is null) { unet.Setup(); shapes = unet.Convolutions.Keys; }
            peaks = Peaks.Measure(shapes, Math.Max(3, settings.Rounds), Log);
        }
        double? Peak(Workload w) => peaks is null ? null
            : (w.Suite == "unet", w.Precision) switch
            {
                (true, Precision.Fp32) => peaks.ConvFp32,
                (true, _) => peaks.ConvBf16,
                (false, Precision.Fp32) => peaks.MatmulFp32,
                _ => peaks.MatmulBf16,
            };
        var rows = timed.Select(t =>
        {
            var row = new Row(t.Row.Id, t.Row.Suite, t.Row.Measure, t.Row.Unit, Median(csharp[t.Row.Id]), Median(python[t.Row.Id]), csharp[t.Row.Id], python[t.Row.Id])
            { Flops = t.Workload.Flops(t.Row.Id) };
            return row with { PeakPercent = row.CSharpGflops is double g && Peak(t.Workload) is double p && p > 0 ? 100 * g / p : null };
        }).ToList();
        // bf16 rows against their fp32 rows of the same run, on each side.
        double? Over(double? bf16, double? fp32, string unit) => bf16 is double b && fp32 is double f && b > 0 && f > 0 ? (unit == "ms" ? b / f : f / b) : null;
        rows = [.. rows.Select(row => row.Id.EndsWith("@bf16", StringComparison.Ordinal) && rows.FirstOrDefault(f => f.Id == row.Id[..^"@bf16".Length]) is { } fp32
            ? row with { Bf16OverFp32 = Over(row.CSharp, fp32.CSharp, row.Unit), PyTorchBf16OverFp32 = Over(row.PyTorch, fp32.PyTorch, row.Unit) }
            : row)];

        // Parameter counts: the twins must be the same networks.
        foreach (var w in workloads.DistinctBy(w => w.GetType()))
        {
            string key = w switch { ToyWorkload => "toy", GaussianUNetWorkload => "unet", ColdUNetWorkload => "cold", _ => "text" };
            long mine = w.Network.parameters().Sum(p => p.numel());
            double? theirs = null;
            if (pythonParameters is JsonElement counts && counts.TryGetProperty(key, out var c))
            {
                theirs = c.GetInt64();
                if (theirs != mine) throw new UdmException($"parameter counts differ for {key}: C# {mine}, PyTorch {theirs}; the twins in interop/pytorch/udm_torch/networks.py no longer match.");
            }
            rows.Add(new Row($"params.{key}", w.Suite, $"parameters, {key} network (checked equal)", "count", mine, theirs, [], []));
        }

        // Memory rows at each precision: bf16 rows carry @bf16 (the baseline has no network and runs once).
        var memoryRows = precisions.SelectMany(p => Workload.MemoryRows(settings)
            .Where(m => p == "fp32" || m.Id != "mem.baseline")
            .Select(m => p == "fp32" ? m : m with { Id = m.Id + "@bf16", Measure = m.Measure + ", bf16" }));
        foreach (var memory in memoryRows.Where(m => Selected(m.Id, m.Suite)))
        {
            bool drift = memory.Id.StartsWith("mem.drift", StringComparison.Ordinal);
            string suffix = memory.Id.EndsWith("@bf16", StringComparison.Ordinal) ? "@bf16" : "";
            if (drift && settings.RssSteps <= 0) continue;
            Log($"memory row {memory.Id} (C#, own process)");
            var mine = PythonSide.CSharpMemory(settingsPath, memory.Id);
            Log($"memory row {memory.Id} C#: {mine}");
            JsonElement? theirs = null;
            if (pytorch)
            {
                Log($"memory row {memory.Id} (PyTorch, own process)");
                theirs = PythonSide.Memory(settingsPath, memory.Id);
                Log($"memory row {memory.Id} PyTorch: {theirs}");
            }
            double? Read(JsonElement? e, string field) => e is JsonElement j && j.TryGetProperty(field, out var v) ? v.GetDouble() : null;
            if (drift)
            {
                rows.Add(new Row("mem.drift.warm" + suffix, memory.Suite, $"RSS at toy MLP training step {settings.RssWarmStep}{(suffix.Length > 0 ? ", bf16" : "")}", "MB", Read(mine, "rss_warm_mb"), Read(theirs, "rss_warm_mb"), [], []));
                rows.Add(new Row("mem.drift.end" + suffix, memory.Suite, $"RSS at toy MLP training step {settings.RssSteps}{(suffix.Length > 0 ? ", bf16" : "")}", "MB", Read(mine, "rss_end_mb"), Read(theirs, "rss_end_mb"), [], []));
                rows.Add(new Row(memory.Id, memory.Suite, memory.Measure + " (target < 5%)", "%", Read(mine, "growth_percent"), Read(theirs, "growth_percent"), [], []));
            }
            else rows.Add(new Row(memory.Id, memory.Suite, memory.Measure, memory.Unit, Read(mine, "peak_mb"), Read(theirs, "peak_mb"), [], []));
        }

        if (pytorch)
        {
            Log("forward parity on shared weights (bench/pytorch/check_parity.py)");
            foreach (var result in PythonSide.Parity(Path.Combine(temp, "parity")))
            {
                string model = result.GetProperty("model").GetString()!;
                double diff = result.GetProperty("max_abs_diff").GetDouble();
                if (!result.GetProperty("pass").GetBoolean())
                    throw new UdmException($"forward parity failed for {model}: max |C# − PyTorch| = {diff:g3} (tolerance {result.GetProperty("tolerance").GetDouble():g1}), parameters C# {result.GetProperty("parameters_csharp")}, PyTorch {result.GetProperty("parameters_pytorch")}.");
                rows.Add(new Row($"parity.{model}", model == "unet" ? "unet" : "text", $"forward parity, {model}, shared weights: max abs difference C# vs PyTorch (≤ 1e-4)", "abs", diff, null, [], []));
            }
        }
        try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
        string command = "udm " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
        return new Report(settings.Name, MachineInfo.Describe(settings.Threads), pythonSide, command, rows) { Peaks = peaks };
    }

    private static double? Median(List<double> values) => values.Count == 0 ? null : ToyWorkload.Median(values);

    private static string Format(double? value, string unit) => value switch
    {
        null => "–",
        double v when unit == "abs" => v.ToString("0.0e+0", CultureInfo.InvariantCulture),
        double v when unit == "count" => v.ToString("N0", CultureInfo.InvariantCulture),
        double v when Math.Abs(v) >= 100 => v.ToString("0", CultureInfo.InvariantCulture),
        double v when Math.Abs(v) >= 10 => v.ToString("0.0", CultureInfo.InvariantCulture),
        double v => v.ToString("0.00", CultureInfo.InvariantCulture),
    };

    public static string Markdown(Report report)
    {
        var m = report.Machine;
        var p = report.PyTorchSide;
        var text = new StringBuilder();
        text.AppendLine($"### udm bench, {report.Settings} configuration, {m["date"]}");
        text.AppendLine();
        text.AppendLine($"- Machine: {m["cpu"]}, {m["cores"]} cores, {m["memory"]}, {m["os"]}");
        text.AppendLine($"- C#: {m["dotnet"]}, TorchSharp {m["torchsharp"]}, {m["libtorch"]}, {m["threads"]} threads");
        text.AppendLine(p.Count == 0 ? "- PyTorch: no timed rows run (add --pytorch)"
            : $"- PyTorch: Python {p.GetValueOrDefault("python")}, torch {p.GetValueOrDefault("torch")} ({p.GetValueOrDefault("blas")}), {p.GetValueOrDefault("threads")} threads");
        text.AppendLine($"- Command: `{report.Command}`");
        if (report.Peaks is { } k)
            text.AppendLine($"- Peaks, this run: {2048}² matmul {Format(k.MatmulFp32, "GFLOP/s")} GFLOP/s fp32, {Format(k.MatmulBf16, "GFLOP/s")} bf16; best 3×3 convolution of the UNet's shapes "
                + $"{Format(k.ConvFp32, "GFLOP/s")} GFLOP/s fp32 ({k.ConvFp32Shape}), {Format(k.ConvBf16, "GFLOP/s")} bf16 ({k.ConvBf16Shape}). "
                + "GFLOP/s counts the multiply-adds of convolutions, linear layers and attention (a training step is 3 forward passes' worth); % of peak is against the UNet convolution peak for UNet rows and the matmul peak otherwise, at the row's precision.");
        text.AppendLine("- Speed rows: median over interleaved rounds (C# round, then PyTorch round) after untimed warm-up; a train step is the median step of each round. "
            + "Random weights and random inputs of the right shapes (no data download); Analytic-DDIM's Γ is estimated untimed from random inputs, and both sides use C#'s step variances. "
            + "Memory rows run each in a fresh process (VmHWM/VmRSS from /proc on both sides).");
        text.AppendLine();
        text.AppendLine("| suite | measure | unit | C# | PyTorch | C#/PyTorch | C# GFLOP/s | % of peak | PyTorch GFLOP/s | bf16/fp32 C# | bf16/fp32 PyTorch |");
        text.AppendLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        static string Ratio(double? v) => v is double q ? q.ToString("0.00", CultureInfo.InvariantCulture) : "–";
        foreach (var row in report.Rows)
            text.AppendLine($"| {row.Suite} | {row.Measure} | {row.Unit} | {Format(row.CSharp, row.Unit)} | {Format(row.PyTorch, row.Unit)} | {Ratio(row.Ratio)} | "
                + $"{Format(row.CSharpGflops, "GFLOP/s")} | {(row.PeakPercent is double pc ? pc.ToString("0", CultureInfo.InvariantCulture) + "%" : "–")} | {Format(row.PyTorchGflops, "GFLOP/s")} | {Ratio(row.Bf16OverFp32)} | {Ratio(row.PyTorchBf16OverFp32)} |");
        text.AppendLine();
        text.Append("C#/PyTorch is C# time over PyTorch time (for samples/s, PyTorch rate over C# rate) and C# MB over PyTorch MB: below 1.00, C# is faster or smaller.");
        return text.ToString();
    }
}
