using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Latent;

/// <summary>
/// The encoding model's forward process: x_t = ᾱ_t Enc(x_0) + β̄_t ε with ε ~ N(0, I) in the
/// latent space and x_T ~ N(0, I). x_0 lives in data space (images, token ids); every x_t with
/// t ≥ 1 is a latent. The process is invertible in ε, F_t⁻¹(x_0, x_t) = (x_t − ᾱ_t Enc(x_0))/β̄_t,
/// so the core's kernels run unchanged: each step draws x̂_0 from the decoder, re-encodes it and
/// moves with DDPM, DDIM or DDIM-η; the final step returns the decoder's x̂_0 itself.
/// </summary>
/// <remarks>
/// The schedule is the Gaussian family's (the encoding model is hot diffusion in a learned
/// space), so this family builds on <see cref="GaussianProcess"/>; the Gaussian family knows
/// nothing of it. The process holds no state: within one reverse step the kernels encode the
/// same x̂_0 two or three times (for ε̂, then for F_s), each time afresh.
/// </remarks>
public sealed class EncodingProcess : IForwardProcess
{
    private readonly GaussianProcess _gaussian;
    private readonly long[] _sampleShape;

    /// <summary>The process for a schedule, an encoder and the data shape of one sample.</summary>
    public EncodingProcess(NoiseSchedule schedule, LatentEncoder encoder, long[] sampleShape)
    {
        _gaussian = new GaussianProcess(schedule);
        Encoder = encoder;
        _sampleShape = [.. sampleShape];
        LatentShape = encoder.LatentShape(sampleShape);
    }

    /// <summary>The noise schedule (ᾱ_t, β̄_t).</summary>
    public NoiseSchedule Schedule => _gaussian.Schedule;

    /// <summary>Enc.</summary>
    public LatentEncoder Encoder { get; }

    /// <summary>The latent shape of one sample (x_t for t ≥ 1).</summary>
    public long[] LatentShape { get; }

    /// <inheritdoc />
    public int Levels => _gaussian.Levels;

    /// <inheritdoc />
    public bool IsInvertible => true;

    /// <summary>Enc(x_0), with autograd when it is enabled (training trains the encoder through this).</summary>
    public Tensor Encode(Tensor x0) => Encoder.forward(x0);

    /// <inheritdoc />
    /// <remarks>ε is latent-shaped: [B, ..<see cref="LatentShape"/>].</remarks>
    public Tensor SampleNoise(Tensor x0, Generator? generator) =>
        torch.randn([x0.shape[0], .. LatentShape], dtype: ScalarType.Float32, device: x0.device, generator: generator);

    /// <inheritdoc />
    public Tensor SamplePrior(long[] shape, Device device, Generator? generator) => _gaussian.SamplePrior(shape, device, generator);

    /// <inheritdoc />
    public Tensor Corrupt(Tensor x0, Tensor t, Tensor noise) => _gaussian.Corrupt(Encode(x0), t, noise);

    /// <inheritdoc />
    public Tensor InferNoise(Tensor x0, Tensor xt, Tensor t) => _gaussian.InferNoise(Encode(x0), xt, t);

    /// <summary>The known part of a sample cannot be fixed: x_t is a latent, where a pixel or token mask means nothing.</summary>
    public Tensor CorruptKnown(Tensor known, int s, Generator? generator) =>
        throw new UdmException("the encoding family cannot hold part of a sample fixed: its x_t is a learned latent, not pixels or tokens.") { Subject = "inpaint" };

    /// <summary>ᾱ_t and β̄_t per sample, shaped to broadcast against a latent batch.</summary>
    public (Tensor Signal, Tensor Noise) Coefficients(Tensor t, Tensor latentLike) => _gaussian.Coefficients(t, latentLike);

    /// <summary>The data shape of one sample (x_0).</summary>
    public long[] SampleShape => [.. _sampleShape];
}
