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

/// <summary>
/// A 2-D convolution with nn.Conv2d's parameters, initialisation and state-dict names
/// (<c>weight</c> [out, in, k, k], <c>bias</c> [out]) that computes with output channels padded
/// to a multiple of 16 (when gradients flow, and always in bfloat16) and input channels above 16 to
/// a multiple of 32, where libtorch 2.10's oneDNN kernels are wrong without it.
/// </summary>
/// <remarks>
/// Measured on the 2026-11-29 machine (AMD EPYC, family 26, AVX-512): float32 3×3 convolutions
/// with 20, 24 or 40 input channels gave wrong outputs, NaN when the heap held NaN bit patterns,
/// and those with 1, 8 or 24 output channels gave wrong input gradients (errors of 10–20 against
/// float64 and finite differences), so a UNet's 32 → 1 output convolution back-propagated garbage;
/// stride-2 convolutions with 48 or 80 input channels had input gradients off by 0.2. Multiples
/// of 32 in and 16 out were exact. Zero weights for the padded output channels and
/// zero inputs for the padded input channels make the result the unpadded convolution's, on
/// every CPU; <c>ConvolutionTests</c> checks the shapes against float64.
/// </remarks>
public sealed class ChannelPaddedConv2d : nn.Module<Tensor, Tensor>
{
    /// <summary>The multiple of output channels the convolution computes with.</summary>
    public const int OutputBlock = 16;

    /// <summary>The multiple of input channels (above <see cref="OutputBlock"/>) the convolution computes with.</summary>
    public const int InputBlock = 32;

#pragma warning disable IDE1006 // nn.Conv2d's state-dict names
    private readonly Parameter weight;
    private readonly Parameter bias;
#pragma warning restore IDE1006
    private readonly long _input, _output, _kernel, _stride, _padding;

    /// <summary>A convolution from <paramref name="input"/> to <paramref name="output"/> channels, initialised as nn.Conv2d.</summary>
    public ChannelPaddedConv2d(long input, long output, long kernel, long stride = 1, long padding = 0) : base(nameof(ChannelPaddedConv2d))
    {
        // nn.Conv2d's own initialisation (and random draws), so weights equal an nn.Conv2d's built at the same point.
        using var reference = nn.Conv2d(input, output, kernel, stride: stride, padding: padding);
        // Parameters outlive any dispose scope of the caller, as nn.Conv2d's own do.
        weight = (Parameter)new Parameter(reference.weight!.detach().clone()).DetachFromDisposeScope();
        bias = (Parameter)new Parameter(reference.bias!.detach().clone()).DetachFromDisposeScope();
        (_input, _output, _kernel) = (input, output, kernel);
        _stride = stride;
        _padding = padding;
        RegisterComponents();
    }

    /// <summary>The weight [out, in, k, k].</summary>
    public Parameter Weight => weight;

    /// <summary>The bias [out].</summary>
    public Parameter Bias => bias;

    /// <summary>Input channels padded only above 16: below it oneDNN's kernels were exact.</summary>
    private static long InputPadding(long channels) => channels > OutputBlock ? (InputBlock - channels % InputBlock) % InputBlock : 0;

    private static long OutputPadding(long channels) => (OutputBlock - channels % OutputBlock) % OutputBlock;

    /// <inheritdoc />
    /// <remarks>Computes in the current <see cref="Autocast"/> type.</remarks>
    public override Tensor forward(Tensor x)
    {
        // Output channels are padded where gradients flow (the float32 defect was in the input gradients)
        // and in bfloat16, whose forward was wrong for them too (a 24→1 UNet output layer without autograd);
        // a float32 forward without autograd skips the narrow copy of the output.
        long output = _output, padIn = InputPadding(_input);
        long padOut = torch.is_grad_enabled() || Autocast.Current is not null ? OutputPadding(output) : 0;
        if (FlopCounter.Counting) FlopCounter.Convolution(new ConvolutionShape(x.shape[0], _input, output, _kernel, _stride, x.shape[2], x.shape[3]));
        if (padIn == 0 && padOut == 0)
            return nn.functional.conv2d(Autocast.Cast(x), Autocast.Cast(weight), Autocast.Cast(bias), strides: [_stride, _stride], padding: [_padding, _padding]);
        using var scope = torch.NewDisposeScope();
        // F.pad lists (last-dim left, right, …): [0, 0, 0, 0, 0, p] pads dim 1 of x and w on the right.
        Tensor w = Autocast.Cast(weight), b = Autocast.Cast(bias), input = Autocast.Cast(x);
        if (padIn > 0)
        {
            w = nn.functional.pad(w, [0, 0, 0, 0, 0, padIn]);
            input = nn.functional.pad(input, [0, 0, 0, 0, 0, padIn]);
        }
        if (padOut > 0)
        {
            w = nn.functional.pad(w, [0, 0, 0, 0, 0, 0, 0, padOut]);
            b = nn.functional.pad(b, [0, padOut]);
        }
        var y = nn.functional.conv2d(input, w, b, strides: [_stride, _stride], padding: [_padding, _padding]);
        return (padOut > 0 ? y.narrow(1, 0, output) : y).MoveToOuterDisposeScope();
    }
}
