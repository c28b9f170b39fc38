using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Tokens;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Tokens;

public sealed class TokenProcessTests
{
    private const int L = 12, V = 10;

    private static Tensor Data(int n, ulong seed) =>
        torch.randint(Vocabulary.FirstRegularId, V, [n, L], dtype: ScalarType.Int64, generator: new Generator(seed));

    [Fact]
    public void MaskCorruptMasksExactlyTPositionsAndInversionRecoversThem()
    {
        using var scope = torch.NewDisposeScope();
        var process = new MaskProcess(L);
        var x0 = Data(64, 1);
        var t = torch.randint(0, L + 1, 64, dtype: ScalarType.Int64, generator: new Generator(2));
        var noise = process.SampleNoise(x0, new Generator(3));
        var xt = process.Corrupt(x0, t, noise);
        Assert.True(process.LevelOf(xt).eq(t).all().item<bool>());
        Assert.True((xt.eq(x0) | xt.eq(Vocabulary.MaskId)).all().item<bool>(), "unmasked tokens changed");
        Assert.True(xt.eq(process.Corrupt(x0, t, noise)).all().item<bool>(), "Corrupt is not deterministic given noise");
        Assert.True(process.Corrupt(x0, t, process.InferNoise(x0, xt, t)).eq(xt).all().item<bool>(), "inversion does not recover x_t");
        // Nested levels mask nested sets.
        var lower = process.Corrupt(x0, (t - 1).clamp_min(0), noise);
        Assert.True((lower.eq(Vocabulary.MaskId) & xt.ne(Vocabulary.MaskId)).any().item<bool>() == false);
        Assert.True(process.SamplePrior([3, L], torch.CPU, null).eq(Vocabulary.MaskId).all().item<bool>());
    }

    [Fact]
    public void EditChangesExactlyTPositionsToDifferentRegularTokensAndInversionRecoversThem()
    {
        using var scope = torch.NewDisposeScope();
        var process = new EditProcess(L, V);
        var x0 = Data(256, 4);
        var t = torch.randint(0, L + 1, 256, dtype: ScalarType.Int64, generator: new Generator(5));
        var noise = process.SampleNoise(x0, new Generator(6));
        var xt = process.Corrupt(x0, t, noise);
        Assert.True(xt.ne(x0).sum(1).eq(t).all().item<bool>(), "not exactly t positions changed");
        Assert.True(xt.ge(Vocabulary.FirstRegularId).all().item<bool>(), "a special token was inserted");
        var back = process.Corrupt(x0, t, process.InferNoise(x0, xt, t));
        Assert.True(back.eq(xt).all().item<bool>(), "inversion does not reproduce x_t");
        // Replacements are uniform over the other R − 1 = 6 tokens: each offset about 1/6 of changes.
        var offsets = (xt - x0).remainder(V - Vocabulary.FirstRegularId).masked_select(xt.ne(x0));
        var counts = torch.bincount(offsets, minlength: 7).to(ScalarType.Float64);
        Assert.Equal(0.0, counts[0].item<double>());
        var share = counts[1..] / counts.sum();
        Assert.True((share - 1.0 / 6).abs().max().item<double>() < 0.03, "replacement offsets are not uniform");
        var prior = process.SamplePrior([4, L], torch.CPU, new Generator(1));
        Assert.True(prior.ge(Vocabulary.FirstRegularId).all().item<bool>() && prior.lt(V).all().item<bool>());
    }

    [Fact]
    public void EditExactPriorDiffersFromTheDataEverywhere()
    {
        using var scope = torch.NewDisposeScope();
        var data = TokenToys.Small();
        var plain = new EditProcess(3, 7);
        var oracle = TokenToys.Oracle(data, plain, 7);
        var prior = plain.WithExactPrior(oracle).SamplePrior([1000, 3], torch.CPU, new Generator(3));
        var x0 = oracle.Sample(1000, new Generator(3)); // the prior's own first draw from the same seed
        Assert.True(prior.ne(x0).all().item<bool>());
    }

