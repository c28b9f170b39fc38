"""PyTorch twins of the C# networks in src/UnifiedDiffusion/Networks, module for module.

Attribute names are the C# field names without the leading underscore. TorchSharp 0.107 keeps the
underscore in state-dict names ("_down.0._conv1.weight"); `udm export` writes the twins' names
("down.0.conv1.weight", see `twin_name`), so an exported model.safetensors loads with
`load_state_dict(strict=True)`. Masks, suppression and the diffusion processes are not part of the
networks (see losses.py).

    UNet(UNetConfig)                 <-> UnifiedDiffusion.Networks.UNet                  ("unet")
    TextTransformer(vocab, length, TransformerConfig, levels, latent_width=None)
                                     <-> UnifiedDiffusion.Networks.TextTransformer       ("transformer")
    MlpDenoiser(MlpConfig)           <-> UnifiedDiffusion.Networks.MlpDenoiser           ("mlp")

`build(model, config)` makes the twin named in an exported config.json's "network" section.
"""
import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F


def twin_name(name):
    """Maps a TorchSharp state-dict name to the twin's name (a leading '_' per segment is dropped),
    as UnifiedDiffusion.Networks.TwinNames.FromTorchSharp does."""
    return ".".join(part[1:] if part.startswith("_") else part for part in name.split("."))



def _from_dict(cls, values):
    """Builds a config dataclass from a dict with the C# property names (unknown keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in (values or {}).items() if k in names})


# ---------------------------------------------------------------- shared layers (Layers.cs)

class SinusoidalEmbedding(nn.Module):
    """[B] levels -> [B, dim]: cat(sin(t·f), cos(t·f)), f_i = exp(-i·ln(10000)/half)."""

    def __init__(self, dim):
        super().__init__()
        if dim % 2:
            raise ValueError("embedding width must be even")
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        frequencies = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(10000.0) / half))
        angles = t.to(torch.float32).unsqueeze(1) * frequencies.unsqueeze(0)
        return torch.cat([angles.sin(), angles.cos()], 1)


def group_norm(groups, channels, eps=1e-5):
    """Layers.GroupNorm: affine ones/zeros (PyTorch already does this); statistics in float32 under autocast."""
    return Float32GroupNorm(groups, channels, eps)


class Float32GroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 and returned in the input's type, as the C# network does it in bf16
    (torch 1.13's CPU autocast does not cover group_norm, which then refuses a bfloat16 input)."""

    def forward(self, x):
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps).to(x.dtype)


# ---------------------------------------------------------------- UNet (UNet.cs)

@dataclass
class UNetConfig:
    InChannels: int = 1
    BaseChannels: int = 32
    ChannelMultipliers: list = field(default_factory=lambda: [1, 2, 2])
    ResBlocksPerLevel: int = 1
    AttentionAtLowest: bool = True
    TimeEmbedding: int = 128
    ClassCount: int = 0
    Dropout: float = 0.0

    @staticmethod
    def from_dict(values):
        config = _from_dict(UNetConfig, values)
        if config.ChannelMultipliers is None:
            config.ChannelMultipliers = [1, 2, 2]
        return config


def groups(channels):
    """The largest of 8, 4, 2, 1 that divides the channels."""
    return 8 if channels % 8 == 0 else 4 if channels % 4 == 0 else 2 if channels % 2 == 0 else 1


