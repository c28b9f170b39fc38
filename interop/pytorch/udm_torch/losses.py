"""The training losses of the C# families, term for term (file names in src/UnifiedDiffusion).

Gaussian family (Gaussian/NoiseSchedule.cs, GaussianProcess.cs, GaussianPosterior.cs,
Core/Posterior.cs DenoisingObjective, Runs/GaussianFamilyModel.cs, Networks/UNet.cs ClassConditioning):
    levels t ~ U{1..T}; x_t = ᾱ_t x_0 + β̄_t ε with ᾱ the *signal* coefficient (ᾱ_t² is diffusers'
    alphas_cumprod[t - 1]); MSE (mean over every element) between the network's output and its
    target: ε (epsilon), x_0 (sample) or v = ᾱ_t ε − β̄_t x_0 (velocity). A class-conditional UNet
    sees each label replaced by the null label ClassCount with probability labelDropout.
Mask model (Tokens/TokenProcesses.cs MaskProcess, TokenPosteriorModel.cs):
    t ~ U{1..L}; the t positions with the smallest uniform float64 keys become [MASK] (ranks by a
    stable sort); the network sees the number of [MASK] tokens as its level; logits of [MASK] and
    [UNK] (and [PAD] unless the data has padding) are −∞; −log q(x_0,i | x_t) on the masked
    positions, either averaged over all masked positions of the batch (meanOverMasked) or summed
    per sequence, weighted by L/t and averaged over sequences (elbo).
Edit model (EditProcess): the t chosen positions get a different regular token, the level is t,
    and the cross-entropy covers every position.

Each loss takes its random draws as arguments, so it can be checked against the C# loss on the
same draws; the `*_objective` functions draw them as the C# trainer does.
"""
import math

import torch
import torch.nn.functional as F

PAD, UNK, MASK, FIRST_REGULAR = 0, 1, 2, 3


# ---------------------------------------------------------------- Gaussian schedule

def signal_table(schedule):
    """ᾱ_0..ᾱ_T (float64 list) for an experiment's "schedule" object {kind, steps, betaStart,
    betaEnd, alphaBar}, as NoiseSchedule.Create computes it."""
    kind = str(schedule.get("kind", "linear")).lower()
    levels = int(schedule.get("steps", 1000))
    start, end = float(schedule.get("betaStart", 1e-4)), float(schedule.get("betaEnd", 0.02))
    if levels < 1:
        raise ValueError(f"the schedule needs at least 1 level, got {levels}")
    signal = [1.0]
    if kind == "linear":
        product = 1.0
        for t in range(1, levels + 1):
            beta = start if levels == 1 else start + (end - start) * (t - 1) / (levels - 1)
            product *= 1 - beta
            signal.append(math.sqrt(product))
    elif kind == "cosine":
        def f(u):
            return math.cos((u + 0.008) / (1 + 0.008) * math.pi / 2) ** 2
        product = 1.0
        for t in range(1, levels + 1):
            beta = min(1 - f(t / levels) / f((t - 1) / levels), 0.999)
            product *= 1 - beta
            signal.append(math.sqrt(product))
    elif kind == "custom":
        values = schedule.get("alphaBar") or []
        if len(values) != levels:
            raise ValueError(f"a custom schedule needs alphaBar with exactly {levels} values, got {len(values)}")
        signal.extend(float(v) for v in values)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}: use linear, cosine or custom")
    return signal


class Schedule:
    """ᾱ_t and β̄_t = √(1 − ᾱ_t²) as float32 tables (as GaussianProcess keeps them), t = 0..T."""

    def __init__(self, schedule, device="cpu"):
        signal = signal_table(schedule)
        self.levels = len(signal) - 1
        self.signal = torch.tensor(signal, dtype=torch.float64).float().to(device)
        self.noise = torch.tensor([math.sqrt(max(0.0, 1 - a * a)) for a in signal], dtype=torch.float64).float().to(device)

    def coefficients(self, t, like):
        """ᾱ_t, β̄_t gathered per sample, shaped to broadcast against `like`."""
        shape = [-1] + [1] * (like.dim() - 1)
        return self.signal.index_select(0, t).view(shape), self.noise.index_select(0, t).view(shape)


# ---------------------------------------------------------------- Gaussian family

PREDICTIONS = ("epsilon", "sample", "velocity")


def gaussian_loss(network, schedule, x0, t, noise, prediction="epsilon", labels=None):
    """MSE between the network's output at x_t = ᾱ_t x_0 + β̄_t ε and its target (GaussianPosteriorModel.Loss).
    `labels` are the conditioning labels after dropout (None: the plain forward, the null label
    for a class-conditional UNet)."""
    a, b = schedule.coefficients(t, x0)
    xt = x0 * a + noise * b
    output = network(xt, t) if labels is None else network(xt, t, labels)
    if prediction == "epsilon":
        target = noise
    elif prediction == "sample":
        target = x0
    elif prediction == "velocity":
        target = noise * a - x0 * b
    else:
        raise ValueError(f"unknown prediction {prediction!r}: use {', '.join(PREDICTIONS)}")
    return F.mse_loss(output, target)


