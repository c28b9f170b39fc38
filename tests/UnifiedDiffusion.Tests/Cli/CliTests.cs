using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Training;
using Xunit;

namespace UnifiedDiffusion.Tests.Cli;

/// <summary>Every user error gets one line that says what is wrong and what to do, and exit code 2.</summary>
public sealed class CliTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-cli-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>
    /// Runs the CLI with the console captured, under one lock for every test: commands print tables and
    /// JSON with Console.WriteLine too, which would otherwise land in another test's captured output.
    /// </summary>
    internal static (int Code, string Output, string Error) RunCaptured(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code;
        lock (ConsoleLock.Gate)
        {
            var stdout = Console.Out;
            Console.SetOut(output);
            try { code = CommandLine.Run(args, output, error); }
            finally { Console.SetOut(stdout); }
        }
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Runs the CLI; returns the exit code and what went to standard error.</summary>
    internal static (int Code, string Error) Run(params string[] args)
    {
        var (code, _, error) = RunCaptured(args);
        return (code, error);
    }

    /// <summary>Runs the CLI; returns the exit code and what was printed.</summary>
    internal static (int Code, string Output) RunPrinting(params string[] args)
    {
        var (code, output, _) = RunCaptured(args);
        return (code, output);
    }

    /// <summary>A user error: exit code 2 and one line "udm: error: …" holding <paramref name="expected"/>, no stack trace.</summary>
    internal static void AssertOneLineError((int Code, string Error) result, string expected)
    {
        Assert.Equal(CommandLine.UserError, result.Code);
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("udm: error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", result.Error);
    }

    [Fact]
    public void UnknownOptionAndCommand() 
    {
        AssertOneLineError(Run("sample", "--run", "x", "--bogus"), "--bogus");
        AssertOneLineError(Run("frobnicate"), "frobnicate");
    }

    [Fact]
    public void BadNamesAndValues()
    {
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "euler"), "unknown sampler \"euler\"");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddim", "--eta", "1.5"), "--eta 1.5");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--steps", "0"), "--steps");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--steps", "5000"), "out of range");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--grid", "10,20,0"), "strictly descending");
        AssertOneLineError(Run("eval", "--oracle", "moons"), "gmm8 or gmm25");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--count", "0"), "--count");
        AssertOneLineError(Run("eval"), "give one of --run");
        AssertOneLineError(Run("train", "nosuchrecipe", "--out", Path.Combine(Path.GetTempPath(), "never-created")), "unknown recipe");
        AssertOneLineError(Run("recipes", "nope"), "unknown recipe");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "analytic-ddim", "--eta", "3"), "--eta 3");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--grid", "999,600,300,100,0", "--steps", "10"), "has 4 steps");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddim", "--steps", "10,20", "--gamma", "median"), "unknown --gamma");
    }

    [Fact]
    public void AnOptionTheSamplerDoesNotTakeIsAnErrorNamingTheFlagAndTheSamplersThatTakeIt()
    {
        // Once silently ignored: η with ddpm, Γ with ddim, generation on a Gaussian run.
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddpm", "--eta", "0.5"), "--eta: η does not apply to the ddpm sampler of the gaussian family; it applies to ddim, analytic-ddim");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddim", "--gamma", "residual"), "--gamma: the Γ estimator does not apply to the ddim sampler");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddim", "--generate"), "--generate: generation from the prior does not apply");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--sampler", "ddim", "--order", "confident"), "no gaussian sampler takes it");
        // Help and listings derive from the registries.
        string help = RunPrinting("sample", "--help").Output.Replace("\n", " ");
        Assert.Contains("tacos (alias improved", help);
        Assert.Contains("fill (alias improved, order)", help);
        // The library names the value; the CLI adds the flag.
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--steps", "5000"), "--steps: the step count 5000 is out of range");
    }

    [Fact]
    public void BadConfigFilesGiveOneLineErrors()
    {
        string nulls = Path.Combine(_root, "nulls.json"), zero = Path.Combine(_root, "zero.json"), typo = Path.Combine(_root, "typo.json");
        File.WriteAllText(nulls, "{ \"data\": null }");
        File.WriteAllText(zero, "{ \"data\": \"gmm8\", \"training\": { \"checkpointEvery\": 0 } }");
        File.WriteAllText(typo, "{ \"data\": \"gmm8\", \"trainig\": {} }");
        AssertOneLineError(Run("train", nulls, "--out", Path.Combine(_root, "a")), "not a valid config");
        AssertOneLineError(Run("train", zero, "--out", Path.Combine(_root, "b")), "checkpointEvery must be at least 1");
        AssertOneLineError(Run("train", typo, "--out", Path.Combine(_root, "c")), "not a valid config");
        AssertOneLineError(Run("train", Path.Combine(_root, "missing.json"), "--out", Path.Combine(_root, "d")), "does not exist");
    }

    [Fact]
    public void MissingCorruptAndMismatchedRuns()
    {
        AssertOneLineError(Run("sample", "--run", Path.Combine(_root, "missing")), "does not exist");

        string run = Path.Combine(_root, "run");
        Experiment.Create(TrainingTests.Small(3, checkpointEvery: 3)).Train(run);
        string checkpoint = Path.Combine(run, Checkpoint.FileName);
        var bytes = File.ReadAllBytes(checkpoint);
        File.WriteAllBytes(checkpoint, bytes[..(bytes.Length / 2)]);
        AssertOneLineError(Run("sample", "--run", run), "corrupt or truncated");

        File.WriteAllBytes(checkpoint, bytes);
        File.WriteAllText(Path.Combine(run, Experiment.Files.Config), "{ \"data\": \"gmm8\", \"netwrk\": {} }");
        AssertOneLineError(Run("sample", "--run", run), "not a valid config");

        File.WriteAllText(Path.Combine(run, Experiment.Files.Config), TrainingTests.Small(3, hidden: 64).ToJson());
        AssertOneLineError(Run("sample", "--run", run), "different config");

        File.WriteAllText(Path.Combine(run, Experiment.Files.Config), TrainingTests.Small(3).ToJson());
        AssertOneLineError(Run("sample", "--run", run, "--out", Path.Combine(_root, "x.gif")), ".png or .csv");
    }

    [Fact]
    public void EvalAllRunsEverySamplerOfTheRegistry()
    {
        var (code, output) = RunPrinting("eval", "--oracle", "gmm8", "--sampler", "all", "--steps", "5", "--count", "200", "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        Assert.Equal(GaussianSamplers.Registry.Names, doc.RootElement.EnumerateArray().Select(row => row.GetProperty("sampler").GetString()));
    }

    /// <summary>
    /// --churn adds the mean churn to each sampler's row, and --churn-plot draws it per step. On gmm8 with
    /// the exact denoiser (seed 1), DDPM's fresh noise moves the estimate of x_0 about twice as far per
    /// step as DDIM (0.34 against 0.18 at 10 steps); the test asks for 1.5×.
    /// </summary>
    [Fact]
    public void ChurnIsReportedPerSamplerAndPlotted()
    {
        string plot = Path.Combine(_root, "churn.png");
        var (code, output) = RunPrinting("eval", "--oracle", "gmm8", "--sampler", "ddpm,ddim", "--steps", "10", "--count", "500", "--churn", "--churn-plot", plot, "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var churn = doc.RootElement.EnumerateArray().ToDictionary(row => row.GetProperty("sampler").GetString()!, row => row.GetProperty("churn").GetDouble());
        Assert.True(churn["ddim"] > 0 && double.IsFinite(churn["ddim"]));
        Assert.True(churn["ddpm"] > 1.5 * churn["ddim"], $"ddpm {churn["ddpm"]}, ddim {churn["ddim"]}");
        Assert.True(new FileInfo(plot).Length > 1000);
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--churn-plot", plot), "add --churn");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--churn", "--churn-plot", Path.Combine(_root, "churn.txt")), "--churn-plot:");
    }

    /// <summary>The commands an error suggests (between backticks, starting with udm), as argument lists.</summary>
    private static List<string[]> Suggested(string error) =>
        [.. System.Text.RegularExpressions.Regex.Matches(error, "`udm ([^`]*)`").Select(m => m.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries))];

    [Fact]
    public void AdviceThatNamesACommandWorksWhenRun()
    {
        // --run at an empty folder, at a missing one, and at the checkpoint file.
        string empty = Path.Combine(_root, "empty-run");
        Directory.CreateDirectory(empty);
        var (_, error) = Run("sample", "--run", empty);
        AssertOneLineError((2, error), "--run: ");
        var commands = Suggested(error);
        Assert.Contains(commands, c => c[0] == "train");
        foreach (var command in commands)  // the recipe's budget is cut to 2 steps: the test checks that the command runs
            Assert.Equal(0, RunPrinting([.. command, .. command[0] == "train" ? new[] { "--steps", "2" } : []]).Code);
        Assert.Equal(0, RunPrinting("sample", "--run", empty, "--out", Path.Combine(_root, "p.csv")).Code);

        (_, error) = Run("sample", "--run", Path.Combine(empty, Checkpoint.FileName));
        AssertOneLineError((2, error), $"--run takes the run folder that holds it, {empty}");

        string missing = Path.Combine(_root, "missing-run");
        (_, error) = Run("eval", "--run", missing);
        Assert.All(Suggested(error), command => Assert.Equal(0, RunPrinting([.. command, .. command[0] == "train" ? new[] { "--steps", "2" } : []]).Code));
        Assert.True(File.Exists(Path.Combine(missing, Checkpoint.FileName)));

        // A run folder whose training stopped before its first checkpoint.
        string unfinished = Path.Combine(_root, "unfinished");
        Directory.CreateDirectory(unfinished);
        File.WriteAllText(Path.Combine(unfinished, Experiment.Files.Config), TrainingTests.Small(3, checkpointEvery: 3).ToJson());
        (_, error) = Run("sample", "--run", unfinished);
        AssertOneLineError((2, error), "its training stopped before the first one");
        foreach (var command in Suggested(error)) Assert.Equal(0, RunPrinting(command).Code);
        Assert.Equal(0, RunPrinting("sample", "--run", unfinished, "--out", Path.Combine(_root, "q.csv")).Code);

        // An empty text file is blamed on the file, not on the cache.
        string text = Path.Combine(_root, "empty.txt");
        File.WriteAllText(text, "");
        string config = Path.Combine(_root, "text.json");
        File.WriteAllText(config, $$"""{ "family": "mask", "data": "text:{{text.Replace("\\", "\\\\")}}" }""");
        AssertOneLineError(Run("train", config, "--out", Path.Combine(_root, "t")), "gives no training sequences: it is empty or shorter");
    }

    [Fact]
    public void OutputsAreBoundedAndCheckedBeforeSamplingAndCsvIsStreamedInChunks()
    {
        string run = Path.Combine(_root, "points");
        Experiment.Create(TrainingTests.Small(3, checkpointEvery: 3)).Train(run);
        AssertOneLineError(Run("sample", "--run", run, "--count", "200000", "--out", Path.Combine(_root, "p.png")), "--count: a scatter plot shows at most 100,000 points");
        AssertOneLineError(Run("sample", "--run", run, "--out", Path.Combine(_root, "p.gif")), "--out: ");
        Assert.False(File.Exists(Path.Combine(_root, "p.png")));
        // 70,000 points: two sampling batches of at most 65,536 and two CSV chunks.
        string csv = Path.Combine(_root, "p.csv");
        Assert.Equal(0, RunPrinting("sample", "--run", run, "--count", "70000", "--steps", "2", "--out", csv).Code);
        var lines = File.ReadAllLines(csv);
        Assert.Equal(70000, lines.Length);
        Assert.All(new[] { lines[0], lines[65535], lines[65536], lines[^1] }, line => Assert.Equal(2, line.Split(',').Length));
        Assert.All(lines.Take(1000), line => Assert.True(double.IsFinite(double.Parse(line.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture))));

        // A trajectory of points: a strip of scatter plots (8 steps and the samples), and the same samples as without it.
        string plain = Path.Combine(_root, "plain.csv"), traced = Path.Combine(_root, "traced.csv"), strip = Path.Combine(_root, "strip.png");
        Assert.Equal(0, RunPrinting("sample", "--run", run, "--count", "300", "--steps", "10", "--sampler", "ddpm", "--out", plain).Code);
        var (tracedCode, tracedOutput) = RunPrinting("sample", "--run", run, "--count", "300", "--steps", "10", "--sampler", "ddpm", "--out", traced, "--trajectory", strip);
        Assert.Equal(0, tracedCode);
        Assert.Contains("over 10 steps (the sheet shows 8 of them", tracedOutput); // subsampled, and said
        Assert.Equal(File.ReadAllLines(plain), File.ReadAllLines(traced));
        using (var image = SkiaSharp.SKBitmap.Decode(strip)) Assert.Equal(9 * 300, image.Width);
        AssertOneLineError(Run("sample", "--run", run, "--trajectory", Path.Combine(_root, "t.txt")), "--trajectory: ");
    }

    [Fact]
    public void ValuesAreCheckedInTheUsersWordsBeforeAnyWork()
    {
        string never = Path.Combine(_root, "never");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--count", "abc"), "--count: \"abc\" is not a whole number, e.g. 10");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--eta", "x"), "--eta: \"x\" is not a number, e.g. 0.5");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--grid", "999,,0"), "--grid: time grid \"999,,0\" has an empty item");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--grid", "999,500,-1"), "--grid: time grid level -1 is negative");
        AssertOneLineError(Run("eval", "--oracle", "gmm8", "--grid", "2000,500,0"), "--grid: time grid level 2000 is outside 0..1000");
        AssertOneLineError(Run("train", "gmm8", "--out", never, "--threads", "-1"), "--threads: -1 is out of range");
        AssertOneLineError(Run("train", "gmm8", "--out", never, "--threads", "100000"), "--threads: 100000 is out of range");
        string empty = Path.Combine(_root, "empty.json");
        File.WriteAllText(empty, "{}");
        AssertOneLineError(Run("train", empty, "--out", never), "names no \"data\"");
        string typed = Path.Combine(_root, "typed.json");
        File.WriteAllText(typed, "{\"data\": \"gmm8\", \"training\": {\"steps\": \"many\"}}");
        var (_, error) = Run("train", typed, "--out", never);
        AssertOneLineError((2, error), "at $.training.steps");
        Assert.DoesNotContain("System.", error);
        Assert.DoesNotContain("UnifiedDiffusion.", error);
        Assert.False(Directory.Exists(never));
        // The advice works: `udm recipes gmm8` prints a config that trains.
        var (code, json) = RunPrinting("recipes", "gmm8");
        Assert.Equal(0, code);
        Assert.Contains("\"data\": \"gmm8\"", json);
    }

    [Fact]
    public void EvalDataRowPutsRealSamplesThroughTheSameMetricsOnce()
    {
        string run = Path.Combine(_root, "data-row");
        Experiment.Create(TrainingTests.Small(3, checkpointEvery: 3)).Train(run);
        var (code, output) = RunPrinting("eval", "--run", run, "--sampler", "data,ddim", "--steps", "3,5", "--count", "1000", "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        var rows = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(["data", "ddim", "ddim"], rows.Select(row => row.GetProperty("sampler").GetString()));
        Assert.Equal(0, rows[0].GetProperty("steps").GetInt32());
        Assert.Equal(1000, rows[0].GetProperty("count").GetInt32());
        // Fresh draws of the ring sit at sliced W2's finite-n floor (0.1–0.2 at n = 1,000, two independent
        // sets); a network trained for 3 steps is far above it.
        double data = rows[0].GetProperty("sliced_w2").GetDouble(), model = rows[1].GetProperty("sliced_w2").GetDouble();
        Assert.InRange(data, 0.01, 0.3);
        Assert.True(model > 2 * data, $"data row {data}, 3-step model {model}");
        var (oracleCode, oracleRow) = RunPrinting("eval", "--oracle", "gmm8", "--sampler", "data", "--count", "1000", "--json");
        Assert.Equal(0, oracleCode);
        Assert.InRange(System.Text.Json.JsonDocument.Parse(oracleRow).RootElement.GetProperty("sliced_w2").GetDouble(), 0.01, 0.3);
    }

    [Fact]
    public void LossOverlaysRunsInOnePng()
    {
        string a = Path.Combine(_root, "loss-a"), b = Path.Combine(_root, "loss-b"), png = Path.Combine(_root, "overlay.png");
        Experiment.Create(TrainingTests.Small(6, checkpointEvery: 6)).Train(a);
        Experiment.Create(TrainingTests.Small(4, checkpointEvery: 4)).Train(b);
        var (code, output) = RunPrinting("loss", a, b, "--out", png);
        Assert.Equal(0, code);
        Assert.Contains("loss-a (6 steps", output);
        Assert.Contains("loss-b (4 steps", output);
        using var image = SkiaSharp.SKBitmap.Decode(png);
        Assert.Equal(800, image.Width);
        AssertOneLineError(Run("loss", _root, "--out", png), "has no loss.csv");
    }

    [Fact]
    public void OracleEvalPrintsJsonWithSlicedW2AndLogDensity()
    {
        var (code, output) = RunPrinting("eval", "--oracle", "gmm8", "--sampler", "ddim", "--steps", "20", "--count", "500", "--json");
        Assert.Equal(0, code);
        using var doc = System.Text.Json.JsonDocument.Parse(output);
        double w2 = doc.RootElement.GetProperty("sliced_w2").GetDouble();
        double logDensity = doc.RootElement.GetProperty("log_density").GetDouble();
        Assert.InRange(w2, 0, 0.5);
        Assert.True(double.IsFinite(logDensity));
    }
}

