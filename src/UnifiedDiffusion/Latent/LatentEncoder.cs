using TorchSharp;
using TorchSharp.Modules;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Latent;

/// <summary>
/// Enc in the encoding model's forward process x_t = ᾱ_t Enc(x_0) + β̄_t ε. A trainable network
/// from data (images, token ids, ...) to a continuous latent. With <see cref="Normalize"/> the
/// latent has unit RMS per sample, which keeps the prior honest: an unconstrained encoder could
/// otherwise grow its output until ᾱ_T·Enc(x_0) outweighs the noise, and x_T would no longer be
/// N(0, I) (see <see cref="LatentPriorCheck"/>).
/// </summary>
public abstract class LatentEncoder : nn.Module<Tensor, Tensor>, IMixedPrecision
{
    /// <summary>Creates the encoder; <paramref name="normalize"/> turns the unit-RMS projection on.</summary>
    protected LatentEncoder(string name, bool normalize) : base(name) => Normalize = normalize;

    /// <summary>True when every latent is projected to unit RMS (‖z‖² = d).</summary>
    public bool Normalize { get; }

    /// <summary>The latent shape of one sample, given the data shape of one sample.</summary>
    public abstract long[] LatentShape(long[] sampleShape);

    /// <summary>The unnormalised latent of a batch.</summary>
    protected abstract Tensor Embed(Tensor x0);

    /// <inheritdoc />
    public Precision Precision { get; set; }

    /// <summary>Enc(x_0): the latent of a batch (float32), unit-RMS per sample when <see cref="Normalize"/> is set.</summary>
    public override Tensor forward(Tensor x0)
    {
        Tensor latent;
        using (Autocast.Enter(Precision)) latent = Embed(x0).to(ScalarType.Float32);
        return Normalize ? UnitRms(latent) : latent;
    }

    /// <summary>Scales each sample (dimension 0) to unit root-mean-square over all its other dimensions.</summary>
    public static Tensor UnitRms(Tensor latent)
    {
        using var scope = torch.NewDisposeScope();
        var dims = Enumerable.Range(1, (int)latent.dim() - 1).Select(d => (long)d).ToArray();
        // The epsilon only guards an all-zero latent; real latents have RMS far above it.
        var rms = latent.pow(2).mean(dims, keepdim: true).add(1e-8).sqrt();
        return (latent / rms).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The image encoder: Enc(x) = x + f(x) with f a small convolutional stack (3×3 convolutions,
/// SiLU) whose last layer starts at zero. The latent has the image's shape, and at
/// initialisation the model is exactly hot diffusion on (unit-RMS) images, which training then
/// moves away from.
/// </summary>
public sealed class ConvEncoder : LatentEncoder
{
    private readonly Sequential _residual;

    /// <summary>An encoder for images with <paramref name="channels"/> channels, with <paramref name="layers"/> convolutions of <paramref name="width"/> channels.</summary>
    public ConvEncoder(int channels, int width = 32, int layers = 3, bool normalize = true) : base(nameof(ConvEncoder), normalize)
    {
        if (channels < 1 || width < 1 || layers < 2)
            throw new Core.UdmException($"the image encoder needs at least 1 channel, width 1 and 2 layers (got {channels}, {width}, {layers}).");
        var modules = new List<(string, nn.Module<Tensor, Tensor>)>();
        for (int i = 0; i < layers; i++)
        {
            int input = i == 0 ? channels : width, output = i == layers - 1 ? channels : width;
            var conv = new ChannelPaddedConv2d(input, output, 3, padding: 1);
            if (i == layers - 1)
            {
                using (torch.no_grad()) { nn.init.zeros_(conv.Weight); nn.init.zeros_(conv.Bias); }
            }
            modules.Add(($"conv{i}", conv));
            if (i < layers - 1) modules.Add(($"act{i}", nn.SiLU()));
        }
        _residual = nn.Sequential(modules);
        RegisterComponents();
    }

    /// <inheritdoc />
    public override long[] LatentShape(long[] sampleShape) => [.. sampleShape];

    /// <inheritdoc />
    protected override Tensor Embed(Tensor x0) => x0 + _residual.forward(x0);
}

/// <summary>
/// The token encoder: a learned embedding of each token into <c>width</c> dimensions, so a
/// sequence of l tokens becomes a latent sequence [l, width].
/// </summary>
public sealed class TokenEmbeddingEncoder : LatentEncoder
{
    private readonly Embedding _embedding;

    /// <summary>An encoder for <paramref name="vocabSize"/> tokens into <paramref name="width"/> dimensions.</summary>
    public TokenEmbeddingEncoder(int vocabSize, int width = 16, bool normalize = true) : base(nameof(TokenEmbeddingEncoder), normalize)
    {
        if (vocabSize < 2 || width < 1) throw new Core.UdmException($"the token encoder needs at least 2 tokens and width 1 (got {vocabSize}, {width}).");
        Width = width;
        _embedding = nn.Embedding(vocabSize, width);
        RegisterComponents();
    }

    /// <summary>Latent dimensions per token.</summary>
    public int Width { get; }

    /// <inheritdoc />
    public override long[] LatentShape(long[] sampleShape) => [.. sampleShape, Width];

    /// <inheritdoc />
    protected override Tensor Embed(Tensor x0) => _embedding.forward(x0.to(ScalarType.Int64));
}