    [Fact]
    public void TokenFamiliesKeepKnownTokensAtEveryLevel()
    {
        using var scope = torch.NewDisposeScope();
        var known = Data(4, 7);
        foreach (TokenProcess process in new TokenProcess[] { new MaskProcess(L), new EditProcess(L, V) })
            foreach (int s in new[] { 0, 5, L })
                Assert.True(((IForwardProcess)process).CorruptKnown(known, s, new Generator(1)).eq(known).all().item<bool>());
    }

    [Fact]
    public void MaskKernelFillsExactlyTMinusSPositionsAndKeepsTheRest()
    {
        using var scope = torch.NewDisposeScope();
        var process = new MaskProcess(L);
        var x0 = Data(32, 8);
        var xt = process.CorruptAt(x0, 9, process.SampleNoise(x0, new Generator(9)));
        var posterior = new CategoricalPosterior(nn.functional.one_hot(x0, V).to(ScalarType.Float32));
        foreach (var order in new[] { FillOrder.Random, FillOrder.Confident })
        {
            var xs = new MaskFillKernel(process, order).Step(process, xt, new ReverseStep(9, 4, 0, [9, 4, 0]), posterior, new SamplingContext { Generator = new Generator(2) });
            Assert.True(process.LevelOf(xs).eq(4).all().item<bool>());
            Assert.True((xs.eq(x0) | xs.eq(Vocabulary.MaskId)).all().item<bool>());
            Assert.True((xt.ne(Vocabulary.MaskId) & xs.ne(xt)).any().item<bool>() == false);
        }
    }

    [Fact]
    public void EditKernelRepairsTMinusSPositionsWithDifferentTokens()
    {
        using var scope = torch.NewDisposeScope();
        var process = new EditProcess(L, V);
        var x0 = Data(32, 10);
        var xt = process.CorruptAt(x0, 6, process.SampleNoise(x0, new Generator(11)));
        var posterior = new CategoricalPosterior(nn.functional.one_hot(x0, V).to(ScalarType.Float32));
        foreach (bool greedy in new[] { false, true })
        {
            var xs = new EditRepairKernel(process, greedy).Step(process, xt, new ReverseStep(6, 2, 0, [6, 2, 0]), posterior, new SamplingContext { Generator = new Generator(3) });
            // A perfect posterior puts w = 1 on exactly the 6 changed positions: 4 of them are repaired to x_0.
            Assert.True(xs.ne(xt).sum(1).eq(4).all().item<bool>());
            Assert.True(xs.ne(x0).sum(1).eq(2).all().item<bool>());
        }
    }

    [Fact]
    public void CachingModelReusesTheOutputForAnUnchangedInput()
    {
        using var scope = torch.NewDisposeScope();
        var process = new MaskProcess(3);
        var oracle = TokenToys.Oracle(TokenToys.Small(), process, 7);
        using var cache = new CachingPosteriorModel(oracle, levelFromInput: true);
        var x = torch.tensor(new long[] { 3, 2, 2, 4, 2, 2 }).reshape(2, 3);
        var first = cache.Predict(x, torch.tensor(new long[] { 2, 2 })).Probabilities.clone();
        var second = cache.Predict(x.clone(), torch.tensor(new long[] { 3, 3 })).Probabilities;
        Assert.True(first.eq(second).all().item<bool>());
        Assert.True(first.eq(oracle.Predict(x, torch.tensor(new long[] { 2, 2 })).Probabilities).all().item<bool>());
        Assert.Equal((1, 1, 2L, 2L), (cache.Evaluations, cache.Saved, cache.RowEvaluations, cache.RowsSaved));

        // Infilling with a template and a grid with more levels than free positions (3 > 2):
        // step 1 sees 8 identical rows (one row evaluated), step 2 the same x (it filled nothing),
        // step 3 distinct rows. A second run starts from the same rows: its first step is free.
        using var counting = new CachingPosteriorModel(oracle, levelFromInput: true);
        var known = torch.tensor(new long[] { 4, 0, 0 }).unsqueeze(0).expand(8, 3).contiguous();
        var mask = torch.tensor(new[] { true, false, false }).unsqueeze(0).expand(8, 3).contiguous();
        var sampler = new Sampler<CategoricalPosterior>(process, counting, process.ImprovedKernel(confident: false));
        var options = new SamplingOptions { Fixed = new FixedPart(known, mask) };
        var samples = sampler.Sample([8, 3], TimeGrid.Create(3, 3), torch.CPU, new Generator(1), options);
        Assert.Equal((2, 1, 9L, 15L), (counting.Evaluations, counting.Saved, counting.RowEvaluations, counting.RowsSaved));
        Assert.True(samples[.., 0].eq(4).all().item<bool>() && samples.ne(Vocabulary.MaskId).all().item<bool>());
        sampler.Sample([8, 3], TimeGrid.Create(3, 3), torch.CPU, new Generator(2), options);
        Assert.Equal(3, counting.Evaluations);
        Assert.Equal(3, counting.Saved);
    }

