using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Tests.Cli;
using Xunit;

namespace UnifiedDiffusion.Tests.Data;

/// <summary>text:FILE: its two alphabets (Latin, Chinese) and files that would lose too much to them.</summary>
public sealed class UserTextTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("udm-text-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Write(string name, string text)
    {
        string path = Path.Combine(_root, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void LatinTextKeepsItsAlphabetAndToleratesAFewOtherCharacters()
    {
        string english = string.Concat(Enumerable.Repeat("Call me Ishmael. Some years ago (1841), never mind how long! ", 20));
        var splits = PlainTextCorpus.LoadUserText(Write("en.txt", english), 16);
        Assert.All(splits.Train, w => Assert.Matches("^[a-z .,;:'!?-]{16}$", w));
    }

    [Fact]
    public void ChineseTextKeepsHanAndChinesePunctuation()
    {
        string poems = string.Concat(Enumerable.Repeat("床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。\n", 20));
        var splits = PlainTextCorpus.LoadUserText(Write("zh.txt", poems), 12);
        Assert.NotEmpty(splits.Train);
        Assert.All(splits.Train, w => Assert.All(w, c => Assert.True(PlainTextCorpus.IsHan(c) || PlainTextCorpus.ChinesePunctuation.Contains(c), $"'{c}' kept")));
        Assert.Equal("床前明月光，疑是地上霜。", splits.Train[0]);
    }

    [Fact]
    public void AFileThatLosesMostOfItsCharactersIsRefusedNamingThem()
    {
        string russian = Write("ru.txt", string.Concat(Enumerable.Repeat("Зовите меня Измаил. ", 50)));
        var e = Assert.Throws<UdmException>(() => PlainTextCorpus.LoadUserText(russian, 16));
        Assert.Contains("would lose", e.Message);
        Assert.Contains("'и'", e.Message);
        string binary = Path.Combine(_root, "random.bin");
        File.WriteAllBytes(binary, [.. Enumerable.Range(0, 4000).Select(i => (byte)(i * 131 % 256))]);
        Assert.Contains("would lose", Assert.Throws<UdmException>(() => PlainTextCorpus.LoadUserText(binary, 16)).Message);

        // Through the CLI: one line, before any training.
        string config = Write("ru.json", $$"""{ "family": "mask", "data": "text:{{russian}}" }""");
        var (code, error) = CliTests.Run("train", config, "--out", Path.Combine(_root, "never"));
        Assert.Equal(UnifiedDiffusion.Cli.CommandLine.UserError, code);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("to the text: alphabet", error);
        Assert.False(Directory.Exists(Path.Combine(_root, "never")));
    }
}
