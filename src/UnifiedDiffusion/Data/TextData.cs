using System.Text;
using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Tokens;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Data;

/// <summary>Train, validation and test strings of one corpus, each in a deterministic order.</summary>
/// <param name="Train">About 90% of the strings.</param>
/// <param name="Validation">About 5%.</param>
/// <param name="Test">About 5%.</param>
public sealed record TextSplits(IReadOnlyList<string> Train, IReadOnlyList<string> Validation, IReadOnlyList<string> Test)
{
    /// <summary>
    /// Splits distinct strings by a stable hash (FNV-1a of the UTF-8 bytes, mod 100): below 90
    /// train, below 95 validation, else test. The split of a string never depends on the others,
    /// so adding files does not move strings between splits. Order is kept.
    /// </summary>
    public static TextSplits ByHash(IEnumerable<string> distinct)
    {
        List<string> train = [], validation = [], test = [];
        foreach (var s in distinct)
        {
            uint bucket = StableHash(s) % 100;
            (bucket < 90 ? train : bucket < 95 ? validation : test).Add(s);
        }
        return new TextSplits(train, validation, test);
    }

    /// <summary>32-bit FNV-1a of the UTF-8 bytes: stable across runs and platforms.</summary>
    public static uint StableHash(string s)
    {
        uint hash = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(s)) hash = (hash ^ b) * 16777619;
        return hash;
    }
}

/// <summary>
/// Token sequences for the token families: int64 [N, L], every string encoded with a vocabulary
/// (unknown characters as [UNK], short strings padded with [PAD]).
/// </summary>
public sealed class TokenDataset : IDataSource
{
    private readonly Tensor _sequences;
    private readonly string? _withoutTexts;

    /// <summary>Encodes <paramref name="texts"/> into sequences of <paramref name="length"/> tokens.</summary>
    public TokenDataset(string name, IReadOnlyList<string> texts, Vocabulary vocabulary, int length)
    {
        if (texts.Count == 0) throw new UdmException($"the text set \"{name}\" is empty; check the input files.");
        Name = name;
        Texts = texts;
        Vocabulary = vocabulary;
        Length = length;
        var ids = new long[texts.Count * (long)length];
        for (int i = 0; i < texts.Count; i++) vocabulary.Encode(texts[i], length).CopyTo(ids, (long)i * length);
        _sequences = torch.tensor(ids, [texts.Count, length], ScalarType.Int64);
        UsesPadding = _sequences.eq(Vocabulary.PadId).any().item<bool>();
    }

    private TokenDataset(string name, Vocabulary vocabulary, int length, bool usesPadding, string advice)
    {
        Name = name;
        Texts = [];
        Vocabulary = vocabulary;
        Length = length;
        _sequences = torch.zeros([0, length], ScalarType.Int64);
        UsesPadding = usesPadding;
        _withoutTexts = advice;
    }

    /// <summary>
    /// A stand-in that knows the vocabulary, the length and whether sequences are padded but holds no
    /// texts: asked for a draw, it throws <paramref name="advice"/>, which says how to fetch them.
    /// </summary>
    public static TokenDataset WithoutTexts(string name, Vocabulary vocabulary, int length, bool usesPadding, string advice) =>
        new(name, vocabulary, length, usesPadding, advice);

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public long[] SampleShape => [Length];

    /// <summary>The sequence length L.</summary>
    public int Length { get; }

    /// <summary>The vocabulary.</summary>
    public Vocabulary Vocabulary { get; }

    /// <summary>The raw strings, in sequence order (for copy-rate checks).</summary>
    public IReadOnlyList<string> Texts { get; }

    /// <summary>All sequences, int64 [N, L].</summary>
    public Tensor Sequences => _withoutTexts is null ? _sequences : throw new UdmException(_withoutTexts) { Subject = "data" };

    /// <summary>True when some sequence holds [PAD] (then the model must be able to predict it).</summary>
    public bool UsesPadding { get; }

    /// <inheritdoc />
    public Tensor Sample(int count, Generator generator, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var index = torch.randint(0, Sequences.shape[0], count, dtype: ScalarType.Int64, generator: generator);
        return _sequences.index_select(0, index).to(device ?? torch.CPU).MoveToOuterDisposeScope();
    }
}

