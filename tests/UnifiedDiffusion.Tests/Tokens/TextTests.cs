using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Metrics;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Tokens;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Tokens;

public sealed class TextDataTests
{
    [Fact]
    public void PoemCorpusDerivesQuatrainsAndLinesWithHanCharactersOnly()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"udm-poems-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            string file = Path.Combine(folder, "poet.tang.0.json");
            File.WriteAllText(file, """
                [{"author":"李白","paragraphs":["床前明月光，疑是地上霜。","舉頭望明月，低頭思故鄉。"],"title":"靜夜思","id":"a"},
                 {"author":"李白","paragraphs":["床前明月光，疑是地上霜。","舉頭望明月，低頭思故鄉。"],"title":"dup","id":"b"},
                 {"author":"王之渙","paragraphs":["白日依山盡，黃河入海流。","欲窮千里目，更上一層樓。"],"title":"登鸛雀樓","id":"c"},
                 {"author":"x","paragraphs":["朝辭白帝彩雲間，千里江陵一日還。","兩岸猿聲啼不住，輕舟已過萬重山。"],"title":"七絕","id":"d"},
                 {"author":"y","paragraphs":["春眠不覺曉，處處聞啼鳥。"],"title":"two lines","id":"e"}]
                """);
            var poems = PoemCorpus.Load([file]);
            Assert.Equal(5, poems.Count);
            var wujue = PoemCorpus.Derive(poems, "wujue");
            var all = wujue.Train.Concat(wujue.Validation).Concat(wujue.Test).ToList();
            Assert.Equal(2, all.Count); // the duplicate is removed, the 2-line poem is not a quatrain
            Assert.Contains("床前明月光疑是地上霜舉頭望明月低頭思故鄉", all);
            var qijue = PoemCorpus.Derive(poems, "qijue");
            Assert.Equal(28, qijue.Train.Concat(qijue.Validation).Concat(qijue.Test).Single().Length);
            var lines = PoemCorpus.Derive(poems, "line5");
            Assert.Equal(10, lines.Train.Count + lines.Validation.Count + lines.Test.Count);
            Assert.Equal(lines.Train, PoemCorpus.Derive(poems, "line5").Train);
            File.WriteAllText(file, "{ not json");
            Assert.DoesNotContain('\n', Assert.Throws<UdmException>(() => PoemCorpus.Load([file])).Message);
        }
        finally { Directory.Delete(folder, true); }
    }

    [Fact]
    public void WuyanTakesEveryFiveCharacterStanzaAndSplitsByPoem()
    {
        static Poem P(params string[] lines) => new("a", "t", [.. lines]);
        string[] lushi = ["國破山河在", "城春草木深", "感時花濺淚", "恨別鳥驚心", "烽火連三月", "家書抵萬金", "白頭搔更短", "渾欲不勝簪"];
        var poems = new[]
        {
            P("床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"),      // a quatrain: one unit
            P([.. lushi.Select(l => l + "，")]),                              // regulated verse: two units
            P("朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"), // 7 characters: none
            P("春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。", "白日依山盡，黃河入海流。"), // 6 lines: none
            P("床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"),      // the same poem again: none
        };
        var split = PoemCorpus.Derive(poems, "wuyan");
        var all = split.Train.Concat(split.Validation).Concat(split.Test).ToList();
        Assert.Equal(3, all.Count);
        Assert.All(all, unit => Assert.Equal(20, unit.Length));
        string first = string.Concat(lushi.Take(4)), second = string.Concat(lushi.Skip(4));
        Assert.Contains(first, all);
        Assert.Contains(second, all);
        // Both halves of the regulated verse are on the same side of the split.
        var sides = new[] { split.Train, split.Validation, split.Test };
        Assert.Equal(Array.FindIndex(sides, s => s.Contains(first)), Array.FindIndex(sides, s => s.Contains(second)));
        Assert.Equal(20, PoemCorpus.LengthOf("wuyan"));
    }

    [Fact]
    public void HashSplitIsStableAndRoughlyNinetyFiveFive()
    {
        var strings = Enumerable.Range(0, 20_000).Select(i => $"s{i}").ToList();
        var split = TextSplits.ByHash(strings);
        Assert.InRange(split.Train.Count / 20_000.0, 0.88, 0.92);
        Assert.InRange(split.Test.Count / 20_000.0, 0.04, 0.06);
        Assert.Equal(0xE40C292Cu, TextSplits.StableHash("a")); // published FNV-1a 32 test vector
    }

    [Fact]
    public void PlainTextWindowsUseTheSmallAlphabetAndNamesArePadded()
    {
        var text = string.Concat(Enumerable.Repeat("Call me  Ishmael.\nSome years ago—never mind how long (1851)! ", 10));
        var splits = PlainTextCorpus.Windows(text, 32);
        var all = splits.Train.Concat(splits.Validation).Concat(splits.Test).ToList();
        Assert.All(all, w => Assert.Equal(32, w.Length));
        Assert.All(all, w => Assert.True(w.All(c => c is >= 'a' and <= 'z' or ' ' || PlainTextCorpus.Punctuation.Contains(c)) && !w.Contains("  ")));
        Assert.StartsWith("call me ishmael. some years ago ", all[0]);

        var names = NameCorpus.FromLines(["Anna", "anna", " Bob ", "Maximilianusss", "Jo-Ann", "X1"], maxLength: 12);
        var kept = names.Train.Concat(names.Validation).Concat(names.Test).Order().ToList();
        Assert.Equal(["anna", "bob", "jo-ann"], kept);
        var vocabulary = Vocabulary.Build(kept);
        var data = new TokenDataset("names", kept, vocabulary, 12);
        Assert.True(data.UsesPadding);
        Assert.Equal([12L], data.SampleShape);
        using var batch = data.Sample(50, new Generator(1));
        Assert.Equal([50L, 12L], batch.shape);
        Assert.Equal(Vocabulary.PadId, batch[0, 11].item<long>());
    }
}

