using TorchSharp;
using TorchSharp.Modules;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>Sizes of the image UNet.</summary>
/// <param name="InChannels">Image channels (input and output).</param>
/// <param name="BaseChannels">Channels at the finest resolution.</param>
/// <param name="ChannelMultipliers">Channel multiplier per resolution level (null: 1, 2, 2); each level after the first halves the resolution.</param>
/// <param name="ResBlocksPerLevel">Residual blocks per level on the way down (one more on the way up).</param>
/// <param name="AttentionAtLowest">Single-head self-attention in the middle block, at the lowest resolution.</param>
/// <param name="TimeEmbedding">Width of the sinusoidal time features (even).</param>
/// <param name="ClassCount">Number of classes for a class-conditional network; 0 for an unconditional one.</param>
/// <param name="Dropout">Dropout probability inside residual blocks.</param>
public sealed record UNetConfig(
    int InChannels = 1,
    int BaseChannels = 32,
    IReadOnlyList<int>? ChannelMultipliers = null,
    int ResBlocksPerLevel = 1,
    bool AttentionAtLowest = true,
    int TimeEmbedding = 128,
    int ClassCount = 0,
    double Dropout = 0.0)
{
    /// <summary>The multipliers actually used (1, 2, 2 when none were given); compared by value.</summary>
    public IReadOnlyList<int> ChannelMultipliers { get; init; } = ChannelMultipliers is null ? [1, 2, 2] : [.. ChannelMultipliers];

    /// <summary>Throws a one-line <see cref="UdmException"/> for sizes no network can be built with.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message) { if (!ok) throw new UdmException(message); }
        Require(InChannels >= 1, $"the UNet needs at least 1 input channel, got {InChannels}.");
        Require(BaseChannels >= 1, $"the UNet base width must be at least 1, got {BaseChannels}.");
        Require(ChannelMultipliers.Count >= 1 && ChannelMultipliers.All(m => m >= 1),
            $"UNet channel multipliers must be one or more positive integers, got [{string.Join(", ", ChannelMultipliers)}].");
        Require(ResBlocksPerLevel >= 1, $"the UNet needs at least 1 residual block per level, got {ResBlocksPerLevel}.");
        Require(TimeEmbedding >= 2 && TimeEmbedding % 2 == 0, $"the UNet time embedding width must be even and at least 2, got {TimeEmbedding}.");
        Require(ClassCount >= 0, $"the class count must be 0 (unconditional) or positive, got {ClassCount}.");
        Require(Dropout >= 0 && Dropout < 1, $"UNet dropout must lie in [0, 1), got {Dropout}.");
    }

    /// <inheritdoc />
    public bool Equals(UNetConfig? other) =>
        other is not null && InChannels == other.InChannels && BaseChannels == other.BaseChannels
        && ChannelMultipliers.SequenceEqual(other.ChannelMultipliers) && ResBlocksPerLevel == other.ResBlocksPerLevel
        && AttentionAtLowest == other.AttentionAtLowest && TimeEmbedding == other.TimeEmbedding
        && ClassCount == other.ClassCount && Dropout.Equals(other.Dropout);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(InChannels);
        hash.Add(BaseChannels);
        foreach (int m in ChannelMultipliers) hash.Add(m);
        hash.Add(ResBlocksPerLevel);
        hash.Add(AttentionAtLowest);
        hash.Add(TimeEmbedding);
        hash.Add(ClassCount);
        hash.Add(Dropout);
        return hash.ToHashCode();
    }
}