/// <summary>One poem of chinese-poetry.</summary>
/// <param name="Author">The poet.</param>
/// <param name="Title">The title.</param>
/// <param name="Paragraphs">The text, as the file splits it.</param>
public sealed record Poem(string Author, string Title, IReadOnlyList<string> Paragraphs);

/// <summary>
/// Tang and Song poems from chinese-poetry's JSON files (arrays of {author, paragraphs[], title, id}),
/// and the derived sets: 五言绝句 ("wujue", 4 lines of 5 Han characters, 20 in all), 七言绝句
/// ("qijue", 28) and single 5-character lines ("line5"). Only Han characters are kept; lines are
/// split at every non-Han character (punctuation).
/// </summary>
public static class PoemCorpus
{
    /// <summary>The derived set names.</summary>
    public static IReadOnlyList<string> SetNames { get; } = ["wujue", "wuyan", "qijue", "line5"];

    /// <summary>Reads the files in ordinal order of their paths, poems in file order.</summary>
    public static IReadOnlyList<Poem> Load(IEnumerable<string> jsonFiles)
    {
        var poems = new List<Poem>();
        foreach (var file in jsonFiles.OrderBy(f => f, StringComparer.Ordinal))
        {
            if (!File.Exists(file)) throw new UdmException($"poem file {file} does not exist; fetch the poems first or give an existing file.");
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllText(file));
                if (document.RootElement.ValueKind != JsonValueKind.Array) throw new UdmException($"poem file {file} is not a JSON array of poems; give a chinese-poetry poet.*.json file.");
                foreach (var item in document.RootElement.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("paragraphs", out var paragraphs) || paragraphs.ValueKind != JsonValueKind.Array) continue;
                    poems.Add(new Poem(Text(item, "author"), Text(item, "title"),
                        [.. paragraphs.EnumerateArray().Where(p => p.ValueKind == JsonValueKind.String).Select(p => p.GetString()!)]));
                }
            }
            catch (JsonException e)
            {
                throw new UdmException($"poem file {file} is not valid JSON ({e.Message.Split('\n')[0]}); fetch it again.", e);
            }
        }
        return poems;
    }

    private static string Text(JsonElement item, string name) =>
        item.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";

    /// <summary>True for a CJK unified ideograph (including extensions A–H and the compatibility blocks).</summary>
    public static bool IsHan(Rune r) => r.Value is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x323AF
        or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;

    /// <summary>The poem's lines: maximal runs of Han characters.</summary>
    public static IReadOnlyList<string> Lines(Poem poem)
    {
        var lines = new List<string>();
        var current = new StringBuilder();
        foreach (var paragraph in poem.Paragraphs)
        {
            foreach (var rune in paragraph.EnumerateRunes())
            {
                if (IsHan(rune)) current.Append(rune.ToString());
                else if (current.Length > 0) { lines.Add(current.ToString()); current.Clear(); }
            }
            if (current.Length > 0) { lines.Add(current.ToString()); current.Clear(); }
        }
        return lines;
    }

    /// <summary>Quatrains: poems of exactly 4 lines of <paramref name="lineLength"/> characters, joined, distinct, split by hash.</summary>
    public static TextSplits Quatrains(IEnumerable<Poem> poems, int lineLength) =>
        TextSplits.ByHash(poems.Select(Lines).Where(l => l.Count == 4 && l.All(x => RuneCount(x) == lineLength))
            .Select(l => string.Concat(l)).Distinct(StringComparer.Ordinal));

    /// <summary>
    /// Every four-line unit of 5-character poems, 20 characters each: quatrains (五言绝句), both halves
    /// of 8-line regulated verse (五言律诗), and each 4-line stanza of longer 5-character poems whose
    /// line count is a multiple of four. Split by poem (the hash of the whole poem), so that no
    /// held-out poem has a half in training; a unit seen before (in another poem) is not added again.
    /// </summary>
    public static TextSplits FiveCharacterStanzas(IEnumerable<Poem> poems)
    {
        List<string> train = [], validation = [], test = [];
        var poemsSeen = new HashSet<string>(StringComparer.Ordinal);
        var unitsSeen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var poem in poems)
        {
            var lines = Lines(poem);
            if (lines.Count == 0 || lines.Count % 4 != 0 || !lines.All(l => RuneCount(l) == 5)) continue;
            string whole = string.Concat(lines);
            if (!poemsSeen.Add(whole)) continue;
            uint bucket = TextSplits.StableHash(whole) % 100;
            var target = bucket < 90 ? train : bucket < 95 ? validation : test;
            for (int k = 0; k < lines.Count; k += 4)
            {
                string unit = string.Concat(lines.Skip(k).Take(4));
                if (unitsSeen.Add(unit)) target.Add(unit);
            }
        }
        return new TextSplits(train, validation, test);
    }

    /// <summary>Every line of exactly <paramref name="lineLength"/> characters, distinct, split by hash.</summary>
    public static TextSplits SingleLines(IEnumerable<Poem> poems, int lineLength) =>
        TextSplits.ByHash(poems.SelectMany(Lines).Where(x => RuneCount(x) == lineLength).Distinct(StringComparer.Ordinal));

    /// <summary>A derived set by name: wujue (20 characters), wuyan (20, every 5-character stanza), qijue (28) or line5 (5).</summary>
    public static TextSplits Derive(IEnumerable<Poem> poems, string set) => set.ToLowerInvariant() switch
    {
        "wujue" => Quatrains(poems, 5),
        "wuyan" => FiveCharacterStanzas(poems),
        "qijue" => Quatrains(poems, 7),
        "line5" => SingleLines(poems, 5),
        _ => throw new UdmException($"unknown poem set \"{set}\": use one of {string.Join(", ", SetNames)}."),
    };

    /// <summary>The sequence length of a derived set.</summary>
    public static int LengthOf(string set) => set.ToLowerInvariant() switch
    {
        "wujue" or "wuyan" => 20,
        "qijue" => 28,
        "line5" => 5,
        _ => throw new UdmException($"unknown poem set \"{set}\": use one of {string.Join(", ", SetNames)}."),
    };

    internal static int RuneCount(string s) => s.EnumerateRunes().Count();
}

