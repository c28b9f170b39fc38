using TorchSharp;
using TorchSharp.Modules;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Networks;

/// <summary>Sizes of the text Transformer.</summary>
/// <param name="Dimension">Model width d (a multiple of <paramref name="Heads"/>).</param>
/// <param name="Layers">Number of encoder blocks.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="FeedForward">Hidden width of each block's MLP.</param>
/// <param name="Dropout">Dropout after attention and MLP, in training only.</param>
public sealed record TransformerConfig(int Dimension = 256, int Layers = 4, int Heads = 4, int FeedForward = 1024, double Dropout = 0.1)
{
    /// <summary>Throws a one-line <see cref="UdmException"/> for sizes no network can have.</summary>
    public void Validate()
    {
        if (Dimension < 1 || Heads < 1 || Dimension % Heads != 0)
            throw new UdmException($"the Transformer width {Dimension} must be a positive multiple of its {Heads} heads; change transformer.dimension or transformer.heads.");
        if (Layers < 1 || FeedForward < 1) throw new UdmException($"the Transformer needs at least 1 layer and a positive MLP width (got {Layers}, {FeedForward}).");
        if (Dropout < 0 || Dropout >= 1) throw new UdmException($"dropout must lie in [0, 1), got {Dropout}.");
    }
}

/// <summary>
/// A bidirectional pre-LN Transformer encoder for token denoising: (tokens int64 [B, L], level
/// int64 [B]) → logits [B, L, V]. Input: token embedding + learned position embedding + a learned
/// embedding of the level (0..levels), then blocks x += Attn(LN(x)); x += MLP(LN(x)), a final
/// LayerNorm and an output projection. Attention is written out (softmax(QKᵀ/√d_h)V), which is
/// fast on CPU at L ≤ 32. With a latent width the input is a continuous sequence [B, L, width]
/// (the encoding model's latent), projected linearly instead of embedded.
/// </summary>
public sealed class TextTransformer : nn.Module<Tensor, Tensor, Tensor>, IMixedPrecision, ITwinNetwork
{
    private readonly IReadOnlyDictionary<string, object?> _twinConfig;

    /// <inheritdoc />
    public string TwinModel => "transformer";

    /// <inheritdoc />
    public IReadOnlyDictionary<string, object?> TwinConfig => _twinConfig;

    private readonly Embedding? _tokens;
    private readonly MixedLinear? _latentInput;
    private readonly Embedding _positions;
    private readonly Embedding _levels;
    private readonly ModuleList<TransformerBlock> _blocks;
    private readonly LayerNorm _final;
    private readonly MixedLinear _output;
    private readonly int _length;
    private readonly int _maxLevel;

    /// <summary>
    /// Creates the network for sequences of <paramref name="length"/> tokens over <paramref name="vocabSize"/>
    /// tokens and levels 0..<paramref name="levels"/>; with <paramref name="latentWidth"/> its input is a
    /// continuous sequence of that width instead of token ids.
    /// </summary>
    public TextTransformer(int vocabSize, int length, TransformerConfig config, int levels, int? latentWidth = null) : base(nameof(TextTransformer))
    {
        config.Validate();
        _twinConfig = new Dictionary<string, object?>
        {
            [nameof(TransformerConfig.Dimension)] = config.Dimension, [nameof(TransformerConfig.Layers)] = config.Layers,
            [nameof(TransformerConfig.Heads)] = config.Heads, [nameof(TransformerConfig.FeedForward)] = config.FeedForward,
            [nameof(TransformerConfig.Dropout)] = config.Dropout, ["VocabSize"] = vocabSize, ["Length"] = length, ["Levels"] = levels, ["LatentWidth"] = latentWidth,
        };
        _length = length;
        _maxLevel = levels;
        if (latentWidth is int width) _latentInput = new MixedLinear(width, config.Dimension);
        else _tokens = nn.Embedding(vocabSize, config.Dimension);
        _positions = nn.Embedding(length, config.Dimension);
        _levels = nn.Embedding(levels + 1, config.Dimension);
        _blocks = new ModuleList<TransformerBlock>([.. Enumerable.Range(0, config.Layers).Select(_ => new TransformerBlock(config))]);
        _final = Norm(config.Dimension);
        _output = new MixedLinear(config.Dimension, vocabSize);
        using (torch.no_grad())
        {
            foreach (var embedding in new[] { _tokens, _positions, _levels }.OfType<Embedding>()) nn.init.normal_(embedding.weight!, 0, 0.02);
        }
        RegisterComponents();
    }

