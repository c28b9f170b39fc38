"""PyTorch side of `udm bench --pytorch`: the same rows as the C# side, same networks, batches and steps.

`udm bench` writes its settings (sizes, counts, steps, Analytic-DDIM step variances) to a JSON file
and calls this script once per round (interleaved with its own rounds) and once per memory row,
each a fresh process. Prints one JSON object on the last line. Run with Debian's python3-torch
(bench/install-pytorch.sh), e.g. by hand:
    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/pytorch/bench.py --settings s.json --rows unet.train,unet.ddim

What each row mirrors (C# file in brackets):
  *.train   the Trainer step [Core/Trainer.cs]: batch, AdamW, loss.item(), backward, clip 1.0, step, EMA update
  gaussian  DenoisingObjective + eps-MSE; DDPM/DDIM/Analytic-DDIM steps as GaussianKernels/AnalyticKernel,
            x0 clipped to [-1, 1] for images (clipSample 1.0), leading grid
  cold      blur D_t = t successive reflect-padded separable 11-tap Gaussian blurs (std 7), improved
            x_s = x_t - D_t(x0) + D_s(x0), L1 loss [Cold/*.cs]
  text      mask / edit processes, suppressed specials, carried-over unmasked marginals, the improved
            kernels (fill t-s masked positions; repair positions with prob ∝ 1-q(x_t,i|x_t), tokens from
            q restricted to != x_t,i) [Tokens/*.cs]; the first mask step runs one row, as CachingPosteriorModel
"""
import argparse, json, math, os, platform, statistics, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop", "pytorch"))
from udm_torch.networks import TextTransformer, TransformerConfig, UNet, UNetConfig, parameter_count  # noqa: E402
from toy_mlp import MlpDenoiser, gmm8  # noqa: E402

PAD, UNK, MASK, FIRST_REGULAR = 0, 1, 2, 3
VOCAB, LENGTH = 3000, 20


def median(values):
    return statistics.median(values) if values else float("nan")


def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Trainer:
    """Mirror of the C# Trainer step (constant rate: the bench times after warm-up)."""

    def __init__(self, net, ema, loss, batch, lr, ema_decay, clip=1.0, weight_decay=0.0):
        self.net, self.ema, self.loss, self.batch = net, ema, loss, batch
        self.ema.load_state_dict(net.state_dict())
        self.ema.eval()
        self.opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        self.params, self.ema_params = list(net.parameters()), list(ema.parameters())
        self.lr, self.decay, self.clip = lr, ema_decay, clip

    def step(self):
        self.net.train()
        for group in self.opt.param_groups:
            group["lr"] = self.lr
        self.opt.zero_grad()
        loss = self.loss()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError("non-finite loss")
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        with torch.no_grad():
            for pe, p in zip(self.ema_params, self.params):
                pe.mul_(self.decay).add_(p, alpha=1 - self.decay)

    def times(self, steps):
        out = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            out.append((time.perf_counter() - t0) * 1000)
        return out


def rate(count, fn):
    t0 = time.perf_counter()
    fn()
    return count / (time.perf_counter() - t0)