public sealed class TextMetricTests
{
    private static readonly string[] Training = PlainTextCorpus.Windows(string.Concat(Enumerable.Repeat(
        "the whale swam in the sea and the sailors watched the whale from the ship while the sea was calm. ", 40)), 24).Train.ToArray();

    [Fact]
    public void NGramPerplexityOfTrainingTextIsLowerThanOfShuffledText()
    {
        var model = new NGramModel(Training);
        var random = new Random(3);
        var shuffled = Training.Select(s => new string([.. s.OrderBy(_ => random.Next())])).ToArray();
        double own = model.Perplexity(Training), other = model.Perplexity(shuffled);
        Assert.True(own < 3 && other > 3 * own, $"perplexity {own:F2} on training text, {other:F2} shuffled");
        Assert.True(double.IsFinite(model.Perplexity(["zzz qqq ###"])));
    }

    /// <summary>
    /// The smoothed model is a proper distribution over strings: summing P over every string of up to
    /// 9 symbols from {a, b, unknown} gives at most 1 and, with the end symbol likely, nearly 1.
    /// </summary>
    [Fact]
    public void NGramProbabilitiesSumToOneOverStrings()
    {
        var model = new NGramModel(["ab", "ba", "aab", "b"]);
        string[] symbols = ["a", "b", "x"];
        double total = 0;
        var frontier = new List<string> { "" };
        for (int length = 0; length <= 9; length++)
        {
            total += frontier.Sum(s => Math.Exp(model.LogProbability(s)));
            frontier = [.. frontier.SelectMany(s => symbols.Select(c => s + c))];
        }
        Assert.InRange(total, 0.95, 1 + 1e-9);
    }

