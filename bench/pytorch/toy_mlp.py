"""PyTorch reference for `udm bench`: the same toy MLP denoiser, batch and steps as the C# side.

Prints one JSON object. Run with Debian's python3-torch (bench/install-pytorch.sh):
    /usr/bin/python3 bench/pytorch/toy_mlp.py --threads 2
"""
import argparse, json, math, os, statistics, sys, time
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop", "pytorch"))
from udm_torch.networks import MlpDenoiser  # noqa: E402  (the twin of UnifiedDiffusion.Networks.MlpDenoiser)


def schedule(T=1000, b0=1e-4, b1=0.02):
    betas = torch.linspace(b0, b1, T, dtype=torch.float64)
    abar2 = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    return abar2.sqrt().float(), (1 - abar2).sqrt().float()


def gmm8(n, g):
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.double() * (2 * math.pi / 8)
    means = torch.stack([2 * ang.cos(), 2 * ang.sin()], 1)
    return (means + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)).float()


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--train-steps", type=int, default=200)
    p.add_argument("--sample-count", type=int, default=4000)
    p.add_argument("--sample-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net, ema = MlpDenoiser(), MlpDenoiser()
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    sig, noi = schedule()
    params, ema_params = list(net.parameters()), list(ema.parameters())

    def train_step():
        x0 = gmm8(a.batch, g)
        t = torch.randint(1, 1001, (a.batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = x0 * sig[t][:, None] + eps * noi[t][:, None]
        opt.zero_grad()
        loss = F.mse_loss(net(xt, t), eps)
        loss.item()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for pe, pn in zip(ema_params, params):
                pe.mul_(0.999).add_(pn, alpha=0.001)

    train_ms = median_ms(train_step, 20, a.train_steps)

    grid = [1 + (i * 1000) // a.sample_steps for i in range(a.sample_steps)][::-1] + [0]

    def sample(eta):
        with torch.no_grad():
            x = torch.randn(a.sample_count, 2, generator=g)
            for t, s in zip(grid[:-1], grid[1:]):
                tt = torch.full((a.sample_count,), t, dtype=torch.long)
                eps = ema(x, tt)
                x0 = (x - eps * noi[t]) / sig[t]
                if s == 0:
                    x = x0
                    continue
                eps_hat = (x - x0 * sig[t]) / noi[t]
                sigma = eta * noi[s] * math.sqrt(max(0.0, 1 - (sig[t] / sig[s]).item() ** 2)) / noi[t]
                x = x0 * sig[s] + eps_hat * math.sqrt(max(0.0, noi[s].item() ** 2 - float(sigma) ** 2))
                if eta > 0:
                    x = x + float(sigma) * torch.randn(x.shape, generator=g)
        return x

    ddim_ms = median_ms(lambda: sample(0.0), 1, a.repeats)
    ddpm_ms = median_ms(lambda: sample(1.0), 1, a.repeats)
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_step_ms": train_ms,
        "ddim_samples_per_s": a.sample_count / (ddim_ms / 1000),
        "ddpm_samples_per_s": a.sample_count / (ddpm_ms / 1000),
    }))


if __name__ == "__main__":
    main()
