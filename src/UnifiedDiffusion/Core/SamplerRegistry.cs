namespace UnifiedDiffusion.Core;

/// <summary>The options a sampler may take besides its name, step count and grid.</summary>
[Flags]
public enum SamplerOption
{
    /// <summary>No option.</summary>
    None = 0,
    /// <summary>η: DDIM-η's share of fresh noise, or the cold interpolate sampler's σ̃.</summary>
    Eta = 1,
    /// <summary>Analytic-DPM's cap on the step onto the lowest level, in pixel bins.</summary>
    AnalyticClip = 2,
    /// <summary>Analytic-DPM's Γ estimator.</summary>
    Gamma = 4,
    /// <summary>Which positions a token step fills or repairs first.</summary>
    Order = 8,
    /// <summary>Classifier-free guidance scale.</summary>
    Guidance = 16,
    /// <summary>The class to draw.</summary>
    Label = 32,
    /// <summary>Generation from the prior instead of restoration.</summary>
    Generate = 64,
    /// <summary>The noise added to draws of a cold generative prior.</summary>
    PriorNoise = 128,
}

/// <summary>Names and words for <see cref="SamplerOption"/>s, for messages and help.</summary>
public static class SamplerOptions
{
    /// <summary>Every single option, in declaration order.</summary>
    public static IReadOnlyList<SamplerOption> All { get; } = [.. Enum.GetValues<SamplerOption>().Where(o => o != SamplerOption.None)];

    /// <summary>The option's library name, as <see cref="UdmException.Subject"/> carries it.</summary>
    public static string Key(SamplerOption option) => option switch
    {
        SamplerOption.Eta => "eta",
        SamplerOption.AnalyticClip => "analyticClip",
        SamplerOption.Gamma => "gamma",
        SamplerOption.Order => "order",
        SamplerOption.Guidance => "guidance",
        SamplerOption.Label => "label",
        SamplerOption.Generate => "generate",
        SamplerOption.PriorNoise => "priorNoise",
        _ => throw new ArgumentOutOfRangeException(nameof(option)),
    };

    /// <summary>What the option is, in words.</summary>
    public static string Describe(SamplerOption option) => option switch
    {
        SamplerOption.Eta => "η",
        SamplerOption.AnalyticClip => "the analytic first-step clip",
        SamplerOption.Gamma => "the Γ estimator",
        SamplerOption.Order => "the fill or repair order",
        SamplerOption.Guidance => "a guidance scale",
        SamplerOption.Label => "a class label",
        SamplerOption.Generate => "generation from the prior",
        SamplerOption.PriorNoise => "prior noise",
        _ => throw new ArgumentOutOfRangeException(nameof(option)),
    };
}

/// <summary>One sampler a family offers: its name, what it is, and the options it takes.</summary>
/// <param name="Name">The name users give (e.g. <c>ddim</c>, <c>tacos</c>).</param>
/// <param name="Summary">What the sampler is, in a few words, for help text.</param>
/// <param name="Accepts">The options it takes; any other given option is an error.</param>
/// <param name="Aliases">Other names that mean this sampler (e.g. <c>improved</c>).</param>
public record SamplerEntry(string Name, string Summary, SamplerOption Accepts, IReadOnlyList<string> Aliases)
{
    /// <summary>True when <paramref name="name"/> (any case) is this sampler's name or one of its aliases.</summary>
    public bool Answers(string name) =>
        string.Equals(Name, name, StringComparison.OrdinalIgnoreCase) || Aliases.Any(a => string.Equals(a, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>A family's samplers by name, whatever their factories (see <see cref="SamplerRegistry{TEntry}"/>).</summary>
public interface ISamplerRegistry
{
    /// <summary>The family the samplers belong to, for messages.</summary>
    string Family { get; }

    /// <summary>Every sampler, in the order of help text.</summary>
    IReadOnlyList<SamplerEntry> All { get; }

    /// <summary>The sampler used when none is named.</summary>
    SamplerEntry DefaultEntry { get; }

    /// <summary>One line for help text: each name, its aliases and the options it takes.</summary>
    string Describe();
}

/// <summary>
/// A family's samplers by name: the one place each name lives. Lookup, option checking, help text
/// and listings derive from it. <typeparamref name="TEntry"/> carries the family's factory.
/// </summary>
public sealed class SamplerRegistry<TEntry> : ISamplerRegistry where TEntry : SamplerEntry
{
    private readonly TEntry[] _entries;

    /// <summary>A registry of <paramref name="entries"/> for <paramref name="family"/>, whose default is <paramref name="defaultName"/>.</summary>
    public SamplerRegistry(string family, string defaultName, params TEntry[] entries)
    {
        Family = family;
        _entries = entries;
        Default = Find(defaultName);
    }

    /// <summary>The family the samplers belong to, for messages.</summary>
    public string Family { get; }

    /// <summary>Every sampler, in the order of help text.</summary>
    public IReadOnlyList<TEntry> Entries => _entries;

    /// <summary>The sampler used when none is named.</summary>
    public TEntry Default { get; }

    /// <summary>The sampler's names, in order.</summary>
    public IEnumerable<string> Names => _entries.Select(e => e.Name);

    IReadOnlyList<SamplerEntry> ISamplerRegistry.All => _entries;

    SamplerEntry ISamplerRegistry.DefaultEntry => Default;

    /// <summary>The sampler called <paramref name="name"/> (or an alias); null gives <see cref="Default"/>.</summary>
    public TEntry Find(string? name)
    {
        if (name is null) return Default;
        return _entries.FirstOrDefault(e => e.Answers(name.Trim()))
            ?? throw new UdmException($"unknown sampler \"{name}\" for the {Family} family: use one of {string.Join(", ", Names)}.") { Subject = "sampler" };
    }

    /// <summary>
    /// The sampler called <paramref name="name"/>, after checking that it takes every option in
    /// <paramref name="given"/>; an option it does not take is a one-line error naming the samplers that do.
    /// </summary>
    public TEntry Resolve(string? name, SamplerOption given)
    {
        var entry = Find(name);
        foreach (var option in SamplerOptions.All.Where(o => given.HasFlag(o) && !entry.Accepts.HasFlag(o)))
        {
            var takers = _entries.Where(e => e.Accepts.HasFlag(option)).Select(e => e.Name).ToList();
            string where = takers.Count == 0 ? $"no {Family} sampler takes it" : $"it applies to {string.Join(", ", takers)}";
            throw new UdmException($"{SamplerOptions.Describe(option)} does not apply to the {entry.Name} sampler of the {Family} family; {where}.")
            { Subject = SamplerOptions.Key(option) };
        }
        return entry;
    }

    /// <summary>One line for help text: each name, its aliases and the options it takes.</summary>
    public string Describe() => string.Join(", ", _entries.Select(e =>
    {
        var extras = e.Aliases.Select(a => $"alias {a}").Concat(SamplerOptions.All.Where(o => e.Accepts.HasFlag(o)).Select(SamplerOptions.Key)).ToList();
        return extras.Count == 0 ? e.Name : $"{e.Name} ({string.Join(", ", extras)})";
    }));
}