def leading(levels, steps):
    return [1 + (i * levels) // steps for i in range(steps)][::-1] + [0]


def trailing(levels, steps):
    return [int(round(levels - i * levels / steps)) for i in range(steps)] + [0]


# ------------------------------------------------------------------ Gaussian (toy MLP and MNIST UNet)

class Schedule:
    def __init__(self, T=1000, b0=1e-4, b1=0.02):
        betas = torch.linspace(b0, b1, T, dtype=torch.float64)
        abar2 = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        self.T = T
        self.signal = abar2.sqrt().tolist()
        self.noise = (1 - abar2).sqrt().tolist()
        self.signal_t = abar2.sqrt().float()
        self.noise_t = (1 - abar2).sqrt().float()

    def coefficients(self, t, like):
        shape = [-1] + [1] * (like.dim() - 1)
        return self.signal_t.index_select(0, t).view(shape), self.noise_t.index_select(0, t).view(shape)

    def transition(self, t, s):
        r = self.signal[t] / self.signal[s]
        return math.sqrt(max(0.0, 1 - r * r))


class Gaussian:
    """A Gaussian model: network, EMA copy, trainer, and the three samplers."""

    def __init__(self, net, ema, data, shape, clip, batch, lr, ema_decay, variances):
        self.schedule = Schedule()
        self.net, self.ema, self.data, self.shape, self.clip = net, ema, data, shape, clip
        self.variances = variances
        g = torch.Generator().manual_seed(0)
        self.g = g

        def loss():
            x0 = data(batch, g)
            t = torch.randint(1, self.schedule.T + 1, (batch,), generator=g)
            noise = torch.randn(x0.shape, generator=g)
            a, b = self.schedule.coefficients(t, x0)
            xt = x0 * a + noise * b
            return F.mse_loss(self.net(xt, t), noise)

        self.trainer = Trainer(net, ema, loss, batch, lr, ema_decay)

    def sample(self, kind, steps, count, seed):
        sc = self.schedule
        g = torch.Generator().manual_seed(seed)
        grid = leading(sc.T, steps)
        with torch.no_grad():
            x = torch.randn([count] + self.shape, generator=g)
            for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
                levels = torch.full((count,), t, dtype=torch.int64)
                eps = self.ema(x, levels)
                a_t, b_t = sc.signal[t], sc.noise[t]
                x0 = (x - eps * b_t) / a_t
                if self.clip is not None:
                    x0 = x0.clamp(-self.clip, self.clip)
                if s == 0:
                    x = x0
                    continue
                inferred = (x - x0 * a_t) / b_t
                if kind == "ddim":
                    x = x0 * sc.signal[s] + inferred * sc.noise[s]
                elif kind == "ddpm":
                    f = sc.transition(t, s) / b_t
                    noise = inferred * math.sqrt(1 - f * f) + torch.randn(x.shape, generator=g) * f
                    x = x0 * sc.signal[s] + noise * sc.noise[s]
                else:  # analytic-ddim: the DDIM mean plus the C# kernel's step variance
                    mean = x0 * sc.signal[s] + inferred * sc.noise[s]
                    v = self.variances[i]
                    x = mean + torch.randn(mean.shape, generator=g) * math.sqrt(v) if v > 0 else mean
        return x


def toy(settings):
    # demo recipe: lr 2e-3, EMA 0.995, batch 512
    net, ema = MlpDenoiser(), MlpDenoiser()
    return Gaussian(net, ema, lambda n, g: gmm8(n, g), [2], None, settings["toy_batch"], 2e-3, 0.995,
                    settings["analytic_variances"].get("toy", []))


def random_images(n, g):
    return torch.rand([n, 1, 28, 28], generator=g) * 2 - 1


def unet(settings):
    # mnist recipe: UNet base 24, [1, 2, 2], attention at 7x7, lr 1e-3, EMA 0.995, clip x0 to [-1, 1]
    torch.manual_seed(0)
    config = UNetConfig(InChannels=1, BaseChannels=24)
    return Gaussian(UNet(config), UNet(config), random_images, [1, 28, 28], 1.0, settings["image_batch"], 1e-3, 0.995,
                    settings["analytic_variances"].get("unet", []))


# ------------------------------------------------------------------ Cold blur (mnist-blur recipe)

class ColdBlur:
    def __init__(self, settings, T=20, size=11, std=7.0):
        self.T, self.size = T, size
        half = (size - 1) / 2
        rows = []
        for _ in range(T):  # the constant routine: every step has the same std
            w = [math.exp(-((j - half) ** 2) / (2 * std * std)) for j in range(size)]
            total = sum(w)
            rows.append([v / total for v in w])
        self.kernels = torch.tensor(rows, dtype=torch.float64).float()
        torch.manual_seed(0)
        config = UNetConfig(InChannels=1, BaseChannels=24, AttentionAtLowest=False)
        self.net, self.ema = UNet(config), UNet(config)
        g = torch.Generator().manual_seed(0)
        batch = settings["image_batch"]

        def loss():
            x0 = random_images(batch, g)
            t = torch.randint(1, T + 1, (batch,), generator=g)
            xt = self.corrupt(x0, t, torch.zeros_like(x0))
            return F.l1_loss(self.net(xt, t), x0)

        self.trainer = Trainer(self.net, self.ema, loss, batch, 1e-3, 0.995)
        g3 = torch.Generator().manual_seed(3)
        originals = random_images(settings["cold_samples"], g3)
        self.degraded = self.corrupt(originals, torch.full((originals.shape[0],), T, dtype=torch.int64), torch.zeros_like(originals))

    def apply(self, x0, t):
        high = int(t.max().item())
        if high == 0:
            return x0.clone()
        c, pad, k = x0.shape[1], self.size // 2, self.size
        x = x0
        for i in range(1, high + 1):
            kernel = self.kernels[i - 1]
            vertical = kernel.reshape(1, 1, k, 1).expand(c, 1, k, 1)
            horizontal = kernel.reshape(1, 1, 1, k).expand(c, 1, 1, k)
            padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            blurred = F.conv2d(F.conv2d(padded, vertical, groups=c), horizontal, groups=c)
            x = torch.where((t >= i).reshape(-1, 1, 1, 1), blurred, x)
        return x

    def corrupt(self, x0, t, noise):
        positive = (t > 0).reshape(-1, 1, 1, 1).to(x0.dtype)
        return self.apply(x0, t) + noise * positive

    def restore(self):
        with torch.no_grad():
            x = self.degraded
            n = x.shape[0]
            grid = leading(self.T, self.T)
            for t, s in zip(grid[:-1], grid[1:]):
                x0 = self.ema(x, torch.full((n,), t, dtype=torch.int64))
                if s == 0:
                    x = x0
                    continue
                residual = x - self.apply(x0, torch.full((n,), t, dtype=torch.int64))
                x = self.corrupt(x0, torch.full((n,), s, dtype=torch.int64), residual)
        return x


# ------------------------------------------------------------------ Text (wujue-mask / wujue-edit recipes)

def chosen_positions(keys, t):
    order = keys.sort(dim=1, stable=True).indices
    ranks = order.sort(dim=1, stable=True).indices
    return ranks < t.reshape(-1, 1)


def draw(probabilities, g):
    b, l, v = probabilities.shape
    return torch.multinomial(probabilities.reshape(b * l, v).double(), 1, replacement=True, generator=g).reshape(b, l)


class Text:
    def __init__(self, settings):
        config = TransformerConfig(Dimension=192, Layers=3, Heads=4, FeedForward=768, Dropout=0.1)
        torch.manual_seed(0)
        self.net = TextTransformer(VOCAB, LENGTH, config, LENGTH)
        self.ema = TextTransformer(VOCAB, LENGTH, config, LENGTH)
        self.edit = TextTransformer(VOCAB, LENGTH, config, LENGTH).eval()
        self.suppressed = torch.zeros(VOCAB, dtype=torch.bool)
        self.suppressed[[PAD, UNK, MASK]] = True
        self.steps = min(settings["text_steps"], LENGTH)
        g = torch.Generator().manual_seed(0)
        batch = settings["text_batch"]

        def loss():
            x0 = torch.randint(FIRST_REGULAR, VOCAB, (batch, LENGTH), generator=g)
            t = torch.randint(1, LENGTH + 1, (batch,), generator=g)
            keys = torch.rand((batch, LENGTH), generator=g, dtype=torch.float64)
            xt = x0.masked_fill(chosen_positions(keys, t), MASK)
            logits = self.logits(self.net, xt, (xt == MASK).sum(1))
            nll = -logits.log_softmax(2).gather(2, x0.unsqueeze(2)).squeeze(2)
            masked = (xt == MASK).to(nll.dtype)
            return (nll * masked).sum() / masked.sum().clamp_min(1)

        self.trainer = Trainer(self.net, self.ema, loss, batch, 1e-3, 0.995)

    def logits(self, net, x, level):
        return net(x, level).masked_fill(self.suppressed, float("-inf"))

    def sample_mask(self, count, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = torch.full((count, LENGTH), MASK, dtype=torch.int64)
            for i, (t, s) in enumerate(zip(trailing(LENGTH, self.steps)[:-1], trailing(LENGTH, self.steps)[1:])):
                # As CachingPosteriorModel: a uniform batch (the all-[MASK] start) runs one row.
                rows = x[:1] if i == 0 else x
                p = self.logits(self.ema, rows, (rows == MASK).sum(1)).softmax(2)
                p = torch.where((rows == MASK).unsqueeze(2), p, F.one_hot(rows, VOCAB).to(p.dtype))
                if i == 0:
                    p = p.expand(count, -1, -1).contiguous()
                masked = x == MASK
                fill = (masked.sum(1) - s).clamp_min(0)
                drawn = draw(p, g)
                keys = torch.rand(masked.shape, dtype=torch.float64, generator=g).masked_fill(~masked, float("inf"))
                chosen = chosen_positions(keys, fill) & masked
                x = torch.where(chosen, drawn, x)
        return x

    def sample_edit(self, count, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            x = torch.randint(FIRST_REGULAR, VOCAB, (count, LENGTH), generator=g)
            grid = trailing(LENGTH, self.steps)
            for t, s in zip(grid[:-1], grid[1:]):
                p = self.logits(self.edit, x, torch.full((count,), t, dtype=torch.int64)).softmax(2).double()
                wrong = (1 - p.gather(2, x.unsqueeze(2)).squeeze(2)).clamp_min(1e-12)
                keys = -(torch.rand(wrong.shape, dtype=torch.float64, generator=g).log() / wrong)
                repair = chosen_positions(keys, torch.full((count,), t - s, dtype=torch.int64))
                allowed = torch.ones_like(p, dtype=torch.bool)
                allowed[:, :, :FIRST_REGULAR] = False
                allowed = allowed.scatter(2, x.unsqueeze(2), torch.zeros_like(x.unsqueeze(2), dtype=torch.bool))
                restricted = p * allowed
                mass = restricted.sum(2, keepdim=True)
                restricted = torch.where(mass > 1e-12, restricted, allowed.double())
                drawn = draw(restricted / restricted.sum(2, keepdim=True), g)
                x = torch.where(repair, drawn, x)
        return x


# ------------------------------------------------------------------ rows

def each_row(ids):
    """Yields (row id, id without precision), the body running under CPU autocast in bfloat16 for ids ending in @bf16."""
    for full in ids:
        bf16 = full.endswith("@bf16")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            yield full, (full[:-len("@bf16")] if bf16 else full)


def run_round(settings, ids, round_index):
    rows, params = {}, {}
    suites = {i.split(".")[0] for i in ids}
    if "toy" in suites:
        m = toy(settings)
        params["toy"] = parameter_count(m.net)
        m.trainer.times(20)
        for kind in ("ddpm", "ddim", "analytic-ddim"):
            m.sample(kind, settings["toy_steps"], 256, 0)
        for full, i in each_row(ids):
            if i == "toy.train":
                rows[full] = median(m.trainer.times(settings["toy_train_steps"]))
            elif i.startswith("toy."):
                rows[full] = rate(settings["toy_samples"], lambda: m.sample(i[4:], settings["toy_steps"], settings["toy_samples"], round_index + 1))
    if "unet" in suites:
        m = unet(settings)
        params["unet"] = parameter_count(m.net)
        m.trainer.times(3)
        for kind in ("ddpm", "ddim", "analytic-ddim"):
            m.sample(kind, 3, 8, 0)
        for full, i in each_row(ids):
            if i == "unet.train":
                rows[full] = median(m.trainer.times(settings["image_train_steps"]))
            elif i.startswith("unet."):
                rows[full] = rate(settings["image_samples"], lambda: m.sample(i[5:], settings["image_steps"], settings["image_samples"], round_index + 1))
    if "cold" in suites:
        c = ColdBlur(settings)
        params["cold"] = parameter_count(c.net)
        c.trainer.times(3)
        c.restore()
        for full, i in each_row(ids):
            if i == "cold.train":
                rows[full] = median(c.trainer.times(settings["image_train_steps"]))
            elif i == "cold.improved":
                rows[full] = rate(settings["cold_samples"], c.restore)
    if "text" in suites:
        t = Text(settings)
        params["text"] = parameter_count(t.net)
        t.trainer.times(5)
        t.sample_mask(8, 0)
        t.sample_edit(8, 0)
        for full, i in each_row(ids):
            if i == "text.train":
                rows[full] = median(t.trainer.times(settings["text_train_steps"]))
            elif i == "text.mask-improved":
                rows[full] = rate(settings["text_samples"], lambda: t.sample_mask(settings["text_samples"], round_index + 1))
            elif i == "text.edit-improved":
                rows[full] = rate(settings["text_samples"], lambda: t.sample_edit(settings["text_samples"], round_index + 1))
    return rows, params


def run_memory(settings, row):
    """One memory row; an id ending in @bf16 runs under CPU autocast in bfloat16."""
    bf16 = row.endswith("@bf16")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return run_memory_row(settings, row[:-len("@bf16")] if bf16 else row)


def run_memory_row(settings, row):
    out = {}
    if row == "mem.baseline":
        torch.ones(1)
    elif row == "mem.unet-sample":
        m = unet(settings)
        m.sample("ddim", settings["image_steps"], settings["memory_samples"], 0)
    elif row == "mem.unet-train":
        m = unet(settings)
        m.trainer.times(settings["memory_train_steps"])
    elif row == "mem.drift":
        m = toy(settings)
        warm_step, steps = min(5000, max(1, settings["rss_steps"] // 4)), settings["rss_steps"]
        for step in range(1, steps + 1):
            m.trainer.step()
            if step == warm_step:
                out["rss_warm_mb"] = rss("VmRSS")
        out["rss_end_mb"] = rss("VmRSS")
        out["growth_percent"] = 100 * (out["rss_end_mb"] - out["rss_warm_mb"]) / out["rss_warm_mb"]
    else:
        raise SystemExit(f"unknown memory row {row}")
    # VmHWM, as on the C# side. ru_maxrss is no use here: Linux carries the high-water mark of the
    # parent (the udm process that forked this one) across fork and exec.
    out["peak_mb"] = rss("VmHWM")
    return out


def versions():
    config = torch.__config__.show()
    blas = next((part.split("=")[1] for part in config.replace(",", "\n").split("\n") if "BLAS_INFO" in part), "?")
    core = os.environ.get("OPENBLAS_CORETYPE")
    return {"python": platform.python_version(), "torch": torch.__version__,
            "blas": f"BLAS {blas}" + (f", OPENBLAS_CORETYPE={core}" if core else ""), "threads": torch.get_num_threads()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", required=True, help="the JSON that udm bench writes")
    p.add_argument("--rows", default="", help="comma-separated row ids")
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--memory-row")
    a = p.parse_args()
    with open(a.settings, encoding="utf-8") as f:
        settings = json.load(f)
    torch.set_num_threads(settings["threads"])
    if a.memory_row:
        print(json.dumps(run_memory(settings, a.memory_row)))
        return
    ids = [i for i in a.rows.split(",") if i]
    rows, params = run_round(settings, ids, a.round)
    print(json.dumps({"versions": versions(), "rows": rows, "parameters": params}))


if __name__ == "__main__":
    main()
