using System.CommandLine;
using UnifiedDiffusion.Cli;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Training;
using Xunit;

namespace UnifiedDiffusion.Tests.Cli;

/// <summary>
/// Every option of every command, walked from the command tree, with values no option may take:
/// each call must end with exit code 2 and one stderr line, and never show an exception.
/// </summary>
[Collection(nameof(UnifiedDiffusion.Tests.Runs.FamilyRunCollection))]
public sealed class BadValueTableTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-table-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>Values that are wrong for an option of this value type (numbers: not a number, infinite, NaN, overflow; text: empty).</summary>
    private static string[] BadValues(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (type == typeof(int) || type == typeof(long)) return ["abc", "", "99999999999999999999", "1.5"];
        if (type == typeof(double) || type == typeof(float)) return ["abc", "", "nan", "inf", "1e999"];
        if (type == typeof(string)) return [""];
        return [];
    }

    [Fact]
    public void EveryOptionOfEveryCommandRefusesBadValuesInOneLine()
    {
        string run = Path.Combine(_root, "run"), file = Path.Combine(_root, "a-file");
        Experiment.Create(TrainingTests.Small(3, checkpointEvery: 3)).Train(run);
        File.WriteAllText(file, "x");
        int fresh = 0;
        string Fresh() => Path.Combine(_root, $"new-{fresh++}");

        // The smallest call of each command that does real work, so that a value which slips through is noticed quickly.
        Dictionary<string, Func<List<string>>> baseArgs = new()
        {
            ["train"] = () => ["gmm8", "--out", Fresh(), "--steps", "2"],
            ["sample"] = () => ["--run", run, "--count", "3", "--steps", "2", "--out", Fresh() + ".csv"],
            ["eval"] = () => ["--run", run, "--count", "50", "--steps", "2"],
            ["demo"] = () => ["--out", Fresh(), "--train-steps", "2", "--count", "10"],
            ["bench"] = () => ["--smoke", "--suite", "toy", "--rounds", "1", "--rss-steps", "0", "--only", "toy.train"],
            ["export"] = () => ["--run", run, "--out", Fresh()],
            ["import"] = () => [run, "--out", Fresh()],
            ["loss"] = () => [run, "--out", Fresh() + ".png"],
            ["get"] = () => ["digits"],
        };
        int calls = 0;
        var failures = new List<string>();
        foreach (var (path, command) in Walk(CommandLine.Build(), []))
        {
            foreach (var option in command.Options)
            {
                if (option.Name is "--help" or "--version" or "--verbose" || option.ValueType == typeof(bool)) continue;
                foreach (var bad in BadValues(option.ValueType))
                {
                    var args = baseArgs.TryGetValue(command.Name, out var make) ? make() : [];
                    int at = args.IndexOf(option.Name);
                    if (at >= 0) args.RemoveRange(at, 2);
                    string[] call = [.. path, .. args, option.Name, bad];
                    var (code, error) = CliTests.Run(call);
                    calls++;
                    var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                    if (code != CommandLine.UserError || lines.Length != 1 || !lines[0].StartsWith("udm: error: ", StringComparison.Ordinal)
                        || error.Contains("Exception", StringComparison.Ordinal) || error.Contains("   at ", StringComparison.Ordinal))
                        failures.Add($"udm {string.Join(' ', call.Select(a => a.Length == 0 ? "\"\"" : a))} → exit {code}: {error.Trim()}");
                }
            }
        }
        Assert.True(calls > 60, $"only {calls} calls: the walk missed commands");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static IEnumerable<(string[] Path, Command Command)> Walk(Command command, string[] path)
    {
        foreach (var sub in command.Subcommands)
        {
            string[] here = [.. path, sub.Name];
            yield return (here, sub);
            foreach (var nested in Walk(sub, here)) yield return nested;
        }
    }
}