    [Fact]
    public void DistinctAndCopyRate()
    {
        Assert.Equal(2.0 / 4, TextStatistics.Distinct(["abab", "ab"], 2)); // ab, ba, ab + ab → {ab, ba}
        Assert.Equal(1.0, TextStatistics.Distinct(["春眠不覺曉"], 1));
        Assert.Equal(0.0, TextStatistics.Distinct(["a"], 2));
    }

    [Fact]
    public void CopyRateCountsVerbatimSamples() =>
        Assert.Equal(0.5, TextStatistics.CopyRate(["abc", "xyz", "abc", "qqq"], ["abc", "def"]));
}

/// <summary>A network that outputs the oracle's log-marginals, so the bounds can be checked against exact values.</summary>
internal sealed class OracleNetwork(FiniteStringOracle oracle) : nn.Module<Tensor, Tensor, Tensor>("OracleNetwork")
{
    public override Tensor forward(Tensor tokens, Tensor level) => oracle.Predict(tokens, level).Probabilities.clamp_min(1e-30).log();
}

[Collection(nameof(UnifiedDiffusion.Tests.Runs.GoldenOutputCollection))] // alone: it seeds and draws from the global generator
public sealed class TokenModelTests(ITestOutputHelper output)
{
    /// <summary>
    /// With the exact conditionals, the mask bound is tight: its expectation over masks is −log p(x_0)
    /// for every x_0 (any order of unmasking gives the chain rule). Tolerance fixed in advance: 0.06
    /// nats per sequence, 4 standard errors of the mask Monte Carlo (per-sequence sd ≲ 1 nat, 4,000 rows).
    /// The edit process is not Markov in x_t (which positions may still change depends on x_0), so its
    /// bound is not tight even with exact marginals; it must lie above H + KL(q(x_l) ‖ uniform) (the
    /// cost of the uniform prior), both computed by enumeration (tolerance 0.06 nats). For a one-string
    /// distribution it is exact: l·log(R/(R − 1)), the prior's cost alone.
    /// </summary>
    [Fact]
    public void BoundsWithTheExactPosteriorMatchTheirClosedForms()
    {
        using var scope = torch.NewDisposeScope();
        var (strings, p) = TokenToys.Small();
        var mask = new MaskProcess(3);
        var maskOracle = TokenToys.Oracle((strings, p), mask, 7);
        var data = maskOracle.Sample(4000, new Generator(1));
        double nll = MeanNegativeLogProbability(maskOracle, data);
        var maskBound = mask.HeldOutBound(new TokenPosteriorModel(new OracleNetwork(maskOracle), mask, 7), data, seed: 2);

        var edit = new EditProcess(3, 7);
        var editOracle = TokenToys.Oracle((strings, p), edit, 7);
        var editBound = edit.HeldOutBound(new TokenPosteriorModel(new OracleNetwork(editOracle), edit, 7), data, seed: 3);
        // q(x_l) = Σ p(x_0) Π_i [x_l,i ≠ x_0,i]/3 over the 4³ strings; KL to uniform 4⁻³.
        double kl = 0;
        for (int code = 0; code < 64; code++)
        {
            int[] x = [code % 4, code / 4 % 4, code / 16];
            double q = 0;
            for (int s = 0; s < strings.Length; s++)
                if (Enumerable.Range(0, 3).All(i => strings[s][i] - TokenToys.First != x[i])) q += p[s] / 27;
            if (q > 0) kl += q * Math.Log(q * 64);
        }
        output.WriteLine($"mean −log p {nll:F4}; mask bound {maskBound.NatsPerSequence:F4} ({maskBound.BitsPerToken:F4} bits/token); edit bound {editBound.NatsPerSequence:F4}, expected {nll + kl:F4} (KL {kl:F4})");
        Assert.InRange(maskBound.NatsPerSequence, nll - 0.06, nll + 0.06);
        Assert.Equal(maskBound.NatsPerSequence / (3 * Math.Log(2)), maskBound.BitsPerToken, 10);
        Assert.True(editBound.NatsPerSequence > nll + kl - 0.06, $"edit bound {editBound.NatsPerSequence:F4} below H + KL {nll + kl:F4}");
        long[][] one = [[TokenToys.First, TokenToys.First + 2, TokenToys.First + 1]];
        var single = new FiniteStringOracle(one, [1.0], edit, 7);
        var singleBound = edit.HeldOutBound(new TokenPosteriorModel(new OracleNetwork(single), edit, 7), single.Sample(64, new Generator(4)), seed: 5);
        Assert.Equal(3 * Math.Log(4.0 / 3), singleBound.NatsPerSequence, 6);
    }

