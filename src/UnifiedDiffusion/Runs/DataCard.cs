using System.Text.Json;
using System.Text.Json.Serialization;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Tokens;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// What sampling needs of a run's data set without its samples: the name and kind, one sample's
/// shape, the class count, and for text the vocabulary and whether sequences are padded. Every run
/// keeps one (<see cref="FileName"/>) and exports carry it, so that a shipped model samples on a
/// machine that never fetched its data (offline, or in CI). Whatever needs the samples themselves
/// (held-out metrics, Γ for levels not yet estimated, restoring test images) says how to fetch them.
/// </summary>
/// <param name="Name">The data set's name in configs (mnist, wuyan, …).</param>
/// <param name="Kind">Vectors, images or text.</param>
/// <param name="SampleShape">One sample's shape: [d], [C, H, W] or [L].</param>
/// <param name="ClassCount">Image classes (0 for other kinds).</param>
/// <param name="UsesPadding">Text: some training sequence holds [PAD].</param>
/// <param name="Vocabulary">Text: every token by id, specials first.</param>
public sealed record DataCard(string Name, DataKind Kind, long[] SampleShape, int ClassCount = 0, bool UsesPadding = false, IReadOnlyList<string>? Vocabulary = null)
{
    /// <summary>The card's file in a run folder and in an export.</summary>
    public const string FileName = "data.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter<DataKind>(JsonNamingPolicy.CamelCase) },
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The card of an opened data set (its training split).</summary>
    public static DataCard Of(string name, OpenedData data) => data.Train switch
    {
        TokenDataset text => new DataCard(name, data.Kind, text.SampleShape, UsesPadding: text.UsesPadding, Vocabulary: text.Vocabulary.Tokens),
        ILabeledDataSource labeled => new DataCard(name, data.Kind, labeled.SampleShape, labeled.ClassCount),
        var other => new DataCard(name, data.Kind, other.SampleShape),
    };

    /// <summary>Writes the card into <paramref name="folder"/> (atomically).</summary>
    public void Save(string folder) => AtomicFile.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(this, Json) + "\n");

    /// <summary>The card in <paramref name="folder"/>, or null when it has none.</summary>
    public static DataCard? Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<DataCard>(File.ReadAllText(path), Json) ?? throw new JsonException("empty"); }
        catch (JsonException e)
        {
            throw new UdmException($"{path} is not a valid data card ({e.Message.Split('\n')[0]}); delete it, and udm opens the data set itself.");
        }
    }

    /// <summary>
    /// The stand-ins of the card in <paramref name="folder"/> when the data set <paramref name="dataName"/>
    /// would have to be fetched; null when it is on this machine (then open it) or the folder has no card.
    /// </summary>
    public static OpenedData? StandInsUnlessOnThisMachine(string folder, string dataName) =>
        DataSets.IsOnThisMachine(dataName) ? null : Load(folder)?.OpenWithoutSamples();

    /// <summary>
    /// Data sets that answer what the card holds (shape, classes, vocabulary) but hold no samples;
    /// asked for samples, they say how to fetch the real ones.
    /// </summary>
    public OpenedData OpenWithoutSamples()
    {
        string advice = $"this run was opened from its data card without the {Name} data set, and the command needs its samples: fetch them with `udm data get {DataSets.CacheName(Name)}`, then run the command again.";
        IDataSource train = Kind switch
        {
            DataKind.Images when SampleShape.Length == 3 => ImageDataset.WithoutImages(Name, SampleShape, Math.Max(ClassCount, 1), advice),
            DataKind.Text when Vocabulary is { Count: > 0 } && SampleShape.Length == 1 =>
                TokenDataset.WithoutTexts(Name, Tokens.Vocabulary.FromTokens(Vocabulary), (int)SampleShape[0], UsesPadding, advice),
            _ => throw new UdmException($"the data card of {Name} describes no {Kind.ToString().ToLowerInvariant()} set that can stand in for it; delete {FileName}, and udm opens the data set itself."),
        };
        return new OpenedData(train, train, Kind);
    }
}