class ResBlock(nn.Module):
    """h = conv1(silu(norm1(x))) + embedding(silu(e)); h = conv2(dropout(silu(norm2(h)))); h + skip(x)."""

    def __init__(self, inp, out, embedding, dropout):
        super().__init__()
        self.norm1 = group_norm(groups(inp), inp)
        self.conv1 = nn.Conv2d(inp, out, 3, padding=1)
        self.embedding = nn.Linear(embedding, out)
        self.norm2 = group_norm(groups(out), out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1)
        self.skip = nn.Conv2d(inp, out, 1) if inp != out else None

    def forward(self, x, embedding):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embedding(F.silu(embedding)).unsqueeze(-1).unsqueeze(-1)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Single-head attention over the pixels: x + projection(softmax(qᵀk / √C) v)."""

    def __init__(self, channels):
        super().__init__()
        self.norm = group_norm(groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.projection = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, c, h * w)
        q = qkv[:, 0].transpose(1, 2)  # [B, N, C]
        k = qkv[:, 1]                  # [B, C, N]
        v = qkv[:, 2].transpose(1, 2)  # [B, N, C]
        weights = torch.softmax(torch.bmm(q, k) * (1.0 / math.sqrt(c)), -1)
        attended = torch.bmm(weights, v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.projection(attended)


class UNet(nn.Module):
    """Mirror of UnifiedDiffusion.Networks.UNet (forward(x, t, labels=None))."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.levels = len(config.ChannelMultipliers)
        self.blocks = config.ResBlocksPerLevel
        embedding = 4 * config.BaseChannels
        self.timeFeatures = SinusoidalEmbedding(config.TimeEmbedding)
        self.timeMlp = nn.Sequential(nn.Linear(config.TimeEmbedding, embedding), nn.SiLU(), nn.Linear(embedding, embedding))
        self.classEmbedding = nn.Embedding(config.ClassCount + 1, embedding) if config.ClassCount > 0 else None
        self.input = nn.Conv2d(config.InChannels, config.BaseChannels, 3, padding=1)

        down, downsample, skips = [], [], []
        channels = config.BaseChannels
        skips.append(channels)
        for level in range(self.levels):
            width = config.BaseChannels * config.ChannelMultipliers[level]
            for _ in range(self.blocks):
                down.append(ResBlock(channels, width, embedding, config.Dropout))
                channels = width
                skips.append(channels)
            if level < self.levels - 1:
                downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skips.append(channels)
        self.middle1 = ResBlock(channels, channels, embedding, config.Dropout)
        self.attention = SelfAttention(channels) if config.AttentionAtLowest else None
        self.middle2 = ResBlock(channels, channels, embedding, config.Dropout)

        up, upsample = [], []
        for level in range(self.levels - 1, -1, -1):
            width = config.BaseChannels * config.ChannelMultipliers[level]
            for _ in range(self.blocks + 1):
                up.append(ResBlock(channels + skips.pop(), width, embedding, config.Dropout))
                channels = width
            if level > 0:
                upsample.append(nn.Conv2d(channels, channels, 3, padding=1))
        self.down = nn.ModuleList(down)
        self.downsample = nn.ModuleList(downsample)
        self.up = nn.ModuleList(up)
        self.upsample = nn.ModuleList(upsample)
        self.outNorm = group_norm(groups(channels), channels)
        self.output = nn.Conv2d(channels, config.InChannels, 3, padding=1)

    @property
    def null_label(self):
        return self.config.ClassCount

    def forward(self, x, t, labels=None):
        embedding = self.timeMlp(self.timeFeatures(t))
        if self.classEmbedding is not None:
            classes = labels if labels is not None else torch.full((x.shape[0],), self.null_label, dtype=torch.int64, device=x.device)
            embedding = embedding + self.classEmbedding(classes)
        elif labels is not None:
            raise ValueError("class labels were given to an unconditional UNet")

        h = self.input(x)
        skips = [h]
        block = 0
        for level in range(self.levels):
            for _ in range(self.blocks):
                h = self.down[block](h, embedding)
                block += 1
                skips.append(h)
            if level < self.levels - 1:
                h = self.downsample[level](h)
                skips.append(h)
        h = self.middle1(h, embedding)
        if self.attention is not None:
            h = self.attention(h)
        h = self.middle2(h, embedding)
        block = upsampler = 0
        for level in range(self.levels - 1, -1, -1):
            for _ in range(self.blocks + 1):
                h = self.up[block](torch.cat([h, skips.pop()], 1), embedding)
                block += 1
            if level > 0:
                target = skips[-1]
                h = F.interpolate(h, size=(target.shape[2], target.shape[3]), mode="nearest")
                h = self.upsample[upsampler](h)
                upsampler += 1
        return self.output(F.silu(self.outNorm(h)))


# ---------------------------------------------------------------- TextTransformer (TextTransformer.cs)

@dataclass
class TransformerConfig:
    Dimension: int = 256
    Layers: int = 4
    Heads: int = 4
    FeedForward: int = 1024
    Dropout: float = 0.1

    @staticmethod
    def from_dict(values):
        return _from_dict(TransformerConfig, values)


