using UnifiedDiffusion.Cold;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Tokens;

namespace UnifiedDiffusion.Runs;

/// <summary>Every family's sampler registry, for help text and listings.</summary>
public static class SamplerCatalog
{
    /// <summary>The registries: gaussian (also the encoding family on images), cold, mask, edit, and the encoding family on text.</summary>
    public static IReadOnlyList<ISamplerRegistry> All { get; } =
        [GaussianSamplers.Registry, ColdSampling.Registry, MaskProcess.Registry, EditProcess.Registry, TextEncodingFamilyModel.DrawOnly];

    /// <summary>One line per registry, "family: name (options), …", joined by semicolons.</summary>
    public static string Describe() => string.Join("; ", All.Select(r => $"{r.Family}: {r.Describe()}"));
}
