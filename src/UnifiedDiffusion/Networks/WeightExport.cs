using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>One tensor in a <see cref="WeightExport"/> index.</summary>
/// <param name="Name">The state-dict name (e.g. <c>down.0.conv1.weight</c>).</param>
/// <param name="Shape">The tensor's shape ([] for a scalar).</param>
/// <param name="Offset">Byte offset of the tensor's data in the <c>.bin</c> file.</param>
/// <param name="DType">Element type: <c>float32</c> or <c>int64</c>, little-endian, row-major.</param>
public sealed record WeightEntry(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("shape")] long[] Shape,
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("dtype")] string DType);

/// <summary>
/// A plain weight exchange format that any language reads without extra packages: a folder with
/// <c>weights.json</c> (a JSON list of <see cref="WeightEntry"/>: name, shape, byte offset, dtype)
/// and <c>weights.bin</c> (the raw little-endian data, row-major, back to back). Optional extra
/// tensors (a test input, the network's output…) go in <c>extra.json</c> + <c>extra.bin</c> in the
/// same format. Used to check the PyTorch twins in <c>bench/pytorch</c> against the C# networks.
/// Module weights are float32 only; extra tensors may also be int64 (levels, labels, tokens).
/// Names are TorchSharp's state-dict names, which keep the fields' leading underscore
/// (<c>_down.0._conv1.weight</c>).
/// </summary>
public static class WeightExport
{
    /// <summary>The stem of the weight files (<c>weights.json</c>, <c>weights.bin</c>).</summary>
    public const string WeightsStem = "weights";

    /// <summary>The stem of the extra tensor files (<c>extra.json</c>, <c>extra.bin</c>).</summary>
    public const string ExtraStem = "extra";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// Writes the state dict of <paramref name="module"/> (parameters and buffers, in registration
    /// order) to <paramref name="folder"/>, created if needed, and <paramref name="extra"/>, when
    /// given, beside it.
    /// </summary>
    public static void Save(nn.Module module, string folder, IReadOnlyDictionary<string, Tensor>? extra = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        var state = module.state_dict();
        foreach (var (name, tensor) in state)
            if (tensor.dtype != ScalarType.Float32)
                throw new UdmException($"weight export supports float32 weights only; {name} is {tensor.dtype}.");
        WriteTensors(folder, WeightsStem, state);
        if (extra is not null) WriteTensors(folder, ExtraStem, extra);
    }

    /// <summary>
    /// Copies the weights saved in <paramref name="folder"/> into <paramref name="module"/>. Every
    /// state-dict entry of the module must be present with the same shape, and the file must hold
    /// no other entries; otherwise a <see cref="UdmException"/> names the first mismatch.
    /// </summary>
    public static void Load(nn.Module module, string folder)
    {
        ArgumentNullException.ThrowIfNull(module);
        var saved = ReadTensors(folder, WeightsStem);
        var state = module.state_dict();
        var missing = state.Keys.Where(k => !saved.ContainsKey(k)).ToList();
        if (missing.Count > 0) throw new UdmException($"{folder} lacks {missing.Count} weight(s) of the module, first {missing[0]}.");
        var unexpected = saved.Keys.Where(k => !state.ContainsKey(k)).ToList();
        if (unexpected.Count > 0) throw new UdmException($"{folder} holds {unexpected.Count} weight(s) the module does not have, first {unexpected[0]}.");
        using var noGrad = torch.no_grad();
        foreach (var (name, target) in state)
        {
            var source = saved[name];
            if (!source.shape.SequenceEqual(target.shape))
                throw new UdmException($"weight {name} has shape [{string.Join(", ", source.shape)}] in {folder} but [{string.Join(", ", target.shape)}] in the module.");
            target.copy_(source.to(target.device));
            source.Dispose();
        }
    }