class TransformerBlock(nn.Module):
    """Pre-LN block: x + drop(proj(MHA(LN(x)))), then h + drop(down(gelu(up(LN(h)))))."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.heads = config.Heads
        self.norm1 = nn.LayerNorm(config.Dimension)
        self.norm2 = nn.LayerNorm(config.Dimension)
        self.qkv = nn.Linear(config.Dimension, 3 * config.Dimension)
        self.projection = nn.Linear(config.Dimension, config.Dimension)
        self.up = nn.Linear(config.Dimension, config.FeedForward)
        self.down = nn.Linear(config.FeedForward, config.Dimension)
        self.dropout = nn.Dropout(config.Dropout)

    def forward(self, x):
        b, l, d = x.shape
        dh = d // self.heads
        qkv = self.qkv(self.norm1(x)).reshape(b, l, 3, self.heads, dh).permute(2, 0, 3, 1, 4)  # [3, B, H, L, dh]
        q, k, v = qkv[0], qkv[1], qkv[2]
        attention = (q.matmul(k.transpose(-2, -1)) / math.sqrt(dh)).softmax(-1)
        mixed = attention.matmul(v).transpose(1, 2).reshape(b, l, d)
        h = x + self.dropout(self.projection(mixed))
        return h + self.dropout(self.down(F.gelu(self.up(self.norm2(h)))))


class TextTransformer(nn.Module):
    """(tokens int64 [B, L], level int64 [B]) -> logits [B, L, V]; levels are clamped to 0..levels.
    With `latent_width` the input is a continuous sequence [B, L, width] (the encoding model's
    latent), projected by `latentInput` instead of embedded by `tokens`."""

    def __init__(self, vocab_size, length, config: TransformerConfig, levels, latent_width=None):
        super().__init__()
        self.length = length
        self.max_level = levels
        if latent_width is not None:
            self.latentInput = nn.Linear(int(latent_width), config.Dimension)
        else:
            self.tokens = nn.Embedding(vocab_size, config.Dimension)
        self.positions = nn.Embedding(length, config.Dimension)
        self.levels = nn.Embedding(levels + 1, config.Dimension)
        self.blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.Layers)])
        self.final = nn.LayerNorm(config.Dimension)
        self.output = nn.Linear(config.Dimension, vocab_size)
        with torch.no_grad():
            for embedding in (getattr(self, "tokens", None), self.positions, self.levels):
                if embedding is not None:
                    nn.init.normal_(embedding.weight, 0, 0.02)

    def forward(self, tokens, level):
        rank = 3 if hasattr(self, "latentInput") else 2
        if tokens.dim() != rank or tokens.shape[1] != self.length:
            raise ValueError(f"the input must be [B, {self.length}{', width' if rank == 3 else ''}], got {list(tokens.shape)}")
        positions = torch.arange(self.length, dtype=torch.int64, device=tokens.device)
        embedded = self.latentInput(tokens) if rank == 3 else self.tokens(tokens)
        h = embedded.float() + self.positions(positions).unsqueeze(0) \
            + self.levels(level.to(torch.int64).clamp(0, self.max_level)).unsqueeze(1)
        for block in self.blocks:
            h = block(h)
        return self.output(self.final(h))


# ---------------------------------------------------------------- MlpDenoiser (MlpDenoiser.cs)

@dataclass
class MlpConfig:
    Dimension: int = 2
    Hidden: int = 256
    Depth: int = 3
    TimeEmbedding: int = 64

    @staticmethod
    def from_dict(values):
        return _from_dict(MlpConfig, values)


class MlpDenoiser(nn.Module):
    """(x_t [B, d], t [B]) -> [B, d]: silu(input(cat(x, timeMlp(sin(t))))), then Depth residual SiLU layers."""

    def __init__(self, config: MlpConfig = None):
        super().__init__()
        config = config or MlpConfig()
        self.config = config
        self.timeFeatures = SinusoidalEmbedding(config.TimeEmbedding)
        self.timeMlp = nn.Sequential(nn.Linear(config.TimeEmbedding, config.Hidden), nn.SiLU(), nn.Linear(config.Hidden, config.Hidden))
        self.input = nn.Linear(config.Dimension + config.Hidden, config.Hidden)
        self.hidden = nn.ModuleList([nn.Linear(config.Hidden, config.Hidden) for _ in range(config.Depth)])
        self.output = nn.Linear(config.Hidden, config.Dimension)

    def forward(self, x, t):
        embedding = self.timeMlp(self.timeFeatures(t))
        h = F.silu(self.input(torch.cat([x, embedding], 1)))
        for layer in self.hidden:
            h = h + F.silu(layer(h))
        return self.output(h)


def parameter_count(module):
    return sum(p.numel() for p in module.parameters())


MODELS = ("unet", "transformer", "mlp")


def build(model, config):
    """The twin for `model` ("unet", "transformer" or "mlp") from a dict with the C# property names,
    as config.json's network.config holds them (the transformer also needs VocabSize, Length and
    Levels, and LatentWidth for a latent input; the MLP takes Dimension, Hidden, Depth, TimeEmbedding)."""
    config = config or {}
    if model == "unet":
        return UNet(UNetConfig.from_dict(config))
    if model == "transformer":
        return TextTransformer(int(config["VocabSize"]), int(config["Length"]), TransformerConfig.from_dict(config),
                               int(config.get("Levels") or config["Length"]), config.get("LatentWidth"))
    if model == "mlp":
        return MlpDenoiser(MlpConfig.from_dict(config))
    raise ValueError(f"unknown model {model!r}; the twins are {', '.join(MODELS)}")
