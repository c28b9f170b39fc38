namespace UnifiedDiffusion.Networks;

/// <summary>
/// A network with a PyTorch twin in <c>interop/pytorch</c> (module for module, the same parameter
/// names without TorchSharp's leading underscores): which twin, and the settings its constructor
/// takes, under the C# property names. Exported models carry both in their config.json.
/// </summary>
public interface ITwinNetwork
{
    /// <summary>The twin's name: <c>unet</c>, <c>transformer</c> or <c>mlp</c>.</summary>
    string TwinModel { get; }

    /// <summary>Everything the twin's constructor needs (C# property names, JSON-serialisable values).</summary>
    IReadOnlyDictionary<string, object?> TwinConfig { get; }
}

/// <summary>Parameter names across the C# networks and their PyTorch twins.</summary>
public static class TwinNames
{
    /// <summary>
    /// The twin's name of a TorchSharp state-dict entry: TorchSharp 0.107 keeps the fields' leading
    /// underscore (<c>_down.0._conv1.weight</c>), PyTorch modules have none (<c>down.0.conv1.weight</c>).
    /// </summary>
    public static string FromTorchSharp(string name) =>
        string.Join('.', name.Split('.').Select(part => part.StartsWith('_') ? part[1..] : part));
}
