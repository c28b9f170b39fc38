using System.Text.Json;
using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using Xunit;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>
/// What a run records for its model card: training sessions with their wall time and command
/// (training.json), evaluations with theirs (eval.json, udm eval --record), checkpoints kept along
/// training (--keep-every) and evaluated in turn (udm eval --checkpoints), and the card that
/// udm export writes from them.
/// </summary>
[Collection(nameof(FamilyRunCollection))]
public sealed class RunRecordsTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-records-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static JsonElement[] Rows(string json) => JsonDocument.Parse(json).RootElement.EnumerateArray().ToArray();

    [Fact]
    public void SessionsEvaluationsAndKeptCheckpointsReachTheModelCard()
    {
        string config = Path.Combine(_root, "tiny.json"), run = Path.Combine(_root, "run");
        File.WriteAllText(config, new ExperimentConfig
        {
            Data = "gmm8",
            Network = new UnifiedDiffusion.Networks.MlpConfig(32, 1, 16),
            Training = new TrainingOptions(Steps: 4, BatchSize: 16, WarmupSteps: 1, CheckpointEvery: 2, LogEvery: 1),
        }.ToJson());
        CliTests.AssertOneLineError(CliTests.Run("train", config, "--out", run, "--keep-every", "3"), "a multiple of the checkpoint interval (checkpointEvery = 2), got 3");
        Assert.False(Directory.Exists(run));

        // Two sessions: 0 → 4, then a resume to 6.
        Assert.Equal(0, CliTests.RunPrinting("train", config, "--out", run, "--keep-every", "2", "--threads", "1").Code);
        Assert.Equal(0, CliTests.RunPrinting("train", "--out", run, "--resume", "--steps", "6").Code);
        var sessions = RunRecords.TrainingSessions(run);
        Assert.Equal([(0L, 4L), (4L, 6L)], sessions.Select(q => (q.FirstStep, q.LastStep)));
        Assert.Equal($"udm train {config} --out RUN --keep-every 2 --threads 1", sessions[0].Command);
        Assert.Equal("udm train --out RUN --resume --steps 6", sessions[1].Command);
        Assert.All(sessions, q => Assert.True(q.Seconds > 0 && q.Precision == "fp32" && q.Cpu.Length > 0));
        Assert.Equal([2L, 4L, 6L], Checkpoint.Kept(run).Select(k => k.Step)); // the resumed run kept its checkpoints too (keepEvery is in config.json)

        // Each kept checkpoint is evaluated with its own weights; the last equals a plain evaluation.
        CliTests.AssertOneLineError(CliTests.Run("eval", "--run", run, "--curve", Path.Combine(_root, "c.png")), "add --checkpoints");
        string curve = Path.Combine(_root, "curve.png");
        var (code, output) = CliTests.RunPrinting("eval", "--run", run, "--sampler", "data,ddim", "--steps", "5", "--count", "200",
            "--checkpoints", "--curve", curve, "--record", "--json");
        Assert.Equal(0, code);
        var rows = Rows(output);
        Assert.Equal(["data", "ddim", "ddim", "ddim"], rows.Select(q => q.GetProperty("sampler").GetString()));
        Assert.Equal([2.0, 4.0, 6.0], rows.Skip(1).Select(q => q.GetProperty(MetricsTables.TrainingStep).GetDouble()));
        Assert.True(new FileInfo(curve).Length > 1000);
        var plain = JsonDocument.Parse(CliTests.RunPrinting("eval", "--run", run, "--sampler", "ddim", "--steps", "5", "--count", "200", "--json").Output).RootElement;
        Assert.Equal(plain.GetProperty("sliced_w2").GetDouble(), rows[3].GetProperty("sliced_w2").GetDouble());
        Assert.NotEqual(plain.GetProperty("sliced_w2").GetDouble(), rows[1].GetProperty("sliced_w2").GetDouble());
        var evaluation = Assert.Single(RunRecords.Evaluations(run));
        Assert.StartsWith("udm eval --run RUN --sampler data,ddim", evaluation.Command);
        Assert.Equal(4, evaluation.Rows.Count);

        // The card: the notes' title and text, the sessions, the evaluation with its command.
        string notes = Path.Combine(_root, "notes.md"), export = Path.Combine(_root, "export");
        File.WriteAllText(notes, "# tiny gmm8: what it shows\n\nA claim, measured below.\n");
        Assert.Equal(0, CliTests.RunPrinting("export", "--run", run, "--out", export, "--notes", notes).Code);
        string card = File.ReadAllText(Path.Combine(export, ModelExport.Files.Card));
        Assert.StartsWith("# tiny gmm8: what it shows\n", card);
        Assert.Contains("A claim, measured below.", card);
        Assert.Contains("| 0 → 4 |", card);
        Assert.Contains("`udm train --out RUN --resume --steps 6`", card);
        Assert.Contains("`udm eval --run RUN --sampler data,ddim", card);
        Assert.Contains("| data | sampler | steps | samples | training step | sliced w2 ↓", card);
        Assert.DoesNotContain(run, card); // the run folder is written RUN
        Assert.True(File.Exists(Path.Combine(export, RunRecords.TrainingFile)) && File.Exists(Path.Combine(export, RunRecords.EvaluationFile)));
        CliTests.AssertOneLineError(CliTests.Run("export", "--run", run, "--out", Path.Combine(_root, "e2"), "--notes", Path.Combine(_root, "none.md")), "does not exist");
        Assert.False(Directory.Exists(Path.Combine(_root, "e2")));

        // A run that kept nothing says how to keep checkpoints.
        string plainRun = Path.Combine(_root, "plain");
        Assert.Equal(0, CliTests.RunPrinting("train", config, "--out", plainRun).Code);
        CliTests.AssertOneLineError(CliTests.Run("eval", "--run", plainRun, "--checkpoints"), "train with --keep-every N");
    }
}