    private static double MeanNegativeLogProbability(FiniteStringOracle oracle, Tensor data)
    {
        var match = data.unsqueeze(1).eq(oracle.Strings.unsqueeze(0)).all(2).to(ScalarType.Float64); // [N, S]
        return -(match.matmul(oracle.Probabilities)).log().mean().item<double>();
    }

    [Fact]
    public void TransformerGivesLogitsOfTheRightShapeAndTrainingLowersTheLoss()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(1);
        var texts = PlainTextCorpus.Windows(string.Concat(Enumerable.Repeat("the whale and the sea and the ship. ", 60)), 16).Train;
        var vocabulary = Vocabulary.Build(texts);
        var data = new TokenDataset("toy", texts, vocabulary, 16);
        var process = new MaskProcess(16);
        var network = new TextTransformer(vocabulary.Count, 16, new TransformerConfig(Dimension: 32, Layers: 2, Heads: 2, FeedForward: 64, Dropout: 0), 16);
        using (torch.no_grad())
        {
            var logits = network.forward(data.Sample(3, new Generator(1)), torch.tensor(new long[] { 0, 5, 16 }));
            Assert.Equal([3L, 16L, (long)vocabulary.Count], logits.shape);
        }
        var model = new TokenPosteriorModel(network, process, vocabulary.Count);
        var trainer = new Trainer(network, (x0, g) => DenoisingObjective.Loss(process, model, x0, g), data,
            new TrainingOptions(Steps: 30, BatchSize: 32, LearningRate: 1e-2, WarmupSteps: 0, Seed: 1), "{}");
        trainer.Run(null);
        double first = trainer.Losses.Take(5).Average(), last = trainer.Losses.TakeLast(5).Average();
        output.WriteLine($"loss {first:F3} → {last:F3}");
        Assert.True(last < 0.8 * first, $"loss did not fall: {first:F3} → {last:F3}");
        var posterior = model.Predict(process.SamplePrior([2, 16], torch.CPU, null), ForwardProcessExtensions.LevelTensor(16, 2, torch.CPU));
        Assert.Equal(0.0, posterior.Probabilities[.., .., Vocabulary.MaskId].sum().item<float>());
        // With a fixed part the network is conditioned on the actual number of masks, not the grid's level,
        // and an unmasked position's marginal is the point mass on its token.
        var partial = data.Sample(2, new Generator(3));
        partial[.., ..10] = Vocabulary.MaskId;
        var grid = ForwardProcessExtensions.LevelTensor(16, 2, torch.CPU);
        Assert.Equal([10L, 10L], process.ConditioningLevel(partial, grid).data<long>().ToArray());
        var carried = model.Predict(partial, grid).Probabilities.gather(2, partial.unsqueeze(2)).squeeze(2)[.., 10..];
        Assert.True(carried.eq(1).all().item<bool>());
        var samples = new Sampler<CategoricalPosterior>(process, model, process.ImprovedKernel(confident: true))
            .Sample([4, 16], TimeGrid.Create(16, 4, TimeSpacing.Trailing), torch.CPU, new Generator(2));
        Assert.False(samples.eq(Vocabulary.MaskId).any().item<bool>());
    }
}