    /// <summary>The extra tensors saved beside the weights in <paramref name="folder"/>, by name (empty when there are none).</summary>
    public static Dictionary<string, Tensor> LoadExtra(string folder) =>
        File.Exists(Path.Combine(folder, ExtraStem + ".json")) ? ReadTensors(folder, ExtraStem) : [];

    /// <summary>
    /// Writes <paramref name="tensors"/> (float32 or int64, any device) as <c>STEM.json</c> and
    /// <c>STEM.bin</c> in <paramref name="folder"/>, in the order given.
    /// </summary>
    public static void WriteTensors(string folder, string stem, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("weight export writes little-endian data only.");
        Directory.CreateDirectory(folder);
        var index = new List<WeightEntry>();
        var names = new HashSet<string>();
        AtomicFile.Write(Path.Combine(folder, stem + ".bin"), stream =>
        {
            long offset = 0;
            foreach (var (name, tensor) in tensors)
            {
                if (!names.Add(name)) throw new UdmException($"tensor name {name} appears twice.");
                using var cpu = tensor.detach().cpu().contiguous();
                byte[] bytes = cpu.dtype switch
                {
                    ScalarType.Float32 => MemoryMarshal.AsBytes(cpu.data<float>().ToArray().AsSpan()).ToArray(),
                    ScalarType.Int64 => MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()).ToArray(),
                    _ => throw new UdmException($"weight export supports float32 and int64 tensors; {name} is {cpu.dtype}."),
                };
                stream.Write(bytes);
                index.Add(new WeightEntry(name, cpu.shape, offset, cpu.dtype == ScalarType.Float32 ? "float32" : "int64"));
                offset += bytes.Length;
            }
        });
        AtomicFile.WriteAllText(Path.Combine(folder, stem + ".json"), JsonSerializer.Serialize(index, Indented));
    }

    /// <summary>Reads <c>STEM.json</c> and <c>STEM.bin</c> from <paramref name="folder"/> as CPU tensors, by name, in file order.</summary>
    public static Dictionary<string, Tensor> ReadTensors(string folder, string stem)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("weight export reads little-endian data only.");
        string indexPath = Path.Combine(folder, stem + ".json"), dataPath = Path.Combine(folder, stem + ".bin");
        if (!File.Exists(indexPath) || !File.Exists(dataPath))
            throw new UdmException($"no exported tensors at {indexPath} and {dataPath}; write them with WeightExport.Save.");
        List<WeightEntry>? index;
        try { index = JsonSerializer.Deserialize<List<WeightEntry>>(File.ReadAllText(indexPath)); }
        catch (JsonException e) { throw new UdmException($"{indexPath} is not a weight index: {e.Message}", e); }
        if (index is null) throw new UdmException($"{indexPath} is not a weight index.");
        byte[] data = File.ReadAllBytes(dataPath);
        var result = new Dictionary<string, Tensor>();
        foreach (var entry in index)
        {
            if (entry.Name is null || entry.Shape is null || entry.Shape.Any(d => d < 0))
                throw new UdmException($"{indexPath} has a malformed entry.");
            long count = entry.Shape.Aggregate(1L, (a, d) => a * d);
            int width = entry.DType switch
            {
                "float32" => sizeof(float),
                "int64" => sizeof(long),
                _ => throw new UdmException($"{entry.Name} in {indexPath} has unsupported dtype {entry.DType}; use float32 or int64."),
            };
            if (entry.Offset < 0 || entry.Offset + count * width > data.Length)
                throw new UdmException($"{entry.Name} lies outside {dataPath} (truncated file?).");
            var bytes = data.AsSpan((int)entry.Offset, (int)(count * width));
            var tensor = entry.DType == "float32"
                ? torch.tensor(MemoryMarshal.Cast<byte, float>(bytes).ToArray(), entry.Shape)
                : torch.tensor(MemoryMarshal.Cast<byte, long>(bytes).ToArray(), entry.Shape);
            if (!result.TryAdd(entry.Name, tensor)) throw new UdmException($"{entry.Name} appears twice in {indexPath}.");
        }
        return result;
    }
}
