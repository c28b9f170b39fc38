using Spectre.Console;
using Spectre.Console.Rendering;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Runs;

namespace UnifiedDiffusion.Cli;

/// <summary>
/// The first few texts settling step by step, for <c>udm sample</c> on a terminal: each row's state
/// after the step ([MASK] as _) and the estimate of x_0 it came from, redrawn in place after every step. Token families only: an
/// encoding model's x_t is a latent, so it shows nothing.
/// </summary>
internal sealed class SettlingView(TextModality text, int rows = 4)
{
    private string[] _current = [];
    private string[] _estimate = [];
    private string _level = "";

    /// <summary>Takes the state after the step and the step's estimate of x_0 (to chain into <see cref="SamplingOptions.OnStep"/>); only the first chunk is shown.</summary>
    public void Record(SamplerProgress progress)
    {
        if (progress.Xt.is_floating_point()) return;
        if (_level.Length > 0 && progress.Step.Index == 0) return; // a later chunk starts the grid again
        long n = Math.Min(rows, progress.Xt.shape[0]);
        using var estimate = progress.Posterior.Estimate();
        _current = [.. Enumerable.Range(0, (int)n).Select(r => Lines(progress.Xs[r].data<long>().ToArray()))];
        _estimate = [.. Enumerable.Range(0, (int)n).Select(r => Lines(estimate[r].data<long>().ToArray()))];
        _level = $"step {progress.Step.Index + 1} of {progress.Step.Count}: t = {progress.Step.T} → {progress.Step.S}";
    }

    /// <summary>A text as <see cref="TextModality.Show"/> gives it, a poem's lines one under another.</summary>
    private string Lines(long[] ids) => text.Show(ids).Replace("，", "，\n");

    /// <summary>A table of the followed texts: the state x_s and the estimate x̂_0 of the last recorded step.</summary>
    public IRenderable Render()
    {
        var table = new Table().Border(TableBorder.Rounded).Title(Markup.Escape(_level)).AddColumns("#", "x_s", "x̂_0 (at x_t)");
        for (int r = 0; r < _current.Length; r++)
            table.AddRow((r + 1).ToString(), Markup.Escape(_current[r]), $"[grey]{Markup.Escape(_estimate[r])}[/]");
        return table;
    }
}
