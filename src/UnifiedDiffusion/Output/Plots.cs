using ScottPlot;
using SkiaSharp;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Output;

/// <summary>PNG figures: loss curves and 2-D scatter grids.</summary>
public static class Plots
{
    private static readonly Lazy<bool> FontReady = new(RegisterSystemFont);

    // Skia's dependency-free Linux build does not use fontconfig, so ScottPlot finds no font and
    // draws no text. Register a TrueType file from the usual system folders as the default font.
    private static bool RegisterSystemFont()
    {
        string[] preferred = ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "FreeSans.ttf", "Arial.ttf"];
        string[] roots = ["/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "/System/Library/Fonts", @"C:\Windows\Fonts"];
        var files = roots.Where(Directory.Exists)
            .SelectMany(r => Directory.EnumerateFiles(r, "*.ttf", SearchOption.AllDirectories))
            .ToList();
        var file = preferred.Select(name => files.FirstOrDefault(f => Path.GetFileName(f).Equals(name, StringComparison.OrdinalIgnoreCase)))
            .FirstOrDefault(f => f is not null) ?? files.FirstOrDefault();
        if (file is null) return false; // plots still render, without text
        // Titles are bold: register a bold face too (the regular file stands in when there is none).
        string bold = files.FirstOrDefault(f => Path.GetFileName(f).Equals(Path.GetFileNameWithoutExtension(file) + "-Bold.ttf", StringComparison.OrdinalIgnoreCase)) ?? file;
        Fonts.AddFontFile("UdmDefault", file, bold: false, italic: false);
        Fonts.AddFontFile("UdmDefault", bold, bold: true, italic: false);
        Fonts.Default = "UdmDefault";
        return true;
    }

    private static Plot NewPlot()
    {
        _ = FontReady.Value;
        return new Plot();
    }

    /// <summary>The training loss per step, with a moving average, on a log scale.</summary>
    public static void LossCurve(string path, IReadOnlyList<float> losses) => LossCurves(path, [("loss", losses)]);

    /// <summary>
    /// Training-loss curves on one log-scale axis, each as a moving average over 1/50 of its steps,
    /// so runs of different precisions or seeds compare at a glance. A single curve also shows its
    /// raw per-step losses.
    /// </summary>
    public static void LossCurves(string path, IReadOnlyList<(string Label, IReadOnlyList<float> Losses)> curves)
    {
        curves = curves.Where(c => c.Losses.Count > 0).ToList();
        if (curves.Count == 0) return;
        var plot = NewPlot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int c = 0; c < curves.Count; c++)
        {
            var (label, losses) = curves[c];
            var steps = Enumerable.Range(1, losses.Count).Select(i => (double)i).ToArray();
            var raw = losses.Select(l => Math.Log10(Math.Max(l, 1e-12))).ToArray();
            if (curves.Count == 1)
            {
                var raws = plot.Add.ScatterLine(steps, raw);
                raws.LineWidth = 1;
                raws.Color = Colors.Gray.WithAlpha(0.4);
                raws.LegendText = label;
            }
            int window = Math.Max(1, losses.Count / 50);
            var line = plot.Add.ScatterLine(steps, MovingAverage(raw, window));
            line.LineWidth = curves.Count == 1 ? 2 : 1.5f;
            // Overlaid curves of the same seed nearly coincide: translucent lines keep each visible.
            line.Color = curves.Count == 1 ? Colors.Blue : palette.GetColor(c).WithAlpha(0.75);
            line.LegendText = curves.Count == 1 ? $"moving average ({window} steps)" : $"{label} (moving average, {window} steps)";
        }
        plot.Title("Training loss");
        plot.XLabel("step");
        plot.YLabel("log10 loss");
        plot.ShowLegend(Alignment.UpperRight); // losses fall: the upper right is empty
        Save(path, plot.GetImage(800, 500));
    }

    /// <summary>Lines of y against x on one axis, one per (label, x, y), with a legend: e.g. churn per step for each sampler.</summary>
    public static void Lines(string path, string title, string xLabel, string yLabel, IReadOnlyList<(string Label, double[] X, double[] Y)> lines)
    {
        var plot = NewPlot();
        var palette = new ScottPlot.Palettes.Category10();
        for (int c = 0; c < lines.Count; c++)
        {
            var line = plot.Add.ScatterLine(lines[c].X, lines[c].Y);
            line.LineWidth = 2;
            line.MarkerSize = 4;
            line.Color = palette.GetColor(c);
            line.LegendText = lines[c].Label;
        }
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.UpperRight);
        Save(path, plot.GetImage(800, 500));
    }

    private static double[] MovingAverage(double[] values, int window)
    {
        var smooth = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            smooth[i] = sum / Math.Min(i + 1, window);
        }
        return smooth;
    }

    /// <summary>
    /// A row of scatter panels of 2-D points, one per (title, points [N, 2]) pair, on shared axes.
    /// </summary>
    public static void ScatterGrid(string path, IReadOnlyList<(string Title, Tensor Points)> panels, int panelSize = 360, int columns = 4)
    {
        if (panels.Count == 0) return;
        var coordinates = panels.Select(p => ToPairs(p.Points)).ToList();
        double limit = Math.Ceiling(coordinates.SelectMany(c => c.X.Concat(c.Y)).Select(Math.Abs).DefaultIfEmpty(1).Max() * 1.05 * 2) / 2;
        limit = Math.Min(limit, 6);
        int cols = Math.Min(columns, panels.Count), rows = (panels.Count + cols - 1) / cols;
        using var surface = SKSurface.Create(new SKImageInfo(cols * panelSize, rows * panelSize));
        surface.Canvas.Clear(SKColors.White);
        for (int i = 0; i < panels.Count; i++)
        {
            var plot = NewPlot();
            var scatter = plot.Add.ScatterPoints(coordinates[i].X, coordinates[i].Y);
            scatter.MarkerSize = 2;
            scatter.Color = Colors.Blue.WithAlpha(0.35);
            plot.Axes.SetLimits(-limit, limit, -limit, limit);
            plot.Title(panels[i].Title);
            using var panel = SKImage.FromEncodedData(plot.GetImage(panelSize, panelSize).GetImageBytes(ImageFormat.Png));
            surface.Canvas.DrawImage(panel, i % cols * panelSize, i / cols * panelSize, new SKSamplingOptions(SKFilterMode.Linear));
        }
        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(path, s => data.SaveTo(s));
    }

    private static (double[] X, double[] Y) ToPairs(Tensor points)
    {
        using var scope = torch.NewDisposeScope();
        var p = points.to(ScalarType.Float64, torch.CPU).contiguous();
        if (p.dim() != 2 || p.shape[1] != 2) throw new ArgumentException("scatter panels need [N, 2] points");
        var flat = p.data<double>().ToArray();
        return (flat.Where((_, i) => i % 2 == 0).ToArray(), flat.Where((_, i) => i % 2 == 1).ToArray());
    }

    private static void Save(string path, ScottPlot.Image image) => AtomicFile.Write(path, s => s.Write(image.GetImageBytes(ImageFormat.Png)));
}
