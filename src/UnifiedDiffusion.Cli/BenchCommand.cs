using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Runs;

namespace UnifiedDiffusion.Cli;

/// <summary>
/// `udm bench`: training-step time, sampler throughput and RSS of the toy model, optionally
/// interleaved with the PyTorch reference (bench/pytorch/toy_mlp.py) in the same run, as ratios.
/// </summary>
internal static class BenchCommand
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    public static Command Create()
    {
        var rounds = new Option<int>("--rounds") { Description = "interleaved measurement rounds; medians are reported", DefaultValueFactory = _ => 3 };
        var rssSteps = new Option<int>("--rss-steps") { Description = "training steps of the memory run (RSS at step 1000 and at the end); 0 skips it", DefaultValueFactory = _ => 20_000 };
        var pytorch = new Option<bool>("--pytorch") { Description = "also run the PyTorch reference (needs Debian's python3-torch: bench/install-pytorch.sh)" };
        var json = new Option<bool>("--json") { Description = "print the results as JSON instead of a Markdown table" };
        var threads = Options.Threads();
        var command = new Command("bench", "Measure the toy model: training step, samples per second per sampler, RSS over a long run; with --pytorch, the same against PyTorch as ratios.")
        {
            rounds, rssSteps, pytorch, json, threads,
        };
        command.SetAction(r =>
        {
            int threadCount = r.GetValue(threads) > 0 ? r.GetValue(threads) : Environment.ProcessorCount;
            Platform.SetThreads(threadCount);
            var rows = Run(Options.Positive(r, rounds, "--rounds"), r.GetValue(rssSteps), r.GetValue(pytorch), threadCount);
            if (r.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(rows, Json));
            else Print(rows, threadCount);
            return 0;
        });
        return command;
    }

    public sealed record Row(string Measure, string Unit, double CSharp, double? PyTorch)
    {
        /// <summary>C# time over PyTorch time (below 1 means C# is faster).</summary>
        public double? Ratio => PyTorch is double p ? (Unit == "ms" ? CSharp / p : p / CSharp) : null;
    }

    private const int SampleCount = 4000, SampleSteps = 50, TrainBatch = 512;

    private static List<Row> Run(int rounds, int rssSteps, bool pytorch, int threads)
    {
        var config = Recipes.Get("demo") with { Training = Recipes.Get("demo").Training with { BatchSize = TrainBatch } };
        var experiment = Experiment.Create(config);
        var samplers = GaussianSamplerSpec.Names.Select(n => new GaussianSamplerSpec(GaussianSamplerSpec.ParseKind(n), SampleSteps)).ToList();
        experiment.Gamma(GaussianSampling.Grid(samplers[0], experiment.Process.Steps), samplesPerLevel: 500); // untimed
        var trainer = experiment.CreateTrainer(config.Training with { Steps = 0, WarmupSteps = 0 });
        TrainSteps(trainer, 50); // warm-up

        var train = new List<double>();
        var throughput = samplers.ToDictionary(s => s.Name, _ => new List<double>());
        var python = new List<JsonElement>();
        for (int round = 0; round < rounds; round++)
        {
            train.Add(Median(TrainSteps(trainer, 200)));
            foreach (var spec in samplers)
            {
                using (experiment.Sample(spec, 256, 0)) { } // warm-up
                var clock = Stopwatch.StartNew();
                using (experiment.Sample(spec, SampleCount, round)) { }
                throughput[spec.Name].Add(SampleCount / clock.Elapsed.TotalSeconds);
            }
            if (pytorch) python.Add(RunPython(threads));
        }

        double? Py(string field) => python.Count == 0 ? null : Median(python.Select(p => p.GetProperty(field).GetDouble()).ToList());
        var rows = new List<Row> { new($"train step (MLP 3×256, batch {TrainBatch})", "ms", Median(train), Py("train_step_ms")) };
        foreach (var spec in samplers)
        {
            string? pyField = spec.Name switch { "ddim" => "ddim_samples_per_s", "ddpm" => "ddpm_samples_per_s", _ => null };
            rows.Add(new Row($"{spec.Name}, {SampleSteps} steps, {SampleCount} samples", "samples/s", Median(throughput[spec.Name]), pyField is null ? null : Py(pyField)));
        }
        if (python.Count > 0)
        {
            long csharpParams = experiment.Model.Network.parameters().Sum(p => p.numel());
            long pyParams = python[0].GetProperty("parameters").GetInt64();
            if (csharpParams != pyParams) throw new InvalidOperationException($"parameter counts differ: C# {csharpParams}, PyTorch {pyParams}");
            rows.Add(new Row("parameters (checked equal)", "count", csharpParams, pyParams));
        }
        if (rssSteps > 0)
        {
            var (atThousand, atEnd, peak) = MemoryRun(experiment, config, rssSteps);
            rows.Add(new Row("RSS at training step 1000", "MB", atThousand, null));
            rows.Add(new Row($"RSS at training step {rssSteps}", "MB", atEnd, null));
            rows.Add(new Row("peak RSS", "MB", peak, null));
        }
        return rows;
    }

    private static List<double> TrainSteps(Trainer trainer, int steps)
    {
        var times = new List<double>(steps);
        var clock = Stopwatch.StartNew();
        double last = 0;
        trainer.Options = trainer.Options with { Steps = (int)trainer.Step + steps };
        trainer.Run(null, new SyncProgress<TrainingProgress>(_ =>
        {
            double now = clock.Elapsed.TotalMilliseconds;
            times.Add(now - last);
            last = now;
        }));
        return times;
    }

    private static (double AtThousand, double AtEnd, double Peak) MemoryRun(Experiment experiment, ExperimentConfig config, int steps)
    {
        var trainer = experiment.CreateTrainer(config.Training with { Steps = steps });
        double atThousand = 0;
        ProgressView.Run("memory run", steps, report =>
            trainer.Run(null, new SyncProgress<TrainingProgress>(p =>
            {
                if (p.Step == Math.Min(1000, steps)) atThousand = Rss("VmRSS");
                if (p.Step % 100 == 0) report(p.Step, $"RSS {Rss("VmRSS"):F0} MB");
            })));
        return (atThousand, Rss("VmRSS"), Rss("VmHWM"));
    }

    /// <summary>A /proc/self/status field in MB (Linux).</summary>
    public static double Rss(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }

    private static JsonElement RunPython(int threads)
    {
        string script = Path.Combine(FindRepoRoot(), "bench", "pytorch", "toy_mlp.py");
        var info = new ProcessStartInfo("/usr/bin/python3", [script, "--threads", threads.ToString(), "--batch", TrainBatch.ToString(),
            "--sample-count", SampleCount.ToString(), "--sample-steps", SampleSteps.ToString()])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        // Debian's OpenBLAS cannot identify this CPU (model name "Intel(R) Xeon(R) Processor") and falls
        // back to a generic kernel: 34 instead of 187 GFLOP/s on a 2048² matmul. Name the core for it,
        // so the reference is not handicapped; an explicit setting of the user's is kept.
        if (Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is null && HasAvx512())
            info.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        Process process;
        try { process = Process.Start(info)!; }
        catch (System.ComponentModel.Win32Exception) { throw new UdmException("--pytorch needs /usr/bin/python3 with Debian's python3-torch; run bench/install-pytorch.sh."); }
        string stdout = process.StandardOutput.ReadToEnd(), stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new UdmException($"the PyTorch reference failed ({stderr.Trim().Split('\n').LastOrDefault()}); run bench/install-pytorch.sh.");
        return JsonDocument.Parse(stdout.Trim().Split('\n').Last()).RootElement.Clone();
    }

    private static bool HasAvx512() =>
        File.Exists("/proc/cpuinfo") && File.ReadLines("/proc/cpuinfo").Any(l => l.StartsWith("flags", StringComparison.Ordinal) && l.Contains(" avx512f"));

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "bench", "pytorch", "toy_mlp.py"))) return dir.FullName;
        throw new UdmException("cannot find bench/pytorch/toy_mlp.py; run `udm bench --pytorch` from inside the repository.");
    }

    private static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    private static void Print(List<Row> rows, int threads)
    {
        Console.WriteLine($"TorchSharp {typeof(torch).Assembly.GetName().Version}, {threads} threads, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
        Console.WriteLine();
        Console.WriteLine("| measure | unit | C# | PyTorch | ratio (C# time / PyTorch time) |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var row in rows)
            Console.WriteLine($"| {row.Measure} | {row.Unit} | {row.CSharp:0.##} | {(row.PyTorch is double p ? p.ToString("0.##") : "–")} | {(row.Ratio is double q ? q.ToString("0.00") : "–")} |");
    }
}