    /// <summary>LayerNorm with explicit ones/zeros affine parameters (see <see cref="Layers.GroupNorm"/>).</summary>
    internal static LayerNorm Norm(long width)
    {
        var norm = nn.LayerNorm(width);
        using (torch.no_grad())
        {
            nn.init.ones_(norm.weight!);
            nn.init.zeros_(norm.bias!);
        }
        return norm;
    }

    /// <inheritdoc />
    public Precision Precision { get; set; }

    /// <summary>(tokens [B, L], or latents [B, L, width], and level [B]) → logits [B, L, V], float32.</summary>
    public override Tensor forward(Tensor tokens, Tensor level)
    {
        using var scope = torch.NewDisposeScope();
        using var autocast = Autocast.Enter(Precision);
        int rank = _latentInput is null ? 2 : 3;
        if (tokens.dim() != rank || tokens.shape[1] != _length)
            throw new ArgumentException($"the input must be [B, {_length}{(rank == 3 ? ", width" : "")}], got [{string.Join(", ", tokens.shape)}]", nameof(tokens));
        var positions = torch.arange(_length, dtype: ScalarType.Int64, device: tokens.device);
        var input = _latentInput is not null ? _latentInput.forward(tokens) : _tokens!.forward(tokens);
        // The embeddings are summed in float32, then the blocks run in the compute type.
        var h = Autocast.Cast(input.to(ScalarType.Float32) + _positions.forward(positions).unsqueeze(0)
            + _levels.forward(level.to(ScalarType.Int64).clamp(0, _maxLevel)).unsqueeze(1));
        foreach (var block in _blocks) h = block.forward(h);
        return _output.forward(Autocast.Float32(_final.forward, h)).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}

/// <summary>One pre-LN encoder block: x + Attn(LN(x)), then x + MLP(LN(x)) with GELU.</summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm _norm1, _norm2;
    private readonly MixedLinear _qkv, _projection, _up, _down;
    private readonly Dropout _dropout;
    private readonly int _heads;

    /// <summary>Creates a block of the given sizes.</summary>
    public TransformerBlock(TransformerConfig config) : base(nameof(TransformerBlock))
    {
        _heads = config.Heads;
        _norm1 = TextTransformer.Norm(config.Dimension);
        _norm2 = TextTransformer.Norm(config.Dimension);
        _qkv = new MixedLinear(config.Dimension, 3 * config.Dimension);
        _projection = new MixedLinear(config.Dimension, config.Dimension);
        _up = new MixedLinear(config.Dimension, config.FeedForward);
        _down = new MixedLinear(config.FeedForward, config.Dimension);
        _dropout = nn.Dropout(config.Dropout);
        RegisterComponents();
    }

    /// <summary>[B, L, d] → [B, L, d].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], l = x.shape[1], d = x.shape[2], dh = d / _heads;
        var qkv = _qkv.forward(Autocast.Float32(_norm1.forward, x)).reshape(b, l, 3, _heads, dh).permute(2, 0, 3, 1, 4); // [3, B, H, L, dh]
        var (q, k, v) = (qkv[0], qkv[1], qkv[2]);
        // The softmax runs in float32, as autocast runs it.
        FlopCounter.MatrixProduct(b * _heads * l, dh, l); // QKᵀ
        FlopCounter.MatrixProduct(b * _heads * l, l, dh); // attention·V
        var attention = (q.matmul(k.transpose(-2, -1)) / Math.Sqrt(dh)).to(ScalarType.Float32).softmax(-1).to(v.dtype);
        var mixed = attention.matmul(v).transpose(1, 2).reshape(b, l, d);
        var h = x + _dropout.forward(_projection.forward(mixed));
        h = h + _dropout.forward(_down.forward(nn.functional.gelu(_up.forward(Autocast.Float32(_norm2.forward, h)))));
        return h.MoveToOuterDisposeScope();
    }
}
