using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Metrics;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Reads and judges generated text for every family that makes token sequences: decoding,
/// poem formatting, the quality metrics of a results table, and the sample file.
/// </summary>
internal sealed class TextJudge(TokenDataset train)
{
    private NGramModel? _ngram;
    private HashSet<string>? _trainingSet;

    /// <summary>Decodes sequences to strings ([PAD] removed).</summary>
    public IReadOnlyList<string> Decode(Tensor sequences)
    {
        var rows = sequences.cpu().to(ScalarType.Int64);
        var result = new List<string>();
        for (long i = 0; i < rows.shape[0]; i++)
            result.Add(train.Vocabulary.Decode(rows[i].data<long>().ToArray().Where(id => id != Tokens.Vocabulary.PadId)));
        return result;
    }

    /// <summary>A text formatted for reading: poems split into their lines.</summary>
    public string Format(string text) => train.Name switch
    {
        "wujue" or "wuyan" or "qijue" => string.Join("，", Enumerable.Range(0, 4).Select(i => Slice(text, i * (train.Length / 4), train.Length / 4))) + "。",
        _ => text,
    };

    private static string Slice(string text, int start, int count) =>
        string.Concat(Tokens.Vocabulary.Characters(text).Skip(start).Take(count));

    /// <summary>Trigram Kneser–Ney perplexity (trained on the training split), distinct-1/2 and the copy rate.</summary>
    public Dictionary<string, double> Quality(IReadOnlyList<string> texts)
    {
        _ngram ??= new NGramModel(train.Texts, order: 3);
        _trainingSet ??= new HashSet<string>(train.Texts, StringComparer.Ordinal);
        return new Dictionary<string, double>
        {
            ["perplexity"] = _ngram.Perplexity(texts),
            ["distinct_1"] = TextStatistics.Distinct(texts, 1),
            ["distinct_2"] = TextStatistics.Distinct(texts, 2),
            ["copy_rate"] = TextStatistics.CopyRate(texts, _trainingSet),
        };
    }

    /// <summary>Writes samples as a text file, one formatted sample per line under a title.</summary>
    public void Write(string path, Tensor samples, string title)
    {
        if (!Path.GetExtension(path).Equals(".txt", StringComparison.OrdinalIgnoreCase)) throw new UdmException($"{path}: text samples are written as a .txt file.") { Subject = "out" };
        const int rowsPerChunk = 4096; // decoded and written chunk by chunk: a large count never builds one string
        AtomicFile.Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, leaveOpen: true);
            writer.Write($"# {title}\n");
            for (long start = 0; start < samples.shape[0]; start += rowsPerChunk)
            {
                using var chunk = samples.narrow(0, start, Math.Min(rowsPerChunk, samples.shape[0] - start));
                foreach (var text in Decode(chunk)) writer.Write(Format(text) + "\n");
            }
        });
    }
}
