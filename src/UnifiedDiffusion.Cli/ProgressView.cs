using System.Diagnostics;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace UnifiedDiffusion.Cli;

/// <summary>
/// Progress for long work: a Spectre.Console bar with ETA on a terminal (or a status line over a live
/// view, such as texts settling), or a plain line every 10% (with ETA) on stderr when output is
/// redirected, so logs show progress and stdout stays clean (e.g. for --json).
/// </summary>
internal static class ProgressView
{
    public delegate void Report(long done, string detail);

    public static T Run<T>(string title, long total, Func<Report, T> work, Func<IRenderable>? view = null)
    {
        var clock = Stopwatch.StartNew();
        if (AnsiConsole.Profile.Capabilities.Interactive && view is not null)
        {
            // A live view (texts settling) and Spectre's progress display cannot share the terminal: one
            // live region shows the view under a status line with the same counts and ETA.
            T result = default!;
            IRenderable Frame(long done, string detail)
            {
                double eta = done > 0 ? clock.Elapsed.TotalSeconds / done * (total - done) : 0;
                string status = $"{title} {done}/{total} {detail}  elapsed {Clock(clock.Elapsed)}  eta {Clock(TimeSpan.FromSeconds(eta))}";
                return new Rows(new Markup(Markup.Escape(status)), view());
            }
            AnsiConsole.Live(Frame(0, "")).AutoClear(false).Start(ctx =>
            {
                result = work((done, detail) =>
                {
                    ctx.UpdateTarget(Frame(done, detail));
                    ctx.Refresh();
                });
            });
            return result;
        }
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            T result = default!;
            AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                         new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                    result = work((done, detail) =>
                    {
                        task.Value = done;
                        task.Description = Markup.Escape($"{title} {done}/{total} {detail}");
                    });
                    task.Value = task.MaxValue;
                });
            return result;
        }
        long nextReport = 0;
        return work((done, detail) =>
        {
            if (done < nextReport && done != total) return;
            nextReport = done + Math.Max(1, total / 10);
            double eta = done > 0 ? clock.Elapsed.TotalSeconds / done * (total - done) : double.NaN;
            Console.Error.WriteLine($"{title} {done}/{total} {detail} elapsed {Clock(clock.Elapsed)} eta {Clock(TimeSpan.FromSeconds(double.IsFinite(eta) ? eta : 0))}");
        });
    }

    /// <summary>The steps a sampling run reports: every chunk of at most <paramref name="batch"/> samples runs the whole grid.</summary>
    public static long SamplingSteps(int steps, int count, int? batch) => (long)steps * (batch is > 0 and var b ? (count + b - 1) / b : 1);

    /// <summary>m:ss, or h:mm:ss from an hour on (mm:ss alone wraps at 60 minutes).</summary>
    internal static string Clock(TimeSpan span) => span.TotalHours >= 1 ? $"{(int)span.TotalHours}:{span:mm\\:ss}" : $"{span:mm\\:ss}";
}
