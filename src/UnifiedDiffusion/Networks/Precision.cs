using TorchSharp;
using TorchSharp.Modules;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>The arithmetic a network computes in.</summary>
public enum Precision
{
    /// <summary>float32 throughout.</summary>
    Fp32,
    /// <summary>
    /// Mixed precision: convolutions, linear layers and attention products in bfloat16, with the
    /// weights kept in float32 (cast per call, so gradients, the optimizer and the EMA stay float32);
    /// normalisation statistics, softmax, the network's output and every loss in float32. The UNet's
    /// input convolution, which reads the data, stays float32, so image differences smaller than
    /// bfloat16's spacing reach its first GroupNorm.
    /// </summary>
    Bf16,
}

/// <summary>Names, parsing and hardware support of <see cref="Precision"/>.</summary>
public static class Precisions
{
    /// <summary>The names configs and the CLI use, in <see cref="Precision"/> order.</summary>
    public static IReadOnlyList<string> Names { get; } = ["fp32", "bf16"];

    /// <summary>The name of a precision (fp32, bf16).</summary>
    public static string Name(Precision precision) => Names[(int)precision];

    /// <summary>Parses fp32 or bf16 (null is fp32), and refuses bf16 on a CPU without bfloat16 units.</summary>
    public static Precision Parse(string? name) => Parse(name, CpuHasBf16);

    /// <summary>As <see cref="Parse(string?)"/>, for a CPU that has (or lacks) bfloat16 units.</summary>
    internal static Precision Parse(string? name, bool cpuHasBf16)
    {
        int index = name is null ? 0 : Names.ToList().IndexOf(name.Trim().ToLowerInvariant());
        if (index < 0)
            throw new UdmException($"unknown precision \"{name}\": use {string.Join(" or ", Names)}.") { Subject = "precision" };
        var precision = (Precision)index;
        if (precision == Precision.Bf16 && !cpuHasBf16)
            throw new UdmException($"this CPU has no bfloat16 units (avx512_bf16 or amx_bf16 in /proc/cpuinfo), so bf16 would be emulated and slow; use fp32.") { Subject = "precision" };
        return precision;
    }

    /// <summary>The CPU's bfloat16 units, as /proc/cpuinfo lists them (avx512_bf16, amx_bf16), or none.</summary>
    public static IReadOnlyList<string> CpuBf16Units { get; } = [.. new[] { "avx512_bf16", "amx_bf16" }.Where(Platform.CpuFlags.Contains)];

    /// <summary>True when the CPU has bfloat16 units.</summary>
    public static bool CpuHasBf16 => CpuBf16Units.Count > 0;

    /// <summary>The type the project's layers compute in at this precision.</summary>
    public static ScalarType ComputeType(Precision precision) => precision == Precision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>Sets the precision of every network inside <paramref name="module"/> (itself included).</summary>
    public static void Apply(nn.Module module, Precision precision)
    {
        foreach (var network in module.modules().Prepend(module).OfType<IMixedPrecision>().Distinct()) network.Precision = precision;
    }
}

/// <summary>A network that computes in a chosen <see cref="Networks.Precision"/> and always returns float32.</summary>
public interface IMixedPrecision
{
    /// <summary>The precision its forward computes in.</summary>
    Precision Precision { get; set; }
}

/// <summary>
/// Mixed precision by hand, as torch.autocast does it (TorchSharp 0.107 has none): inside a scope
/// (<see cref="Enter"/>), the project's layers cast their floating-point inputs and their float32
/// weights to the scope's compute type per call. Autograd carries the gradients back through the
/// casts, so they arrive in float32. Scopes nest and are per thread, like autocast.
/// </summary>
public static class Autocast
{
    [ThreadStatic] private static ScalarType? _current;

    /// <summary>The compute type of the innermost scope on this thread, or null outside any.</summary>
    public static ScalarType? Current => _current;

    /// <summary>Computes in <paramref name="precision"/> until the result is disposed (fp32 ends any outer bf16 scope too).</summary>
    public static IDisposable Enter(Precision precision)
    {
        var previous = _current;
        _current = precision == Precision.Fp32 ? null : Precisions.ComputeType(precision);
        return new Exit(previous);
    }

    /// <summary>A floating-point tensor in the current compute type (unchanged outside a scope).</summary>
    public static Tensor Cast(Tensor x) => _current is { } type && x.is_floating_point() && x.dtype != type ? x.to(type) : x;

    /// <summary>Runs a normalisation in float32 (its statistics), returning the input's type.</summary>
    public static Tensor Float32(Func<Tensor, Tensor> normalise, Tensor x) =>
        x.dtype == ScalarType.Float32 ? normalise(x) : normalise(x.to(ScalarType.Float32)).to(x.dtype);

    private sealed class Exit(ScalarType? previous) : IDisposable
    {
        public void Dispose() => _current = previous;
    }
}

/// <summary>
/// A linear layer with nn.Linear's parameters, initialisation and state-dict names that computes
/// in the current <see cref="Autocast"/> type.
/// </summary>
public sealed class MixedLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // nn.Linear's state-dict names
    private readonly Parameter weight;
    private readonly Parameter? bias;
#pragma warning restore IDE1006

    /// <summary>A layer from <paramref name="input"/> to <paramref name="output"/> features, initialised as nn.Linear.</summary>
    public MixedLinear(long input, long output, bool hasBias = true) : base(nameof(MixedLinear))
    {
        // nn.Linear's own initialisation (and random draws), so weights equal an nn.Linear's built at the same point.
        using var reference = nn.Linear(input, output, hasBias);
        weight = (Parameter)new Parameter(reference.weight!.detach().clone()).DetachFromDisposeScope();
        if (hasBias) bias = (Parameter)new Parameter(reference.bias!.detach().clone()).DetachFromDisposeScope();
        RegisterComponents();
    }

    /// <summary>The weight [out, in].</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        if (FlopCounter.Counting) FlopCounter.MatrixProduct(x.numel() / x.shape[^1], weight.shape[1], weight.shape[0]);
        return nn.functional.linear(Autocast.Cast(x), Autocast.Cast(weight), bias is null ? null : Autocast.Cast(bias));
    }
}