/// <summary>
/// An image UNet for denoisers and restorers: residual blocks (GroupNorm, SiLU, 3×3 conv, the time
/// embedding added, optional dropout), strided-conv downsampling, nearest + conv upsampling to the
/// skip's exact size (so 28→14→7 and odd sizes round-trip), skip connections, optional single-head
/// self-attention at the lowest resolution, and a sinusoidal time embedding followed by an MLP. A
/// class-conditional network (<see cref="UNetConfig.ClassCount"/> &gt; 0) adds a learned class
/// embedding; label index ClassCount means "no label" (∅), for classifier-free guidance.
/// </summary>
/// <remarks>
/// In bf16 the GroupNorms take the bfloat16 activations as they are: libtorch's CPU GroupNorm has a
/// mixed-type kernel (bf16 input, float32 affine parameters) whose statistics accumulate in float32,
/// so it matches a float32 round trip to one bf16 rounding of the output and in both gradients, and
/// a training step ran 6% faster without the two copies (2026-11-29, AMD EPYC, avx512_bf16).
/// Activations stay NCHW: channels-last made the convolutions 1.2–1.5× faster but libtorch 2.10's
/// channels-last GroupNorm 20× slower, so the whole pass was twice as slow.
/// </remarks>
public sealed class UNet : nn.Module<Tensor, Tensor, Tensor>, IClassConditionalNetwork, IMixedPrecision, ITwinNetwork
{
    /// <inheritdoc />
    public string TwinModel => "unet";

    /// <inheritdoc />
    public IReadOnlyDictionary<string, object?> TwinConfig => new Dictionary<string, object?>
    {
        [nameof(UNetConfig.InChannels)] = Config.InChannels, [nameof(UNetConfig.BaseChannels)] = Config.BaseChannels,
        [nameof(UNetConfig.ChannelMultipliers)] = Config.ChannelMultipliers.ToArray(), [nameof(UNetConfig.ResBlocksPerLevel)] = Config.ResBlocksPerLevel,
        [nameof(UNetConfig.AttentionAtLowest)] = Config.AttentionAtLowest, [nameof(UNetConfig.TimeEmbedding)] = Config.TimeEmbedding,
        [nameof(UNetConfig.ClassCount)] = Config.ClassCount, [nameof(UNetConfig.Dropout)] = Config.Dropout,
    };

    private readonly SinusoidalEmbedding _timeFeatures;
    private readonly Sequential _timeMlp;
    private readonly Embedding? _classEmbedding;
    private readonly ChannelPaddedConv2d _input;
    private readonly ModuleList<ResBlock> _down;
    private readonly ModuleList<ChannelPaddedConv2d> _downsample;
    private readonly ResBlock _middle1;
    private readonly SelfAttention? _attention;
    private readonly ResBlock _middle2;
    private readonly ModuleList<ResBlock> _up;
    private readonly ModuleList<ChannelPaddedConv2d> _upsample;
    private readonly GroupNorm _outNorm;
    private readonly ChannelPaddedConv2d _output;
    private readonly int _levels;
    private readonly int _blocks;