internal static class ConsoleLock
{
    public static readonly Lock Gate = new();
}

/// <summary>The error boundary: file-system errors are one line with advice; anything else is an internal error.</summary>
public sealed class ErrorBoundaryTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-boundary-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData(28, "no space left on the device")]
    [InlineData(30, "the file system is read-only")]
    [InlineData(20, "a path goes through a file")]
    [InlineData(17, "a path goes through a file")]
    [InlineData(13, "permission denied")]
    [InlineData(5, "input/output error")]
    public void IoErrorsBecomeOneLineWithAdvice(int errno, string expected)
    {
        string? message = ErrorBoundary.Describe(new IOException("Some failure : '/x/y'", errno));
        Assert.NotNull(message);
        Assert.StartsWith(expected, message);
        Assert.DoesNotContain("\n", message);
    }

    [Fact]
    public void WrappedAndUnknownErrorsAreSortedOut()
    {
        Assert.StartsWith("permission denied", ErrorBoundary.Describe(ErrorBoundary.Unwrap(new AggregateException(new UnauthorizedAccessException("Access to the path '/r' is denied.")))));
        Assert.Null(ErrorBoundary.Describe(new InvalidOperationException("a defect")));
    }

    [Fact]
    public void AnOutputPathThroughAFileIsOneLine()
    {
        string file = Path.Combine(_root, "plain-file");
        File.WriteAllText(file, "x");
        var (code, error) = CliTests.Run("train", "gmm8", "--steps", "1", "--out", Path.Combine(file, "run"));
        Assert.Equal(CommandLine.UserError, code);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("a path goes through a file", error);
        Assert.DoesNotContain("   at ", error);
    }
}

/// <summary>Progress lines for logs (non-terminal output).</summary>
public sealed class ProgressViewTests
{
    [Fact]
    public void ClockShowsHoursOnceAnHourHasPassed()
    {
        Assert.Equal("04:53", ProgressView.Clock(TimeSpan.FromSeconds(293)));
        Assert.Equal("1:04:53", ProgressView.Clock(TimeSpan.FromSeconds(3893)));
        Assert.Equal("26:00:00", ProgressView.Clock(TimeSpan.FromHours(26)));
    }
}
