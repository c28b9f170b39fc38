using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Training;

/// <summary>Trainer, checkpoint and resume: exactness, atomicity, and the failure paths.</summary>
// Alone: exact-resume and same-seed checks need network initialisation, which draws from the global generator,
// to see no other thread drawing from it between the seed and the draws.
[Collection(nameof(UnifiedDiffusion.Tests.Runs.GoldenOutputCollection))]
public sealed class TrainingTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-train-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    internal static ExperimentConfig Small(int steps, int checkpointEvery = 10, int hidden = 32) => new()
    {
        Data = "gmm8",
        Network = new MlpConfig(Hidden: hidden, Depth: 1, TimeEmbedding: 16),
        Training = new TrainingOptions(Steps: steps, BatchSize: 64, LearningRate: 1e-3, WarmupSteps: 5, Seed: 7, CheckpointEvery: checkpointEvery, LogEvery: 5),
    };

    [Fact]
    public void ResumedRunContinuesExactlyLikeAnUninterruptedOne()
    {
        string full = Path.Combine(_root, "full"), split = Path.Combine(_root, "split");
        var reference = Experiment.Create(Small(30));
        Assert.Equal(TrainingOutcome.Completed, reference.Train(full));
        var referenceLosses = Checkpoint.Load(Path.Combine(full, Checkpoint.FileName)).Losses;

        // Interrupt after step 12 (as Ctrl-C does): the trainer saves a checkpoint and stops.
        using var cts = new CancellationTokenSource();
        var first = Experiment.Create(Small(30));
        var outcome = first.Train(split, progress: new Inline(p => { if (p.Step == 12) cts.Cancel(); }), cancel: cts.Token);
        Assert.Equal(TrainingOutcome.Interrupted, outcome);
        Assert.Equal(12, Checkpoint.Load(Path.Combine(split, Checkpoint.FileName)).Step);

        var resumed = Experiment.Create(Small(30));
        Assert.Equal(TrainingOutcome.Completed, resumed.Train(split, resume: true));
        var resumedState = Checkpoint.Load(Path.Combine(split, Checkpoint.FileName));
        Assert.Equal(30, referenceLosses.Length);
        Assert.Equal(referenceLosses, resumedState.Losses); // bitwise: the float arrays are equal element by element
        Assert.Equal(Checkpoint.Load(Path.Combine(full, Checkpoint.FileName)).Ema, resumedState.Ema);
    }

    [Fact]
    public void SameSeedGivesSameRunAndLossGoesDown()
    {
        var a = Experiment.Create(Small(300, checkpointEvery: 300));
        var b = Experiment.Create(Small(300, checkpointEvery: 300));
        a.Train(Path.Combine(_root, "a"));
        b.Train(Path.Combine(_root, "b"));
        var la = Checkpoint.Load(Path.Combine(_root, "a", Checkpoint.FileName)).Losses;
        var lb = Checkpoint.Load(Path.Combine(_root, "b", Checkpoint.FileName)).Losses;
        Assert.Equal(la, lb);
        Assert.True(la.TakeLast(50).Average() < 0.8 * la.Take(50).Average(), $"loss did not go down: first 50 {la.Take(50).Average()}, last 50 {la.TakeLast(50).Average()}");
        Assert.True(File.Exists(Path.Combine(_root, "a", Experiment.Files.LossPng)));
        Assert.Equal(301, File.ReadAllLines(Path.Combine(_root, "a", Experiment.Files.LossCsv)).Length);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(_root, "a", Experiment.Files.TensorBoard), "*tfevents*", SearchOption.AllDirectories));
    }

    [Theory]
    [InlineData("fp32")]
    [InlineData("bf16")]
    public void NonFiniteLossStopsWithMessageAndKeepsLastGoodCheckpoint(string precision)
    {
        if (precision == "bf16" && !UnifiedDiffusion.Tests.Networks.PrecisionTests.Bf16Units()) return;
        string dir = Path.Combine(_root, "nan-" + precision);
        var network = new MlpDenoiser(2, new MlpConfig(16, 1, 8));
        Precisions.Apply(network, Precisions.Parse(precision));
        int calls = 0;
        Tensor Loss(Tensor x0, Generator g)
        {
            var loss = network.forward(x0, torch.ones(x0.shape[0], dtype: ScalarType.Int64)).pow(2).mean();
            return ++calls == 5 ? loss * double.NaN : loss;
        }
        var trainer = new Trainer(network, Loss, UnifiedDiffusion.Data.ToyData.Create("gmm8"), new TrainingOptions(Steps: 10, BatchSize: 8, CheckpointEvery: 2), "{}");
        var error = Assert.Throws<UdmException>(() => trainer.Run(dir));
        Assert.Contains("NaN", error.Message);
        Assert.Contains("step 5", error.Message);
        var kept = Checkpoint.Load(Path.Combine(dir, Checkpoint.FileName));
        Assert.Equal(4, kept.Step);
        Assert.All(kept.Losses, l => Assert.True(float.IsFinite(l))); // the kept checkpoint predates the NaN
    }

    [Fact]
    public void ASecondWriterIsRefusedNamingThePidAndAStaleLockIsTakenOver()
    {
        string dir = Path.Combine(_root, "locked");
        Directory.CreateDirectory(dir);
        using (var other = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sleep", "60") { UseShellExecute = false })!)
        {
            File.WriteAllText(Path.Combine(dir, RunLock.FileName), other.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var (code, error) = UnifiedDiffusion.Tests.Cli.CliTests.Run("train", "gmm8", "--steps", "2", "--out", dir);
            Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
            Assert.Contains($"is in use by process {other.Id}", error);
            Assert.False(File.Exists(Path.Combine(dir, Checkpoint.FileName)));
            other.Kill();
            other.WaitForExit();
        }
        // The holder is gone: its lock is stale and the next training takes it over, then releases it.
        Assert.Equal(TrainingOutcome.Completed, Experiment.Create(Small(3, checkpointEvery: 3)).Train(dir));
        Assert.False(File.Exists(Path.Combine(dir, RunLock.FileName)));
    }

    [Fact]
    public void StaleTemporaryFilesAreRemovedAtTheNextWriteAndLiveOnesKept()
    {
        string dir = Path.Combine(_root, "stale");
        Directory.CreateDirectory(dir);
        string stale = Path.Combine(dir, Checkpoint.FileName + ".tmp-999999999-0123"), live = Path.Combine(dir, Checkpoint.FileName + $".tmp-{Environment.ProcessId}-4567");
        File.WriteAllText(stale, "left by a killed write");
        File.WriteAllText(live, "being written by a live process");
        Experiment.Create(Small(3, checkpointEvery: 3)).Train(dir);
        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(live));
    }

    [Fact]
    public void AResumeThatStopsOnNaNLeavesConfigAsItWas()
    {
        string dir = Path.Combine(_root, "commit");
        Experiment.Create(Small(6, checkpointEvery: 3)).Train(dir);
        string configPath = Path.Combine(dir, Experiment.Files.Config), before = File.ReadAllText(configPath);
        var (code, error) = UnifiedDiffusion.Tests.Cli.CliTests.Run("train", "--out", dir, "--resume", "--steps", "12", "--lr", "1e30");
        Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
        Assert.Contains("the loss became", error);
        Assert.Equal(before, File.ReadAllText(configPath));
        Assert.Equal(6, Checkpoint.Load(Path.Combine(dir, Checkpoint.FileName)).Step);
        // Under options that train, the new ones are committed with the first checkpoint.
        Assert.Equal(0, UnifiedDiffusion.Tests.Cli.CliTests.Run("train", "--out", dir, "--resume", "--steps", "9").Code);
        Assert.Equal(9, ExperimentConfig.Load(configPath).Training.Steps);
    }

    [Fact]
    public void AFullDiskStopsTrainingInOneLineAndThePreviousCheckpointLoads()
    {
        string mount = Path.Combine(_root, "small-disk");
        Directory.CreateDirectory(mount);
        var (mounted, why) = Shell("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount);
        if (mounted != 0)
        {
            Console.WriteLine($"AFullDiskStopsTraining… skipped: cannot mount a small tmpfs here ({why.Trim()})");
            return;
        }
        try
        {
            string run = Path.Combine(mount, "run");
            Assert.Equal(TrainingOutcome.Completed, Experiment.Create(Small(6, checkpointEvery: 3)).Train(run));
            // Fill the rest of the disk, then resume: the next checkpoint cannot be written.
            using (var filler = new FileStream(Path.Combine(mount, "filler"), FileMode.Create))
            {
                var block = new byte[64 * 1024];
                try { while (true) filler.Write(block); }
                catch (IOException) { }
            }
            var (code, error) = UnifiedDiffusion.Tests.Cli.CliTests.Run("train", "--out", run, "--resume", "--steps", "9");
            Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
            Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains("no space left on the device", error);
            Assert.Equal(6, Checkpoint.Load(Path.Combine(run, Checkpoint.FileName)).Step);
            Assert.Empty(Directory.GetFiles(run, "*.tmp-*"));
        }
        finally
        {
            Shell("umount", mount);
        }
    }

    private static (int Code, string Error) Shell(string program, params string[] args)
    {
        try
        {
            using var process = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(program, args) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            string error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, error);
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }

    [Fact]
    public void AKilledTrainingProcessResumesToTheUninterruptedResult()
    {
        int threads = torch.get_num_threads();
        var config = Small(80, checkpointEvery: 5);
        string full = Path.Combine(_root, "uninterrupted"), killed = Path.Combine(_root, "killed"), configPath = Path.Combine(_root, "small.json");
        Experiment.Create(config).Train(full);
        File.WriteAllText(configPath, config.ToJson());
        var info = new System.Diagnostics.ProcessStartInfo("dotnet", [typeof(UnifiedDiffusion.Cli.CommandLine).Assembly.Location, "train", configPath, "--out", killed, "--threads", threads.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        using (var process = System.Diagnostics.Process.Start(info)!)
        {
            // SIGKILL as soon as a checkpoint exists: mid-step or mid-write, wherever it lands.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(killed, Checkpoint.FileName)) && !process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(2)) Thread.Sleep(5);
            if (!process.HasExited) process.Kill();
            process.WaitForExit();
        }
        Assert.True(File.Exists(Path.Combine(killed, Checkpoint.FileName)), "the child wrote no checkpoint");
        var (code, error) = UnifiedDiffusion.Tests.Cli.CliTests.Run("train", "--out", killed, "--resume", "--threads", threads.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, error);
        var a = Checkpoint.Load(Path.Combine(full, Checkpoint.FileName));
        var b = Checkpoint.Load(Path.Combine(killed, Checkpoint.FileName));
        Assert.Equal(80, b.Step);
        Assert.Equal(a.Losses, b.Losses);
        Assert.Equal(a.Ema, b.Ema);
    }

    [Fact]
    public void KilledWriteNeverCorruptsThePreviousCheckpoint()
    {
        string path = Path.Combine(_root, "ckpt", Checkpoint.FileName);
        var good = new CheckpointState(3, "{\"a\":1}", [1, 2, 3], [4, 5], [6], [7, 8], [0.5f, 0.25f, 0.125f]);
        Checkpoint.Save(path, good);
        // A write that dies half-way (process killed, disk full): the old file must survive untouched.
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            Checkpoint.Write(s, good with { Step = 4 });
            s.Flush();
            throw new IOException("simulated kill during write");
        }));
        var loaded = Checkpoint.Load(path);
        Assert.Equal(3, loaded.Step);
        Assert.Equal(good.Losses, loaded.Losses);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!)); // no temporary file left behind
    }

    [Fact]
    public void TruncatedCorruptOrForeignCheckpointsGiveOneLineErrors()
    {
        string path = Path.Combine(_root, "bad", Checkpoint.FileName);
        Checkpoint.Save(path, new CheckpointState(1, "{}", [1, 2, 3, 4], [5], [6], [7], [1f]));
        var bytes = File.ReadAllBytes(path);

        File.WriteAllBytes(path, bytes[..^3]);
        Assert.Contains("corrupt or truncated", Assert.Throws<UdmException>(() => Checkpoint.Load(path)).Message);

        var flipped = (byte[])bytes.Clone();
        flipped[^5] ^= 0xFF;
        File.WriteAllBytes(path, flipped);
        Assert.Contains("corrupt or truncated", Assert.Throws<UdmException>(() => Checkpoint.Load(path)).Message);

        // A header length near int.MaxValue must not overflow into an out-of-range read.
        File.WriteAllBytes(path, [.. bytes[..9], .. BitConverter.GetBytes(int.MaxValue), .. bytes[13..]]);
        Assert.Contains("corrupt or truncated", Assert.Throws<UdmException>(() => Checkpoint.Load(path)).Message);

        File.WriteAllText(path, "hello, not a checkpoint");
        Assert.Contains("not a UnifiedDiffusion checkpoint", Assert.Throws<UdmException>(() => Checkpoint.Load(path)).Message);

        File.Delete(path);
        Assert.Contains("no checkpoint", Assert.Throws<UdmException>(() => Checkpoint.Load(path)).Message);
    }

    [Fact]
    public void CheckpointFromAnotherConfigIsRefused()
    {
        string dir = Path.Combine(_root, "mismatch");
        Experiment.Create(Small(5, checkpointEvery: 5)).Train(dir);
        // Resuming with a different network: refused before any weight is touched.
        var other = Experiment.Create(Small(10, checkpointEvery: 5, hidden: 48));
        Assert.Contains("different configuration", Assert.Throws<UdmException>(() => other.Train(dir, resume: true)).Message);
        // Loading a run whose config.json was edited to another network.
        File.WriteAllText(Path.Combine(dir, Experiment.Files.Config), Small(5, hidden: 48).ToJson());
        Assert.Contains("different config", Assert.Throws<UdmException>(() => Experiment.Load(dir)).Message);
        // Training into a folder that already holds a run without resuming: the library names the setting, not a flag.
        var again = Assert.Throws<UdmException>(() => Experiment.Create(Small(5)).Train(dir));
        Assert.Contains("already holds a checkpoint; resume it", again.Message);
        Assert.DoesNotContain("--", again.Message);
        Assert.Equal("resume", again.Subject);
    }

    private sealed class Inline(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}
