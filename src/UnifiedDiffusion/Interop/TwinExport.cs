using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Interop;

/// <summary>
/// A network alone in the layout of <c>udm export</c>, for checking the PyTorch twins
/// (<c>interop/pytorch/udm_torch/check.py</c>, <c>bench/pytorch/check_parity.py</c>) without a run:
/// <c>config.json</c> holds the format and the network section (twin, its settings, the C#
/// parameter count) but no experiment, <c>model.safetensors</c> the weights under the twins' names
/// (<see cref="ModelExport.TwinStateDict"/>), and <c>check.safetensors</c> the tensors to compare:
/// an input, the C# output, and optionally a loss on given draws (names in check.py).
/// </summary>
public static class TwinExport
{
    /// <summary>The file of tensors to compare, beside the weights.</summary>
    public const string CheckFile = "check.safetensors";

    /// <summary>
    /// Writes <paramref name="network"/> (a network with a PyTorch twin) to <paramref name="folder"/>,
    /// created if needed, and <paramref name="check"/>, when given, as <see cref="CheckFile"/>.
    /// </summary>
    public static void Write(nn.Module network, string folder, IReadOnlyDictionary<string, Tensor>? check = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        if (network is not ITwinNetwork twin) throw new ArgumentException($"{network.GetName()} has no PyTorch twin.", nameof(network));
        Directory.CreateDirectory(folder);
        var config = new JsonObject
        {
            ["format"] = ModelExport.Format,
            ["network"] = new JsonObject
            {
                ["model"] = twin.TwinModel,
                ["config"] = JsonSerializer.SerializeToNode(twin.TwinConfig),
                ["parameters"] = NetworkInfo.ParameterCount(network),
            },
        };
        File.WriteAllText(Path.Combine(folder, ModelExport.Files.Config), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        WriteTensors(Path.Combine(folder, ModelExport.Files.Weights), ModelExport.TwinStateDict(network));
        if (check is not null) WriteTensors(Path.Combine(folder, CheckFile), check);
    }

    /// <summary>Writes <paramref name="tensors"/> (any device and layout; their dtypes are kept) as a safetensors file.</summary>
    public static void WriteTensors(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var scope = torch.NewDisposeScope();
        var cpu = tensors.ToDictionary(p => p.Key, p => p.Value.detach().cpu().contiguous());
        using var stream = File.Create(path);
        Safetensors.SaveStateDict(stream, cpu, leaveOpen: true);
    }
}