/// <summary>
/// Plain English text cut into fixed windows (Moby-Dick's data.txt): lower-cased; letters a–z,
/// space and the punctuation <c>.,;:'!?-</c> kept (36 symbols); every other character becomes a
/// space; whitespace runs collapse to one space; then non-overlapping windows. Split by position
/// (first 90% of the windows train, next 5% validation, last 5% test), so neighbouring text never
/// straddles two splits except at the two borders. A user's <c>text:</c> file may instead be
/// Chinese (<see cref="LoadUserText"/>): Han characters and Chinese punctuation, without spaces.
/// </summary>
public static class PlainTextCorpus
{
    /// <summary>The kept punctuation.</summary>
    public const string Punctuation = ".,;:'!?-";

    /// <summary>Normalises text to the 36-symbol alphabet.</summary>
    public static string Normalize(string text)
    {
        var builder = new StringBuilder(text.Length);
        bool space = true;
        foreach (char raw in text.ToLowerInvariant())
        {
            char c = raw is >= 'a' and <= 'z' || Punctuation.Contains(raw) ? raw : ' ';
            if (c == ' ') { if (!space) builder.Append(' '); space = true; }
            else { builder.Append(c); space = false; }
        }
        return builder.ToString().TrimEnd();
    }

    /// <summary>The kept punctuation of Chinese text.</summary>
    public const string ChinesePunctuation = "，。！？；：、「」『』《》（）…—·";

    /// <summary>The largest share of a <c>text:</c> file's visible characters that its alphabet may drop: English with digits, brackets and quotes loses about 10%, a file in another script or binary data most of it.</summary>
    public const double MaxLostShare = 0.20;

    /// <summary>True for a Han character of the Basic Multilingual Plane (CJK unified ideographs, extension A, compatibility).</summary>
    public static bool IsHan(char c) => c is >= '\u4E00' and <= '\u9FFF' or >= '\u3400' and <= '\u4DBF' or >= '\uF900' and <= '\uFAFF';

    /// <summary>Chinese text: Han characters and <see cref="ChinesePunctuation"/> kept, everything else (spaces and line breaks too) dropped.</summary>
    public static string NormalizeChinese(string text) => string.Concat(text.Where(c => IsHan(c) || ChinesePunctuation.Contains(c)));

