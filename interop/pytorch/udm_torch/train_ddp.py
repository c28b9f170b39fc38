"""Continue training an exported model with DistributedDataParallel, then export it again.

    export PYTHONPATH=interop/pytorch
    /usr/bin/python3 -m udm_torch.torchrun --nproc_per_node 2 -m udm_torch.train_ddp EXPORT --out NEW --steps 1000
    udm import NEW --out runs/continued && udm sample --run runs/continued

(udm_torch.torchrun is torchrun with a fix for Debian's torch 1.13 on Python 3.11; elsewhere
plain `torchrun --nproc_per_node 2 -m udm_torch.train_ddp ...` is the same.)

torchrun starts one process per GPU or CPU slot; each draws its own batch of ceil(batchSize /
processes) from the data, DDP averages the gradients, and every process takes the same optimizer
step. Backend: nccl on CUDA (one GPU per process, untested here), gloo on CPU. Without torchrun it
runs as one process.

The step is the C# Trainer's (src/UnifiedDiffusion/Core/Trainer.cs) with the experiment's
settings: AdamW (betas 0.9/0.999, eps 1e-8, the experiment's weight decay), a linear warm-up over
training.warmupSteps to training.learningRate, then constant or half-cosine decay to 0 at --steps
(training.decay), the global gradient norm clipped at training.gradClip, and an EMA of the
weights with training.emaDecay, kept in float32. Training starts from the export's EMA weights
(the only weights an export holds; the optimizer starts afresh) and the schedule runs over the
--steps of this run. The losses are the C# families' (losses.py): Gaussian on images (UNet) and
the mask and edit models on text (Transformer). The new folder holds the EMA weights, config.json
with "step" advanced by --steps, and loss.csv with the new steps' losses (mean over processes)
appended.

Data: the config's own data set (data.py: MNIST, Fashion-MNIST, digits from the udm data cache,
idx:FOLDER, text:FILE, moby-dick, names, the poem sets); --data reads the same set from elsewhere
(e.g. idx:/scratch/mnist) and leaves config.json's data name as it is.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist

from . import export
from .data import DataError, open_data
from .losses import Schedule, gaussian_objective, suppressed, token_objective
from .safetensors_io import SafetensorsError


class TrainingError(RuntimeError):
    """A setting or a data set this model cannot train with; the message says what to do."""


def learning_rate(step, peak, warmup, steps, decay):
    """Trainer.LearningRateAt: linear warm-up from peak/warmup to the peak, then constant or a half
    cosine down to 0 at the last step."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if str(decay).lower() == "constant":
        return peak
    progress = min(max((step - warmup) / max(1, steps - warmup), 0.0), 1.0)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def objective_for(config, network, data, device):
    """loss(model, x0, labels, generator) for the exported family, after checking that the data fits the network."""
    family = config.get("family")
    experiment = config.get("experiment") or {}
    model = config["network"]["model"]
    settings = config["network"].get("config") or {}
    if family == "gaussian":
        if data.kind != "images" or model != "unet":
            raise TrainingError(f"the kit trains the Gaussian family on images (UNet); this model is a {model} on {config.get('data')}")
        shape = list(data.images.shape[1:])
        if shape[0] != int(settings.get("InChannels", 1)):
            raise TrainingError(f"the data has {shape[0]} channels but the UNet takes {settings.get('InChannels')}; train on the data the model was made for")
        classes = int(settings.get("ClassCount", 0))
        if classes > 0 and data.class_count != classes:
            raise TrainingError(f"the data has {data.class_count} classes but the UNet {classes}; train on the data the model was made for")
        schedule = Schedule(experiment.get("schedule") or {}, device)
        prediction = experiment.get("prediction", "epsilon")
        dropout = float(experiment.get("labelDropout", 0.1))
        return lambda net, x0, labels, g: gaussian_objective(net, schedule, x0, labels, g, prediction, classes, dropout)
    if family in ("mask", "edit"):
        if data.kind != "text" or model != "transformer":
            raise TrainingError(f"the kit trains the {family} model on text (Transformer); this model is a {model} on {config.get('data')}")
        vocab, length = int(settings["VocabSize"]), int(settings["Length"])
        if len(data.vocabulary) != vocab or data.length != length:
            raise TrainingError(f"the data gives {len(data.vocabulary)} tokens and sequences of {data.length}, the network has {vocab} and {length}; "
                                "train on the text the model was made for")
        weighting = (experiment.get("text") or {}).get("weighting", "meanOverMasked")
        blocked = suppressed(vocab, data.uses_padding, device)
        return lambda net, x0, labels, g: token_objective(family, net, x0, g, blocked, vocab, weighting)
    raise TrainingError(f"the kit has no loss for the {family} family (it covers gaussian on images, mask and edit on text); train it with `udm train`")


