using System.CommandLine;
using System.CommandLine.Parsing;
using UnifiedDiffusion.Cli.Bench;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Cli;

/// <summary>The `udm` command tree. User errors become one line on stderr and exit code 2.</summary>
internal static class CommandLine
{
    public const int UserError = 2;

    /// <summary>The command tree (also walked by the table-driven test of every option).</summary>
    public static RootCommand Build() =>
        new("udm: train and sample diffusion models of every kind through the unified diffusion model (UDM).")
        {
            DemoCommand.Create(),
            TrainCommand.Create(),
            SampleCommand.Create(),
            EvalCommand.Create(),
            ExportCommand.Create(),
            ImportCommand.Create(),
            ModelsCommand.Create(),
            LossCommand.Create(),
            RecipesCommand.Create(),
            BenchCommand.Create(),
            DataCommand.Create(),
        };

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = Build();
        var verbose = new Option<bool>("--verbose") { Description = "on an internal error, print its full trace", Recursive = true };
        root.Options.Add(verbose);
        var parsed = root.Parse(args);
        // An empty value ("") is never meant: without this, paths, names and lists would take it as "nothing" or crash on it.
        if (parsed.CommandResult.Children.OfType<OptionResult>().FirstOrDefault(o => o.Tokens.Any(t => t.Value.Trim().Length == 0)) is { } empty)
        {
            error.WriteLine($"udm: error: {empty.Option.Name}: the value is empty; give one (see `{CommandPath(parsed)} --help`)");
            return UserError;
        }
        if (parsed.Errors.Count > 0)
        {
            // Unrecognised tokens first: they usually explain the other errors (e.g. a mistyped command).
            var messages = parsed.Errors.Select(e => InUserWords(e.Message.TrimEnd('.'))).OrderBy(m => m.StartsWith("Unrecognized", StringComparison.Ordinal) ? 0 : 1);
            error.WriteLine($"udm: error: {string.Join("; ", messages)} (see `{CommandPath(parsed)} --help`)");
            return UserError;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (ErrorBoundary.Unwrap(e) is UdmException user)
        {
            error.WriteLine($"udm: error: {Flag(user.Subject)}{user.Message}");
            return UserError;
        }
        catch (Exception e) when (ErrorBoundary.Describe(ErrorBoundary.Unwrap(e)) is { } message)
        {
            error.WriteLine($"udm: error: {message}");
            return UserError;
        }
        catch (Exception e)
        {
            var inner = ErrorBoundary.Unwrap(e);
            error.WriteLine($"udm: error: internal error ({inner.GetType().Name}: {ErrorBoundary.FirstLine(inner.Message)}); rerun with --verbose for details");
            if (parsed.GetValue(verbose)) error.WriteLine(inner.ToString());
            return InternalError;
        }
    }

    /// <summary>Exit code of an internal error (a defect, not the user's input).</summary>
    public const int InternalError = 1;

    /// <summary>System.CommandLine's type errors name .NET types; say what a user types instead.</summary>
    private static string InUserWords(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Match(message, @"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'$");
        if (!m.Success) return message;
        string type = m.Groups[3].Value;
        string expected = type.Contains("Int32") || type.Contains("Int64") ? "a whole number, e.g. 10"
            : type.Contains("Double") || type.Contains("Single") ? "a number, e.g. 0.5"
            : type.Contains("Boolean") ? "true or false" : "a value of another kind";
        return $"{m.Groups[2].Value}: \"{m.Groups[1].Value}\" is not {expected}";
    }

    /// <summary>The command-line flag of a library setting, as a message prefix; the library itself never names flags.</summary>
    private static string Flag(string? subject) => subject switch
    {
        "steps" or "eta" or "gamma" or "order" or "guidance" or "label" or "generate" or "sampler" or "count" or "inpaint" or "fix" or "nll"
            or "out" or "seed" or "device" or "oracle" or "resume" or "precision" or "grid" or "threads" or "run" or "trajectory" or "churn-plot" or "model" => $"--{subject}: ",
        "analyticClip" => "--analytic-clip: ",
        "priorNoise" => "--prior-noise: ",
        "learningRate" => "--lr: ",
        _ => "",
    };

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r is CommandResult c; r = c.Parent) names.Add(c.Command.Name);
        names.Reverse();
        names[0] = "udm";
        return string.Join(' ', names);
    }
}
