using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tokens;

/// <summary>
/// The exact posterior marginals q(x_0,i | x_t) for an explicit distribution over a finite set of
/// strings, by enumerating the strings that can reach x_t (<see cref="TokenProcess.CanReach"/>);
/// for both token processes the likelihood of x_t is the same for all of them, so the weights are
/// the string probabilities. When no string is consistent (only a baseline sampler can reach such a state) the marginals
/// fall back to the data marginals. Also a data source of the distribution.
/// </summary>
public sealed class FiniteStringOracle : IPosteriorModel<CategoricalPosterior>, IDataSource
{
    private readonly Tensor _strings;      // int64 [S, L]
    private readonly Tensor _probabilities; // float64 [S]
    private readonly Tensor _oneHot;       // float64 [S, L, V]
    private readonly TokenProcess _process;

    /// <summary>Creates the oracle of strings (int64 ids, one row each) with the given probabilities (normalised here).</summary>
    public FiniteStringOracle(long[][] strings, double[] probabilities, TokenProcess process, int vocabSize, string name = "finite")
    {
        if (strings.Length == 0 || strings.Length != probabilities.Length) throw new ArgumentException("give one probability per string");
        if (strings.Any(s => s.Length != process.Length)) throw new ArgumentException($"every string must have length {process.Length}");
        if (probabilities.Any(p => p < 0 || !double.IsFinite(p)) || probabilities.Sum() <= 0) throw new ArgumentException("probabilities must be non-negative with a positive sum");
        Name = name;
        _process = process;
        VocabSize = vocabSize;
        _strings = torch.tensor(strings.SelectMany(s => s).ToArray(), [strings.Length, process.Length], ScalarType.Int64);
        double total = probabilities.Sum();
        _probabilities = torch.tensor(probabilities.Select(p => p / total).ToArray(), ScalarType.Float64);
        _oneHot = nn.functional.one_hot(_strings, vocabSize).to(ScalarType.Float64);
    }

    /// <summary>The vocabulary size V.</summary>
    public int VocabSize { get; }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public long[] SampleShape => [_process.Length];

    /// <summary>The strings, int64 [S, L].</summary>
    public Tensor Strings => _strings;

    /// <summary>Their probabilities, float64 [S].</summary>
    public Tensor Probabilities => _probabilities;

    /// <inheritdoc />
    public Tensor Sample(int count, Generator generator, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var index = torch.multinomial(_probabilities, count, replacement: true, generator: generator);
        return _strings.index_select(0, index).to(device ?? torch.CPU).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public CategoricalPosterior Predict(Tensor xt, Tensor t, SamplingContext? context = null)
    {
        using var scope = torch.NewDisposeScope();
        var consistent = _process.CanReach(_strings, xt.cpu(), t.cpu()); // [B, S]
        var weights = consistent.to(ScalarType.Float64) * _probabilities.unsqueeze(0); // [B, S]
        var total = weights.sum(1, keepdim: true);
        weights = torch.where(total.gt(0), weights / total.clamp_min(1e-300), _probabilities.unsqueeze(0).expand_as(weights));
        var marginals = torch.einsum("bs,slv->blv", weights, _oneHot);
        return new CategoricalPosterior(marginals.to(xt.device).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Total-variation distance between the empirical distribution of <paramref name="samples"/>
    /// (int64 [N, L]) and this distribution; strings outside the support count fully.
    /// </summary>
    public double TotalVariation(Tensor samples)
    {
        var counts = new Dictionary<string, double>(StringComparer.Ordinal);
        var rows = samples.cpu().contiguous().data<long>().ToArray();
        long n = samples.shape[0], l = samples.shape[1];
        for (long i = 0; i < n; i++)
        {
            var key = string.Join(',', rows.AsSpan((int)(i * l), (int)l).ToArray());
            counts[key] = counts.GetValueOrDefault(key) + 1.0 / n;
        }
        var strings = _strings.data<long>().ToArray();
        var p = _probabilities.data<double>().ToArray();
        double tv = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int s = 0; s < p.Length; s++)
        {
            var key = string.Join(',', strings.AsSpan((int)(s * l), (int)l).ToArray());
            if (!seen.Add(key)) throw new InvalidOperationException("the oracle's strings must be distinct");
            tv += Math.Abs(counts.GetValueOrDefault(key) - p[s]);
        }
        tv += counts.Where(c => !seen.Contains(c.Key)).Sum(c => c.Value);
        return tv / 2;
    }

    /// <summary>
    /// The expected TV distance between N exact draws and this distribution, by the normal
    /// approximation of each count: E|p̂ − p| ≈ √(2p(1 − p)/(πN)), so E[TV] ≈ ½ Σ √(2p(1 − p)/(πN)).
    /// </summary>
    public double ExpectedSamplingTotalVariation(int n) =>
        0.5 * _probabilities.data<double>().ToArray().Sum(p => Math.Sqrt(2 * p * (1 - p) / (Math.PI * n)));
}