    /// <summary>Reads a text file and cuts it into windows of <paramref name="window"/> characters.</summary>
    public static TextSplits Load(string file, int window = 32)
    {
        if (!File.Exists(file)) throw new UdmException($"text file {file} does not exist; fetch the data first or give an existing file.");
        return Windows(File.ReadAllText(file), window);
    }

    /// <summary>
    /// A user's <c>text:</c> file: Chinese when at least half of its visible characters are Han (then
    /// Han characters and Chinese punctuation are kept), otherwise the 36-symbol Latin alphabet of
    /// <see cref="Normalize"/>. A file that would lose more than <see cref="MaxLostShare"/> of its
    /// visible characters to its alphabet (another script, binary data) is refused, naming what it loses.
    /// </summary>
    public static TextSplits LoadUserText(string file, int window)
    {
        if (!File.Exists(file)) throw new UdmException($"text file {file} does not exist; give an existing file.");
        string text = File.ReadAllText(file);
        var visible = text.Where(c => !char.IsWhiteSpace(c)).ToList();
        bool chinese = visible.Count > 0 && visible.Count(IsHan) * 2 >= visible.Count;
        Func<char, bool> kept = chinese ? c => IsHan(c) || ChinesePunctuation.Contains(c) : c => char.ToLowerInvariant(c) is >= 'a' and <= 'z' || Punctuation.Contains(c);
        var lost = visible.Where(c => !kept(c)).ToList();
        if (lost.Count > MaxLostShare * visible.Count)
        {
            string examples = string.Join(", ", lost.GroupBy(c => c).OrderByDescending(g => g.Count()).Take(5)
                .Select(g => (char.IsControl(g.Key) || g.Key == '\uFFFD' ? $"U+{(int)g.Key:X4}" : $"'{g.Key}'") + $" ×{g.Count():N0}"));
            string alphabet = chinese ? $"Han characters and {ChinesePunctuation}" : $"the letters a–z (any case), space and {Punctuation}";
            throw new UdmException($"{file} would lose {lost.Count:N0} of its {visible.Count:N0} visible characters ({100.0 * lost.Count / visible.Count:0}%) to the text: alphabet, {alphabet} (most lost: {examples}); convert the file to that alphabet, or use it for Latin or Chinese text only.");
        }
        return Cut(chinese ? NormalizeChinese(text) : Normalize(text), window);
    }

    /// <summary>Normalises <paramref name="text"/> and cuts it into non-overlapping windows, split by position.</summary>
    public static TextSplits Windows(string text, int window = 32)
    {
        return Cut(Normalize(text), window);
    }

    /// <summary>Cuts normalised text into non-overlapping windows, split by position (90/5/5).</summary>
    private static TextSplits Cut(string normalized, int window)
    {
        if (window < 1) throw new UdmException($"a window of {window} characters is too short; use at least 1.");
        var windows = new List<string>();
        for (int i = 0; i + window <= normalized.Length; i += window) windows.Add(normalized.Substring(i, window));
        int train = (int)(windows.Count * 0.90), validation = (int)(windows.Count * 0.95);
        return new TextSplits(windows[..train], windows[train..validation], windows[validation..]);
    }
}

/// <summary>
/// Names, one per line (the stdlib first-name lists): trimmed, lower-cased, only names of letters
/// a–z, '-' and '\'' and at most <c>maxLength</c> characters kept (longer names are dropped),
/// distinct, split by hash. Sequences are padded with [PAD] by the vocabulary.
/// </summary>
public static class NameCorpus
{
    /// <summary>Reads the files in ordinal order of their paths.</summary>
    public static TextSplits Load(IEnumerable<string> files, int maxLength = 12)
    {
        var names = new List<string>();
        foreach (var file in files.OrderBy(f => f, StringComparer.Ordinal))
        {
            if (!File.Exists(file)) throw new UdmException($"names file {file} does not exist; fetch the data first or give an existing file.");
            names.AddRange(File.ReadLines(file));
        }
        return FromLines(names, maxLength);
    }

    /// <summary>Cleans and splits names given as lines.</summary>
    public static TextSplits FromLines(IEnumerable<string> lines, int maxLength = 12) =>
        TextSplits.ByHash(lines.Select(l => l.Trim().ToLowerInvariant())
            .Where(n => n.Length > 0 && n.Length <= maxLength && n.All(c => c is >= 'a' and <= 'z' or '-' or '\''))
            .Distinct(StringComparer.Ordinal));
}
