using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Tokens;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Metrics;

/// <summary>
/// A character n-gram language model with interpolated Kneser–Ney smoothing (Chen &amp; Goodman):
/// P_k(w | h) = max(c_k(h, w) − D_k, 0)/c_k(h) + D_k N₁₊(h •)/c_k(h) · P_{k−1}(w | h'), where c_n
/// are raw counts and c_k (k &lt; n) continuation counts N₁₊(• h w); P_0 is uniform over the
/// training characters plus end-of-string and unknown. One discount per order,
/// D_k = n₁/(n₁ + 2n₂) from that order's count-of-counts. Each string is padded with n − 1
/// begin symbols and one end symbol, which is predicted too. A context never seen backs off fully.
/// </summary>
public sealed class NGramModel
{
    private const int Begin = -1, End = -2, Unknown = -3;
    private readonly Dictionary<string, int> _symbols = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Context>[] _orders; // index k − 1: contexts of length k − 1
    private readonly double[] _discounts;
    private readonly int _vocabularySize;

    private sealed class Context
    {
        public Dictionary<int, int> Counts { get; } = [];
        public int Total { get; set; }
    }

    /// <summary>Trains an <paramref name="order"/>-gram model on <paramref name="training"/>.</summary>
    public NGramModel(IEnumerable<string> training, int order = 3)
    {
        if (order < 1) throw new UdmException($"an n-gram order of {order} is invalid; use 1 or more.");
        Order = order;
        var sequences = training.Select(s => Encode(s, grow: true)).ToList();
        if (sequences.Count == 0) throw new UdmException("the n-gram model needs at least one training string.");
        _vocabularySize = _symbols.Count + 2; // + end, unknown
        _orders = [.. Enumerable.Range(0, order).Select(_ => new Dictionary<string, Context>(StringComparer.Ordinal))];
        var predecessors = new HashSet<string>[order]; // distinct (a, g) for continuation counts of order k
        for (int k = 0; k < order; k++) predecessors[k] = new HashSet<string>(StringComparer.Ordinal);
        foreach (var seq in sequences)
            for (int j = order - 1; j < seq.Length; j++)
            {
                Add(order, seq, j, 1);
                for (int k = 1; k < order; k++)
                    if (predecessors[k - 1].Add(Key(seq, j - k, k + 1))) Add(k, seq, j, 1);
            }
        _discounts = new double[order];
        for (int k = 1; k <= order; k++)
        {
            var all = _orders[k - 1].Values.SelectMany(c => c.Counts.Values).ToList();
            double n1 = all.Count(c => c == 1), n2 = all.Count(c => c == 2);
            _discounts[k - 1] = n1 + n2 == 0 ? 0.75 : Math.Clamp(n1 / (n1 + 2 * n2), 0.05, 0.95);
        }
    }

    /// <summary>n.</summary>
    public int Order { get; }

    private void Add(int k, int[] seq, int j, int amount)
    {
        var key = Key(seq, j - k + 1, k - 1);
        var orderTable = _orders[k - 1];
        if (!orderTable.TryGetValue(key, out var context)) orderTable[key] = context = new Context();
        context.Counts[seq[j]] = context.Counts.GetValueOrDefault(seq[j]) + amount;
        context.Total += amount;
    }

    private static string Key(int[] seq, int start, int count) => string.Join(',', seq.AsSpan(start, count).ToArray());

    private int[] Encode(string text, bool grow)
    {
        var result = new List<int>(Enumerable.Repeat(Begin, Order - 1));
        foreach (var rune in text.EnumerateRunes())
        {
            var s = rune.ToString();
            if (!_symbols.TryGetValue(s, out int id))
            {
                if (grow) _symbols[s] = id = _symbols.Count;
                else id = Unknown;
            }
            result.Add(id);
        }
        result.Add(End);
        return [.. result];
    }

    private double Probability(int[] seq, int j, int k)
    {
        double lower = k == 1 ? 1.0 / _vocabularySize : Probability(seq, j, k - 1);
        if (!_orders[k - 1].TryGetValue(Key(seq, j - k + 1, k - 1), out var context)) return lower;
        double d = _discounts[k - 1];
        return (Math.Max(context.Counts.GetValueOrDefault(seq[j]) - d, 0) + d * context.Counts.Count * lower) / context.Total;
    }

    /// <summary>The natural log-probability of one string (its characters and the end symbol).</summary>
    public double LogProbability(string text)
    {
        var seq = Encode(text, grow: false);
        double sum = 0;
        for (int j = Order - 1; j < seq.Length; j++) sum += Math.Log(Probability(seq, j, Order));
        return sum;
    }

    /// <summary>exp of the mean negative log-probability per predicted symbol (characters and end symbols).</summary>
    public double Perplexity(IEnumerable<string> texts)
    {
        double nll = 0;
        long count = 0;
        foreach (var text in texts)
        {
            nll -= LogProbability(text);
            count += text.EnumerateRunes().Count() + 1;
        }
        if (count == 0) throw new UdmException("perplexity needs at least one string.");
        return Math.Exp(nll / count);
    }
}

/// <summary>Simple statistics of generated text.</summary>
public static class TextStatistics
{
    /// <summary>Distinct-n: distinct character n-grams / all n-grams, within each string (0 if there are none).</summary>
    public static double Distinct(IEnumerable<string> texts, int n)
    {
        if (n < 1) throw new UdmException($"distinct-n needs n ≥ 1, got {n}.");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        long total = 0;
        foreach (var text in texts)
        {
            var characters = Vocabulary.Characters(text);
            for (int i = 0; i + n <= characters.Length; i++)
            {
                seen.Add(string.Concat(characters.AsSpan(i, n).ToArray()));
                total++;
            }
        }
        return total == 0 ? 0 : (double)seen.Count / total;
    }

    /// <summary>The fraction of samples that appear verbatim in the training set.</summary>
    public static double CopyRate(IEnumerable<string> samples, IEnumerable<string> training)
    {
        var set = training as IReadOnlySet<string> ?? new HashSet<string>(training, StringComparer.Ordinal);
        int copied = 0, count = 0;
        foreach (var s in samples)
        {
            count++;
            if (set.Contains(s)) copied++;
        }
        return count == 0 ? 0 : (double)copied / count;
    }
}
