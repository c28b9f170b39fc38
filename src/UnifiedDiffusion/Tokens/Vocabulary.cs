using System.Text;
using System.Text.Json;
using UnifiedDiffusion.Core;

namespace UnifiedDiffusion.Tokens;

/// <summary>
/// A character vocabulary. A "character" is one Unicode scalar value (a <see cref="Rune"/>), so
/// Han characters beyond the BMP (surrogate pairs in UTF-16) are one token each. The first three
/// ids are the special tokens [PAD] = 0, [UNK] = 1 and [MASK] = 2; regular tokens start at 3.
/// </summary>
public sealed class Vocabulary
{
    /// <summary>The padding token id (0): fills sequences shorter than the model's length.</summary>
    public const int PadId = 0;
    /// <summary>The unknown token id (1): characters outside the vocabulary.</summary>
    public const int UnknownId = 1;
    /// <summary>The mask token id (2): the absorbing state of the mask process.</summary>
    public const int MaskId = 2;
    /// <summary>The first regular (character) token id.</summary>
    public const int FirstRegularId = 3;

    /// <summary>The special tokens' names, in id order.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = ["[PAD]", "[UNK]", "[MASK]"];

    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;

    private Vocabulary(string[] tokens)
    {
        _tokens = tokens;
        _ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < tokens.Length; i++)
            if (!_ids.TryAdd(tokens[i], i)) throw new UdmException($"the vocabulary lists \"{tokens[i]}\" twice; rebuild it from the training text.");
    }

    /// <summary>Number of tokens, specials included.</summary>
    public int Count => _tokens.Length;

    /// <summary>Number of regular (character) tokens.</summary>
    public int RegularCount => _tokens.Length - FirstRegularId;

    /// <summary>Every token in id order: the three specials, then one string per character.</summary>
    public IReadOnlyList<string> Tokens => _tokens;

    /// <summary>
    /// Builds a vocabulary from training strings: the most frequent characters first, ties broken by
    /// ordinal order of the character, at most <paramref name="maxSize"/> tokens including the specials.
    /// </summary>
    public static Vocabulary Build(IEnumerable<string> texts, int maxSize = int.MaxValue)
    {
        if (maxSize <= FirstRegularId) throw new UdmException($"a vocabulary size of {maxSize} leaves no room for characters; use at least {FirstRegularId + 1}.");
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (var rune in text.EnumerateRunes())
            {
                var key = rune.ToString();
                counts[key] = counts.GetValueOrDefault(key) + 1;
            }
        var chosen = counts.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal)
            .Take(maxSize - FirstRegularId).Select(p => p.Key);
        return new Vocabulary([.. SpecialTokens, .. chosen]);
    }

    /// <summary>The id of one character (a string holding one rune), or [UNK].</summary>
    public int IdOf(string character) => _ids.TryGetValue(character, out int id) && id >= FirstRegularId ? id : UnknownId;

    /// <summary>True when <paramref name="character"/> is a regular token of this vocabulary.</summary>
    public bool Contains(string character) => IdOf(character) != UnknownId;

    /// <summary>True when every character of <paramref name="text"/> is a regular token (no [UNK] when encoded).</summary>
    public bool Covers(string text) => text.EnumerateRunes().All(r => Contains(r.ToString()));

    /// <summary>The characters of a string, one per rune.</summary>
    public static string[] Characters(string text) => [.. text.EnumerateRunes().Select(r => r.ToString())];

    /// <summary>
    /// Encodes a string into exactly <paramref name="length"/> ids: one per character, unknown
    /// characters as [UNK], padded with [PAD]. A string longer than the length is an error.
    /// </summary>
    public long[] Encode(string text, int length)
    {
        var characters = Characters(text);
        if (characters.Length > length)
            throw new UdmException($"\"{Shorten(text)}\" has {characters.Length} characters but sequences hold {length}; shorten it or use a longer sequence length.");
        var ids = new long[length];
        for (int i = 0; i < characters.Length; i++) ids[i] = IdOf(characters[i]);
        return ids;
    }

    /// <summary>
    /// Decodes ids into text: [PAD] is dropped, [MASK] is shown as '_', [UNK] as '?'. Ids outside the
    /// vocabulary are an error.
    /// </summary>
    public string Decode(IEnumerable<long> ids)
    {
        var builder = new StringBuilder();
        foreach (long id in ids)
        {
            if (id < 0 || id >= _tokens.Length) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside 0..{_tokens.Length - 1}");
            builder.Append(id switch { PadId => "", MaskId => "_", UnknownId => "?", _ => _tokens[id] });
        }
        return builder.ToString();
    }

    /// <summary>Writes the vocabulary as JSON (<c>{"tokens": [...]}</c>), atomically.</summary>
    public void Save(string path) =>
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new VocabularyFile(_tokens), new JsonSerializerOptions { WriteIndented = false }));

    /// <summary>Reads a vocabulary written by <see cref="Save"/>.</summary>
    public static Vocabulary Load(string path)
    {
        if (!File.Exists(path)) throw new UdmException($"vocabulary file {path} does not exist; give the vocab.json written next to the model.");
        VocabularyFile? file;
        try { file = JsonSerializer.Deserialize<VocabularyFile>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new UdmException($"vocabulary file {path} is not valid JSON ({e.Message.Split('\n')[0]}); rewrite it with the tool.", e); }
        return FromTokens(file?.Tokens ?? [], $"vocabulary file {path}");
    }

    /// <summary>
    /// The vocabulary whose tokens by id are <paramref name="tokens"/> (as <see cref="Tokens"/> lists
    /// them: the specials, then one character each); <paramref name="source"/> names them in errors.
    /// </summary>
    public static Vocabulary FromTokens(IReadOnlyList<string> tokens, string source = "the token list")
    {
        if (tokens.Count < FirstRegularId || !tokens.Take(FirstRegularId).SequenceEqual(SpecialTokens))
            throw new UdmException($"{source} does not start with [PAD], [UNK], [MASK]; it was not written by this tool.");
        foreach (var token in tokens.Skip(FirstRegularId))
            if (token is null || token.EnumerateRunes().Count() != 1) throw new UdmException($"{source} holds \"{token}\", which is not one character; rebuild the vocabulary.");
        return new Vocabulary([.. tokens]);
    }

    private static string Shorten(string text) => text.Length <= 24 ? text : text[..24] + "…";

    private sealed record VocabularyFile([property: System.Text.Json.Serialization.JsonPropertyName("tokens")] string[] Tokens);
}