    /// <summary>Builds the network; the configuration is validated first.</summary>
    public UNet(UNetConfig config) : base(nameof(UNet))
    {
        config.Validate();
        Config = config;
        _levels = config.ChannelMultipliers.Count;
        _blocks = config.ResBlocksPerLevel;
        int embedding = 4 * config.BaseChannels;
        _timeFeatures = new SinusoidalEmbedding(config.TimeEmbedding);
        _timeMlp = nn.Sequential(new MixedLinear(config.TimeEmbedding, embedding), nn.SiLU(), new MixedLinear(embedding, embedding));
        if (config.ClassCount > 0) _classEmbedding = nn.Embedding(config.ClassCount + 1, embedding);
        _input = new ChannelPaddedConv2d(config.InChannels, config.BaseChannels, 3, padding: 1);

        var down = new List<ResBlock>();
        var downsample = new List<ChannelPaddedConv2d>();
        var skips = new Stack<int>();
        int channels = config.BaseChannels;
        skips.Push(channels);
        for (int level = 0; level < _levels; level++)
        {
            int width = config.BaseChannels * config.ChannelMultipliers[level];
            for (int b = 0; b < _blocks; b++)
            {
                down.Add(new ResBlock(channels, width, embedding, config.Dropout));
                channels = width;
                skips.Push(channels);
            }
            if (level < _levels - 1)
            {
                downsample.Add(new ChannelPaddedConv2d(channels, channels, 3, stride: 2, padding: 1));
                skips.Push(channels);
            }
        }
        _middle1 = new ResBlock(channels, channels, embedding, config.Dropout);
        if (config.AttentionAtLowest) _attention = new SelfAttention(channels);
        _middle2 = new ResBlock(channels, channels, embedding, config.Dropout);

        var up = new List<ResBlock>();
        var upsample = new List<ChannelPaddedConv2d>();
        for (int level = _levels - 1; level >= 0; level--)
        {
            int width = config.BaseChannels * config.ChannelMultipliers[level];
            for (int b = 0; b <= _blocks; b++)
            {
                up.Add(new ResBlock(channels + skips.Pop(), width, embedding, config.Dropout));
                channels = width;
            }
            if (level > 0) upsample.Add(new ChannelPaddedConv2d(channels, channels, 3, padding: 1));
        }
        _down = new ModuleList<ResBlock>([.. down]);
        _downsample = new ModuleList<ChannelPaddedConv2d>([.. downsample]);
        _up = new ModuleList<ResBlock>([.. up]);
        _upsample = new ModuleList<ChannelPaddedConv2d>([.. upsample]);
        _outNorm = Layers.GroupNorm(ResBlock.Groups(channels), channels);
        _output = new ChannelPaddedConv2d(channels, config.InChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <summary>The configuration the network was built from.</summary>
    public UNetConfig Config { get; }

    /// <summary>The label index that means "no label" (∅): <see cref="UNetConfig.ClassCount"/>.</summary>
    public int NullLabel => ClassConditioning.NullLabel(Config.ClassCount);

    /// <inheritdoc />
    public int ClassCount => Config.ClassCount;

    /// <inheritdoc />
    public Precision Precision { get; set; }

    /// <summary>Unconditional forward: (x [B, C, H, W], t [B]) → [B, C, H, W].</summary>
    public override Tensor forward(Tensor x, Tensor t) => Forward(x, t, null);

    /// <summary>
    /// Class-conditional forward. <paramref name="labels"/> (int64 [B]) holds classes 0..ClassCount−1,
    /// or ClassCount for "no label"; null means no label for the whole batch. Computes in
    /// <see cref="Precision"/> and returns float32.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor t, Tensor? labels)
    {
        if (x.dim() != 4 || x.shape[1] != Config.InChannels)
            throw new ArgumentException($"the UNet expects [B, {Config.InChannels}, H, W] input, got [{string.Join(", ", x.shape)}].", nameof(x));
        using var scope = torch.NewDisposeScope();
        using var autocast = Autocast.Enter(Precision);
        // The sinusoidal features and the class embedding are float32; the layers cast them.
        var embedding = _timeMlp.forward(_timeFeatures.forward(t));
        if (_classEmbedding is not null)
        {
            var classes = labels ?? torch.full([x.shape[0]], NullLabel, dtype: ScalarType.Int64, device: x.device);
            embedding = embedding + Autocast.Cast(_classEmbedding.forward(classes));
        }
        else if (labels is not null)
            throw new UdmException("class labels were given to an unconditional UNet; build it with classCount > 0 or sample without labels.");

        // The input convolution computes in float32 at any precision: its input is the data, and a
        // heavily blurred image varies by less than bfloat16's spacing (2⁻⁸ of its value), so a cast
        // erases what deblurring restores (mnist-blur sampled in bf16: FID 327 against 211 in fp32;
        // with this layer in float32, 210). Its float32 output meets GroupNorm, which takes the mean out
        // in float32 before the next layer casts.
        Tensor h;
        using (Autocast.Enter(Precision.Fp32)) h = _input.forward(x);
        var skips = new Stack<Tensor>();
        skips.Push(h);
        int block = 0;
        for (int level = 0; level < _levels; level++)
        {
            for (int b = 0; b < _blocks; b++)
            {
                h = _down[block++].forward(h, embedding);
                skips.Push(h);
            }
            if (level < _levels - 1)
            {
                h = _downsample[level].forward(h);
                skips.Push(h);
            }
        }
        h = _middle1.forward(h, embedding);
        if (_attention is not null) h = _attention.forward(h);
        h = _middle2.forward(h, embedding);
        block = 0;
        int upsampler = 0;
        for (int level = _levels - 1; level >= 0; level--)
        {
            for (int b = 0; b <= _blocks; b++)
                h = _up[block++].forward(torch.cat([h, skips.Pop()], 1), embedding);
            if (level > 0)
            {
                var target = skips.Peek();
                h = nn.functional.interpolate(h, size: [target.shape[2], target.shape[3]], mode: InterpolationMode.Nearest);
                h = _upsample[upsampler++].forward(h);
            }
        }
        return _output.forward(nn.functional.silu(_outNorm.forward(h))).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>GroupNorm → SiLU → conv, plus the projected embedding, twice, around a residual path.</summary>
    internal sealed class ResBlock : nn.Module<Tensor, Tensor, Tensor>
    {
        private readonly GroupNorm _norm1;
        private readonly ChannelPaddedConv2d _conv1;
        private readonly MixedLinear _embedding;
        private readonly GroupNorm _norm2;
        private readonly Dropout _dropout;
        private readonly ChannelPaddedConv2d _conv2;
        private readonly ChannelPaddedConv2d? _skip;

        public ResBlock(int input, int output, int embedding, double dropout) : base(nameof(ResBlock))
        {
            _norm1 = Layers.GroupNorm(Groups(input), input);
            _conv1 = new ChannelPaddedConv2d(input, output, 3, padding: 1);
            _embedding = new MixedLinear(embedding, output);
            _norm2 = Layers.GroupNorm(Groups(output), output);
            _dropout = nn.Dropout(dropout);
            _conv2 = new ChannelPaddedConv2d(output, output, 3, padding: 1);
            if (input != output) _skip = new ChannelPaddedConv2d(input, output, 1);
            RegisterComponents();
        }

        /// <summary>Groups for GroupNorm: the largest of 8, 4, 2, 1 that divides the channels.</summary>
        public static int Groups(int channels) => channels % 8 == 0 ? 8 : channels % 4 == 0 ? 4 : channels % 2 == 0 ? 2 : 1;

        public override Tensor forward(Tensor x, Tensor embedding)
        {
            // Intermediates are freed at the end of the block, not of the whole step: autograd keeps
            // what backward needs, and the peak of live memory falls (as Python's refcounting does).
            using var scope = torch.NewDisposeScope();
            var h = _conv1.forward(nn.functional.silu(_norm1.forward(x)));
            h = h + _embedding.forward(nn.functional.silu(embedding)).unsqueeze(-1).unsqueeze(-1);
            h = _conv2.forward(_dropout.forward(nn.functional.silu(_norm2.forward(h))));
            return (h + (_skip is null ? x : _skip.forward(x))).MoveToOuterDisposeScope();
        }
    }

    /// <summary>Single-head self-attention over the pixels, with a residual connection.</summary>
    internal sealed class SelfAttention : nn.Module<Tensor, Tensor>
    {
        private readonly GroupNorm _norm;
        private readonly ChannelPaddedConv2d _qkv;
        private readonly ChannelPaddedConv2d _projection;

        public SelfAttention(int channels) : base(nameof(SelfAttention))
        {
            _norm = Layers.GroupNorm(ResBlock.Groups(channels), channels);
            _qkv = new ChannelPaddedConv2d(channels, 3 * channels, 1);
            _projection = new ChannelPaddedConv2d(channels, channels, 1);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = torch.NewDisposeScope();
            long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
            var qkv = _qkv.forward(_norm.forward(x)).reshape(b, 3, c, h * w);
            var q = qkv[.., 0].transpose(1, 2);             // [B, N, C]
            var k = qkv[.., 1];                              // [B, C, N]
            var v = qkv[.., 2].transpose(1, 2);             // [B, N, C]
            // The softmax runs in float32, as autocast runs it.
            FlopCounter.MatrixProduct(b * h * w, c, h * w); // QKᵀ
            FlopCounter.MatrixProduct(b * h * w, h * w, c); // weights·V
            var weights = torch.softmax((torch.bmm(q, k) * (1.0 / Math.Sqrt(c))).to(ScalarType.Float32), -1).to(v.dtype);
            var attended = torch.bmm(weights, v).transpose(1, 2).reshape(b, c, h, w);
            return (x + _projection.forward(attended)).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>Facts about networks for logs and reports.</summary>
public static class NetworkInfo
{
    /// <summary>The number of trainable scalars in <paramref name="module"/>.</summary>
    public static long ParameterCount(nn.Module module) => module.parameters().Sum(p => p.numel());
}

/// <summary>A network that also takes class labels (int64 [B]; <see cref="ClassCount"/> means "no label", ∅).</summary>
public interface IClassConditionalNetwork
{
    /// <summary>The number of classes; label index ClassCount is ∅.</summary>
    int ClassCount { get; }

    /// <summary>The output given labels; null labels mean ∅ for the whole batch.</summary>
    Tensor Forward(Tensor x, Tensor t, Tensor? labels);
}

/// <summary>Class conditioning with classifier-free guidance (Ho &amp; Salimans): label dropout in training, guidance in sampling.</summary>
public static class ClassConditioning
{
    /// <summary>The label index that means "no label" (∅) for a network of <paramref name="classCount"/> classes: the one after the last class.</summary>
    public static int NullLabel(int classCount) => classCount;

    /// <summary>
    /// Replaces each label by ∅ (ClassCount) with probability <paramref name="dropProbability"/>,
    /// drawn with <paramref name="generator"/>. Null labels (an unlabelled data source) stay null.
    /// </summary>
    public static Tensor? DropLabels(Tensor? labels, int classCount, double dropProbability, Generator generator)
    {
        if (dropProbability < 0 || dropProbability > 1 || double.IsNaN(dropProbability))
            throw new UdmException($"the label drop probability must lie in [0, 1], got {dropProbability}.") { Subject = "labelDropout" };
        if (labels is null) return null;
        var drop = torch.rand([labels.shape[0]], generator: generator, device: labels.device) < dropProbability;
        return torch.where(drop, torch.full_like(labels, NullLabel(classCount)), labels);
    }

    /// <summary>
    /// The network's output for <paramref name="conditioning"/>: without labels the plain forward
    /// (∅ for a class-conditional network); with labels the conditional output, and with w &gt; 0
    /// the guided (1 + w)·ε(x, t, y) − w·ε(x, t, ∅), computed in one batched forward of size 2B.
    /// </summary>
    public static Tensor Forward(nn.Module<Tensor, Tensor, Tensor> network, Tensor x, Tensor t, Conditioning? conditioning)
    {
        if (conditioning?.Labels is not { } labels) return network.forward(x, t);
        if (network is not IClassConditionalNetwork conditional)
            throw new UdmException("class labels were given to an unconditional network; train it with classes (unet.classCount > 0) or sample without labels.") { Subject = "label" };
        double scale = conditioning.Guidance;
        if (!double.IsFinite(scale) || scale < 0)
            throw new UdmException($"the guidance scale must be 0 or more, got {scale}.") { Subject = "guidance" };
        labels = labels.to(x.device);
        if (scale == 0) return conditional.Forward(x, t, labels);
        long batch = x.shape[0];
        var none = torch.full([batch], NullLabel(conditional.ClassCount), dtype: ScalarType.Int64, device: x.device);
        var both = conditional.Forward(torch.cat([x, x], 0), torch.cat([t, t], 0), torch.cat([labels, none], 0));
        var guided = both.narrow(0, 0, batch);
        var unconditional = both.narrow(0, batch, batch);
        return guided * (1 + scale) - unconditional * scale;
    }
}
