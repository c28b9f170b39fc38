using System.Globalization;
using System.Text;
using System.Text.Json;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// <see cref="EvaluationResult"/> rows as text: column headings, number formats, Markdown tables, and the
/// flat JSON objects of <c>udm eval --json</c> and <see cref="RunRecords.EvaluationFile"/> (and back).
/// </summary>
public static class MetricsTables
{
    /// <summary>Lower is better for these (a prefix match); the others are higher-is-better or neutral.</summary>
    private static readonly string[] LowerIsBetter = ["sliced_w2", "nll_bits_per_dim", "fid", "rmse", "perplexity", "copy_rate", "nelbo_bits_per_token", "gamma_rel_error"];

    private static readonly string[] CommonFields = ["data", "family", "sampler", "steps", "count", "seconds"];

    /// <summary>A metric's column heading: words instead of snake_case, with ↓ when lower is better.</summary>
    public static string Heading(string metric) => metric.Replace('_', ' ') + (LowerIsBetter.Any(metric.StartsWith) ? " ↓" : "");

    /// <summary>A metric value with as many digits as its size warrants.</summary>
    public static string Format(double v) => (v == Math.Round(v) && Math.Abs(v) < 1e9 ? v.ToString("0", CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 100 ? v.ToString("F1", CultureInfo.InvariantCulture)
        : Math.Abs(v) >= 1 ? v.ToString("F3", CultureInfo.InvariantCulture)
        : v.ToString("F4", CultureInfo.InvariantCulture));

    /// <summary>The column of the training step a row's weights had (<c>udm eval --checkpoints</c>).</summary>
    public const string TrainingStep = "training_step";

    /// <summary>The metric names of <paramref name="rows"/>, the training step first, then in order of first appearance.</summary>
    public static IReadOnlyList<string> MetricNames(IEnumerable<EvaluationResult> rows) =>
        [.. rows.SelectMany(q => q.Metrics.Keys).Distinct().OrderBy(name => name != TrainingStep)];

    /// <summary>A Markdown table: data, sampler, steps, samples, the metrics, seconds; "–" where a row lacks a metric.</summary>
    public static string Markdown(IEnumerable<EvaluationResult> rows)
    {
        var list = rows.ToList();
        var metricNames = MetricNames(list);
        var header = new List<string> { "data", "sampler", "steps", "samples" };
        header.AddRange(metricNames.Select(Heading));
        header.Add("seconds");
        var text = new StringBuilder();
        text.AppendLine("| " + string.Join(" | ", header) + " |");
        text.AppendLine("|" + string.Concat(Enumerable.Repeat("---|", header.Count)));
        foreach (var q in list)
            text.AppendLine("| " + string.Join(" | ", new[] { q.Data, q.Sampler, q.Steps.ToString(CultureInfo.InvariantCulture), q.Count.ToString(CultureInfo.InvariantCulture) }
                .Concat(metricNames.Select(m => q.Metrics.TryGetValue(m, out double v) ? Format(v) : "–")).Append(q.Seconds.ToString("F1", CultureInfo.InvariantCulture))) + " |");
        return text.ToString();
    }

    /// <summary>One flat object: the common fields (data, family, sampler, steps, count, seconds), then the metrics.</summary>
    public static Dictionary<string, object> Flatten(EvaluationResult result)
    {
        var flat = new Dictionary<string, object>
        {
            ["data"] = result.Data, ["family"] = result.Family, ["sampler"] = result.Sampler, ["steps"] = result.Steps,
            ["count"] = result.Count, ["seconds"] = result.Seconds,
        };
        foreach (var (key, value) in result.Metrics) flat[key] = value;
        return flat;
    }

    /// <summary>The row a flat object (<see cref="Flatten"/>, as JSON) describes.</summary>
    public static EvaluationResult Unflatten(IReadOnlyDictionary<string, JsonElement> flat)
    {
        string Text(string key) => flat.TryGetValue(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
        double Number(string key) => flat.TryGetValue(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : 0;
        return new EvaluationResult(Text("data"), Text("family"), Text("sampler"), (int)Number("steps"), (int)Number("count"), Number("seconds"),
            flat.Where(e => !CommonFields.Contains(e.Key) && e.Value.ValueKind == JsonValueKind.Number).ToDictionary(e => e.Key, e => e.Value.GetDouble()));
    }
}
