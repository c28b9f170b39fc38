using System.Text.Json;
using System.Text.Json.Nodes;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// One training session of a run (a <c>udm train</c>, or a <c>--resume</c> of it): the steps it
/// trained up to its last checkpoint, the wall time they took, and where. Time after the last
/// checkpoint of an interrupted session is not counted: those steps are trained again on resume.
/// </summary>
/// <param name="StartedUtc">When the session began.</param>
/// <param name="FirstStep">The step it resumed from (0 for a new run).</param>
/// <param name="LastStep">The step of its last checkpoint.</param>
/// <param name="Seconds">Wall time from its start to that checkpoint.</param>
/// <param name="Precision">fp32 or bf16.</param>
/// <param name="Threads">libtorch's intra-op threads.</param>
/// <param name="Cpu">The CPU (<see cref="Platform.CpuDescription"/>).</param>
/// <param name="Command">The command line, with the run folder written RUN, when the CLI started it.</param>
public sealed record TrainingSession(DateTime StartedUtc, long FirstStep, long LastStep, double Seconds, string Precision, int Threads, string Cpu, string? Command);

/// <summary>One <c>udm eval --record</c>: its command line and its rows (<see cref="EvaluationResult"/> flattened to metric names).</summary>
/// <param name="DateUtc">When it ran.</param>
/// <param name="Command">The command line, with the run folder written RUN.</param>
/// <param name="Cpu">The CPU it ran on.</param>
/// <param name="Rows">One object per sampler: data, family, sampler, steps, count, seconds, then the metrics.</param>
public sealed record EvaluationRecord(DateTime DateUtc, string Command, string Cpu, IReadOnlyList<IReadOnlyDictionary<string, JsonElement>> Rows);

/// <summary>
/// What a run folder keeps of its own history, for model cards: its training sessions
/// (<see cref="TrainingFile"/>) and its recorded evaluations (<see cref="EvaluationFile"/>). Both are
/// JSON arrays, rewritten atomically.
/// </summary>
public static class RunRecords
{
    /// <summary>The training sessions, oldest first.</summary>
    public const string TrainingFile = "training.json";

    /// <summary>The recorded evaluations, oldest first.</summary>
    public const string EvaluationFile = "eval.json";

    /// <summary>The word that stands for the run folder in recorded command lines.</summary>
    public const string RunPlaceholder = "RUN";

    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The training sessions of <paramref name="runDir"/> (none for a run from before they were kept).</summary>
    public static IReadOnlyList<TrainingSession> TrainingSessions(string runDir) => Read<TrainingSession>(Path.Combine(runDir, TrainingFile));

    /// <summary>
    /// Records <paramref name="session"/>: it replaces its own earlier entry (the same start time, an
    /// earlier checkpoint) and any session that began at or after its first step (a run started
    /// afresh, or resumed from an older checkpoint, trains those steps again).
    /// </summary>
    public static void Record(string runDir, TrainingSession session)
    {
        var sessions = TrainingSessions(runDir).Where(s => s.StartedUtc != session.StartedUtc && s.FirstStep < session.FirstStep).ToList();
        sessions.Add(session);
        Write(Path.Combine(runDir, TrainingFile), sessions);
    }

    /// <summary>The recorded evaluations of <paramref name="runDir"/>.</summary>
    public static IReadOnlyList<EvaluationRecord> Evaluations(string runDir) => Read<EvaluationRecord>(Path.Combine(runDir, EvaluationFile));

    /// <summary>Appends <paramref name="record"/> to the run's evaluations.</summary>
    public static void Record(string runDir, EvaluationRecord record) =>
        Write(Path.Combine(runDir, EvaluationFile), [.. Evaluations(runDir), record]);

    /// <summary>A command line as a shell would take it, with <paramref name="runDir"/> written <see cref="RunPlaceholder"/> (so records hold no path of the machine).</summary>
    public static string CommandLine(IEnumerable<string> arguments, string? runDir)
    {
        string? run = runDir is null ? null : Path.TrimEndingDirectorySeparator(runDir);
        return string.Join(" ", arguments.Select(a =>
            run is not null && Path.TrimEndingDirectorySeparator(a) == run ? RunPlaceholder
            : a.Length > 0 && a.All(c => char.IsLetterOrDigit(c) || "-_.,/=:+@%".Contains(c)) ? a
            : "'" + a.Replace("'", "'\\''") + "'"));
    }

    /// <summary>The wall time of all sessions, in seconds.</summary>
    public static double TrainingSeconds(IReadOnlyList<TrainingSession> sessions) => sessions.Sum(s => s.Seconds);

    private static List<T> Read<T>(string path)
    {
        if (!File.Exists(path)) return [];
        try { return JsonSerializer.Deserialize<List<T>>(File.ReadAllText(path), Options) ?? []; }
        catch (JsonException e)
        {
            throw new UdmException($"{path} is not a valid record ({e.Message.Split('\n')[0]}); delete it to start the record afresh.");
        }
    }

    private static void Write<T>(string path, List<T> items) => AtomicFile.WriteAllText(path, JsonSerializer.Serialize(items, Options) + "\n");
}