    [Fact]
    public void TemplatesParseBothFormsAndGiveTheFreeCountGrid()
    {
        var vocabulary = Vocabulary.Build(["春夏秋冬花月", "床前明月光"]);
        var commas = TokenTemplate.Parse("春,,,,,夏,,,,,秋,,,,,冬", vocabulary, 20);
        Assert.Equal(16, commas.FreeCount);
        Assert.Equal([0, 5, 10, 15], Enumerable.Range(0, 20).Where(i => commas.IsFixed[i]));
        Assert.Equal(vocabulary.IdOf("夏"), commas.Known[5]);
        Assert.Equal(16, commas.Grid(100)[0]);
        var placeholders = TokenTemplate.Parse("床＿＿月_", vocabulary, 5);
        Assert.Equal([true, false, false, true, false], placeholders.IsFixed);
        using var fixedPart = torch.NewDisposeScope();
        var part = placeholders.ToFixedPart(3);
        Assert.Equal([3L, 5L], part.Known.shape);
    }

    [Theory]
    [InlineData("春,,,,,,", 5, "positions")]
    [InlineData("犬____", 5, "vocabulary")]
    [InlineData("春夏秋冬花", 5, "every position")]
    [InlineData("春,夏秋", 5, "one character")]
    [InlineData("", 5, "empty")]
    public void TemplateErrorsAreOneLine(string template, int length, string expected)
    {
        var vocabulary = Vocabulary.Build(["春夏秋冬花月"]);
        var e = Assert.Throws<UdmException>(() => TokenTemplate.Parse(template, vocabulary, length));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void VocabularyRoundTripsIncludingCharactersBeyondTheBmp()
    {
        const string rare = "𠀋𡈽"; // two Han characters of extension B (surrogate pairs)
        var vocabulary = Vocabulary.Build(["aab", "ba" + rare, "c"], maxSize: 7);
        Assert.Equal(["[PAD]", "[UNK]", "[MASK]", "a", "b", "c", "𠀋"], vocabulary.Tokens);
        var ids = vocabulary.Encode("b𠀋z", 5);
        Assert.Equal([4L, 6L, Vocabulary.UnknownId, Vocabulary.PadId, Vocabulary.PadId], ids);
        Assert.Equal("b𠀋?", vocabulary.Decode(ids));
        string path = Path.Combine(Path.GetTempPath(), $"udm-vocab-{Guid.NewGuid():N}.json");
        try
        {
            vocabulary.Save(path);
            var loaded = Vocabulary.Load(path);
            Assert.Equal(vocabulary.Tokens, loaded.Tokens);
            File.WriteAllText(path, "{\"tokens\": [\"a\"]}");
            Assert.DoesNotContain('\n', Assert.Throws<UdmException>(() => Vocabulary.Load(path)).Message);
        }
        finally { File.Delete(path); }
        Assert.Throws<UdmException>(() => vocabulary.Encode("abcabc", 5));
    }
}