def drop_labels(labels, class_count, probability, generator):
    """Each label becomes the null label `class_count` with probability `probability` (ClassConditioning.DropLabels)."""
    if not 0 <= probability <= 1:
        raise ValueError(f"the label drop probability must lie in [0, 1], got {probability}")
    drop = torch.rand(labels.shape[0], generator=generator, device=labels.device) < probability
    return torch.where(drop, torch.full_like(labels, class_count), labels)


def gaussian_objective(network, schedule, x0, labels, generator, prediction="epsilon", class_count=0, label_dropout=0.1):
    """One training loss as GaussianFamilyModel.Loss draws it: label dropout (class-conditional
    networks only), t ~ U{1..T}, ε ~ N(0, I)."""
    kept = None
    if class_count > 0 and labels is not None:
        kept = drop_labels(labels, class_count, label_dropout, generator)
    t = torch.randint(1, schedule.levels + 1, (x0.shape[0],), dtype=torch.int64, generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return gaussian_loss(network, schedule, x0, t, noise, prediction, kept)


# ---------------------------------------------------------------- token families

def chosen_positions(keys, t):
    """Boolean [B, L]: the t positions with the smallest keys per row (stable ranks; TokenProcess.ChosenPositions)."""
    order = keys.sort(dim=1, stable=True).indices
    ranks = order.sort(dim=1, stable=True).indices
    return ranks < t.to(torch.int64).reshape(-1, 1)


def suppressed(vocab_size, uses_padding, device="cpu"):
    """Boolean [V]: [UNK] and [MASK] always, [PAD] unless the data has padding."""
    mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    mask[UNK] = mask[MASK] = True
    mask[PAD] = not uses_padding
    return mask


def negative_log_likelihood(network, xt, level, x0, suppressed_tokens):
    """−log q(x_0,i | x_t) at every position [B, L], with the suppressed logits at −∞."""
    logits = network(xt, level).masked_fill(suppressed_tokens, float("-inf"))
    return -logits.log_softmax(2).gather(2, x0.unsqueeze(2)).squeeze(2)


def mask_loss(network, x0, t, keys, suppressed_tokens, weighting="meanOverMasked"):
    """The mask model's loss on given levels t [B] and position keys (float64 [B, L])."""
    xt = x0.masked_fill(chosen_positions(keys, t), MASK)
    level = xt.eq(MASK).sum(1)
    nll = negative_log_likelihood(network, xt, level, x0, suppressed_tokens)
    masked = xt.eq(MASK).to(nll.dtype)
    per_position = nll * masked
    if weighting == "elbo":
        weight = x0.shape[1] / t.to(nll.dtype).clamp_min(1)
        return (per_position.sum(1) * weight).mean()
    if weighting != "meanOverMasked":
        raise ValueError(f"unknown mask loss weighting {weighting!r}: use meanOverMasked or elbo")
    return per_position.sum() / masked.sum().clamp_min(1)


def edit_replacement(x0, u, vocab_size):
    """The different regular token each position gets from u ∈ [0, 1) (EditProcess.Replacement)."""
    r = vocab_size - FIRST_REGULAR
    regular = x0 >= FIRST_REGULAR
    offset = (u * (r - 1)).floor().to(torch.int64).clamp(0, r - 2) + 1
    from_regular = (x0 - FIRST_REGULAR + offset).remainder(r) + FIRST_REGULAR
    from_special = (u * r).floor().to(torch.int64).clamp(0, r - 1) + FIRST_REGULAR
    return torch.where(regular, from_regular, from_special)


def edit_loss(network, x0, t, noise, suppressed_tokens, vocab_size):
    """The edit model's loss on given levels and noise (float64 [B, L, 2]: keys, replacement draws)."""
    changed = chosen_positions(noise[..., 0], t)
    xt = torch.where(changed, edit_replacement(x0, noise[..., 1], vocab_size), x0)
    return negative_log_likelihood(network, xt, t, x0, suppressed_tokens).mean()


def token_objective(family, network, x0, generator, suppressed_tokens, vocab_size, weighting="meanOverMasked"):
    """One training loss as TokenFamilyModel.Loss draws it: t ~ U{1..L}, then uniform float64 keys
    (mask: [B, L]; edit: [B, L, 2])."""
    batch, length = x0.shape
    t = torch.randint(1, length + 1, (batch,), dtype=torch.int64, generator=generator, device=x0.device)
    if family == "mask":
        keys = torch.rand((batch, length), dtype=torch.float64, generator=generator, device=x0.device)
        return mask_loss(network, x0, t, keys, suppressed_tokens, weighting)
    if family == "edit":
        noise = torch.rand((batch, length, 2), dtype=torch.float64, generator=generator, device=x0.device)
        return edit_loss(network, x0, t, noise, suppressed_tokens, vocab_size)
    raise ValueError(f"no token loss for family {family!r}")