def parse(argv):
    parser = argparse.ArgumentParser(prog="udm_torch.train_ddp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export", help="the folder `udm export` (or udm_torch.save) wrote")
    parser.add_argument("--out", required=True, help="the new exported folder (must not exist or be empty, unless --force)")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps of this run")
    parser.add_argument("--data", help="read the config's data set from here instead (idx:FOLDER, text:FILE, ...)")
    parser.add_argument("--batch-size", type=int, help="global batch per step (default: training.batchSize), split across the processes")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: training.learningRate)")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: training.warmupSteps)")
    parser.add_argument("--seed", type=int, help="seed of the batches and noise (default: training.seed); each process adds its rank")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per process (default 1)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between progress lines (default 10)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def train(args):
    torch.set_num_threads(max(1, args.threads))
    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    device_type = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda but torch sees no GPU; use --device cpu")
    if os.path.isfile(args.out) or os.path.isdir(args.out) and os.listdir(args.out) and not args.force:
        raise TrainingError(f"{args.out} exists and is not an empty folder; write into a new folder, or pass --force to replace it")
    backend = "nccl" if device_type == "cuda" else "gloo"
    rank, world, local_rank = 0, 1, 0
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", local_rank) if device_type == "cuda" else torch.device("cpu")
    main = rank == 0
    network, config = export.load(args.export)
    experiment = config.get("experiment") or {}
    training = experiment.get("training") or {}
    data = open_data(args.data or config.get("data") or experiment.get("data", ""), experiment)
    objective = objective_for(config, network, data, device)

    network.to(device).train()
    parameters = list(network.parameters())
    ema = [p.detach().clone().float() for p in parameters]
    model = torch.nn.parallel.DistributedDataParallel(network, device_ids=[local_rank] if device_type == "cuda" else None) if distributed else network

    peak = args.lr if args.lr is not None else float(training.get("learningRate", 1e-3))
    warmup = args.warmup if args.warmup is not None else int(training.get("warmupSteps", 200))
    decay = training.get("decay", "cosine")
    clip = float(training.get("gradClip", 1.0))
    ema_decay = float(training.get("emaDecay", 0.999))
    batch = args.batch_size or int(training.get("batchSize", 64))
    per_rank = -(-batch // world)
    seed = (args.seed if args.seed is not None else int(training.get("seed", 0))) * 1000 + rank
    data_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator(device=device).manual_seed(seed + 500)
    optimizer = torch.optim.AdamW(parameters, lr=peak, betas=(0.9, 0.999), eps=1e-8, weight_decay=float(training.get("weightDecay", 0.0)))
    if main:
        where = f"{world} processes on {device_type} ({backend} backend)" if distributed else f"one process on {device_type}"
        print(f"udm_torch.train_ddp: {config.get('family')} {config['network']['model']} on {data.name} ({len(data)} items), {where}", flush=True)
        print(f"  {args.steps} steps from step {config.get('step', 0)}, batch {per_rank} x {world} = {per_rank * world}, "
              f"lr {peak} (warm-up {warmup}, {decay}), clip {clip}, EMA {ema_decay}", flush=True)

    losses, start = [], time.perf_counter()
    for step in range(args.steps):
        rate = learning_rate(step, peak, warmup, args.steps, decay)
        for group in optimizer.param_groups:
            group["lr"] = rate
        x0, labels = data.sample(per_rank, data_generator)
        x0 = x0.to(device)
        labels = labels.to(device) if labels is not None else None
        optimizer.zero_grad(set_to_none=True)
        loss = objective(model, x0, labels, noise_generator)
        value = loss.detach().clone()
        if distributed:
            dist.all_reduce(value)
            value /= world
        value = value.item()
        if not math.isfinite(value):
            raise TrainingError(f"the loss became {value} at step {step + 1}; nothing was written; lower --lr and train again")
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        with torch.no_grad():
            for shadow, p in zip(ema, parameters):
                shadow.mul_(ema_decay).add_(p.detach().float(), alpha=1 - ema_decay)
        losses.append(value)
        if main and ((step + 1) % max(1, args.log_every) == 0 or step + 1 == args.steps):
            print(f"  step {step + 1}/{args.steps}  loss {value:.5f}  lr {rate:.3g}  {time.perf_counter() - start:.1f} s", flush=True)

    summary = None
    if main:
        with torch.no_grad():
            for shadow, p in zip(ema, parameters):
                p.copy_(shadow.to(p.dtype))
        new_step = int(config.get("step", 0)) + args.steps
        note = (f"continued in PyTorch (udm_torch.train_ddp) from step {config.get('step', 0)} for {args.steps} steps "
                f"on {world} process(es), {device_type}, batch {per_rank * world}")
        out = export.save(args.out, network.cpu(), config, step=new_step, losses=export.read_losses(args.export) + losses,
                          note=note, force=args.force)
        summary = {"out": out, "step": new_step, "steps": args.steps, "world_size": world, "device": device_type,
                   "backend": backend if distributed else None, "batch": per_rank * world,
                   "first_loss": losses[0], "last_loss": losses[-1], "seconds": time.perf_counter() - start}
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        summary = train(args)
    except (TrainingError, DataError, export.ExportError, SafetensorsError) as e:
        print(f"udm_torch.train_ddp: {e}", file=sys.stderr)
        return 2
    if summary is not None:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
