using System.CommandLine;
using System.CommandLine.Parsing;
using UnifiedDiffusion.Cli.Bench;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Cli;

/// <summary>The `udm` command tree. User errors become one line on stderr and exit code 2.</summary>
internal static class CommandLine
{
    public const int UserError = 2;

    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var root = new RootCommand("udm: train and sample diffusion models of every kind through the unified diffusion model (UDM).")
        {
            DemoCommand.Create(),
            TrainCommand.Create(),
            SampleCommand.Create(),
            EvalCommand.Create(),
            RecipesCommand.Create(),
            BenchCommand.Create(),
            DataCommand.Create(),
        };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // Unrecognised tokens first: they usually explain the other errors (e.g. a mistyped command).
            var messages = parsed.Errors.Select(e => e.Message.TrimEnd('.')).OrderBy(m => m.StartsWith("Unrecognized", StringComparison.Ordinal) ? 0 : 1);
            error.WriteLine($"udm: error: {string.Join("; ", messages)} (see `{CommandPath(parsed)} --help`)");
            return UserError;
        }
        try
        {
            return parsed.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (UdmException e)
        {
            error.WriteLine($"udm: error: {e.Message}");
            return UserError;
        }
    }

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (SymbolResult? r = parsed.CommandResult; r is CommandResult c; r = c.Parent) names.Add(c.Command.Name);
        names.Reverse();
        names[0] = "udm";
        return string.Join(' ', names);
    }
}
