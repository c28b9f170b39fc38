using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>Layer factories that work around TorchSharp defects. Build layers through these, never directly.</summary>
public static class Layers
{
    /// <summary>
    /// GroupNorm with its affine parameters initialised to ones and zeros. TorchSharp 0.107 creates
    /// them with torch.empty and never fills them, which gives NaN or denormal garbage (and a
    /// 3× slowdown from denormals) although the docs promise ones and zeros.
    /// </summary>
    public static GroupNorm GroupNorm(long groups, long channels, double eps = 1e-5)
    {
        var norm = nn.GroupNorm(groups, channels, eps);
        using (torch.no_grad())
        {
            nn.init.ones_(norm.weight!);
            nn.init.zeros_(norm.bias!);
        }
        return norm;
    }
}

/// <summary>Sinusoidal embedding of integer levels t, as in the Transformer and DDPM.</summary>
public sealed class SinusoidalEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly int _dim;

    /// <summary>An embedding of even width <paramref name="dim"/>.</summary>
    public SinusoidalEmbedding(int dim) : base(nameof(SinusoidalEmbedding))
    {
        if (dim % 2 != 0) throw new ArgumentException("embedding width must be even", nameof(dim));
        _dim = dim;
    }

    /// <summary>[B] levels → [B, dim] features.</summary>
    public override Tensor forward(Tensor t)
    {
        int half = _dim / 2;
        var frequencies = torch.exp(torch.arange(half, dtype: ScalarType.Float32, device: t.device) * (-Math.Log(10000.0) / half));
        var angles = t.to(ScalarType.Float32).unsqueeze(1) * frequencies.unsqueeze(0);
        return torch.cat([angles.sin(), angles.cos()], 1);
    }
}
