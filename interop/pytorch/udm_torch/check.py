"""Checks the PyTorch twins against tensors the C# side computed: one forward pass, and the loss.

    /usr/bin/python3 -m udm_torch.check FOLDER [FOLDER ...] [--tolerance 1e-4]

FOLDER is an exported model folder (config.json with "format" and "network", model.safetensors)
with a check.safetensors beside it, written by the C# side from the same weights:
  forward  unet/mlp: "x", "t" (and "labels"); transformer: "tokens" (ids, or latents), "level";
           and "output", the C# network's output.
  loss     (optional) "loss.x0", "loss.t" and the draws: "loss.noise" (Gaussian ε, or the edit
           model's [B, L, 2] keys and replacement draws), "loss.keys" (mask model), "loss.labels"
           (conditioning labels after dropout), "loss.usesPadding"; and the C# losses on those
           draws: "loss.epsilon", "loss.sample", "loss.velocity" (Gaussian, by prediction type),
           "loss.meanOverMasked", "loss.elbo" (mask), "loss.edit" (edit).
Prints one JSON object per folder; passes when every max |diff| <= tolerance and the parameter
counts agree. Exit code 0 when every folder passes, 1 otherwise.
"""
import argparse
import json
import os
import sys

import torch

from .export import load
from .losses import Schedule, edit_loss, gaussian_loss, mask_loss, suppressed
from .networks import parameter_count
from .safetensors_io import read

CHECK = "check.safetensors"


def _scalar(tensor):
    return float(tensor.reshape(-1)[0].item())


def losses(network, config, tensors):
    """{name: (C# value, PyTorch value)} for every loss the check file holds."""
    found = {}
    if "loss.x0" not in tensors:
        return found
    x0, t = tensors["loss.x0"], tensors["loss.t"]
    experiment = config.get("experiment") or {}
    model = config["network"]["model"]
    if model in ("unet", "mlp"):
        schedule = Schedule(experiment.get("schedule") or {})
        for prediction in ("epsilon", "sample", "velocity"):
            if "loss." + prediction in tensors:
                value = gaussian_loss(network, schedule, x0, t, tensors["loss.noise"], prediction, tensors.get("loss.labels"))
                found[prediction] = (_scalar(tensors["loss." + prediction]), value.item())
        return found
    vocab = int(config["network"]["config"]["VocabSize"])
    padding = bool(_scalar(tensors["loss.usesPadding"])) if "loss.usesPadding" in tensors else False
    blocked = suppressed(vocab, padding)
    for weighting in ("meanOverMasked", "elbo"):
        if "loss." + weighting in tensors:
            found[weighting] = (_scalar(tensors["loss." + weighting]), mask_loss(network, x0, t, tensors["loss.keys"], blocked, weighting).item())
    if "loss.edit" in tensors:
        found["edit"] = (_scalar(tensors["loss.edit"]), edit_loss(network, x0, t, tensors["loss.noise"], blocked, vocab).item())
    return found


def check(folder, tolerance):
    network, config = load(folder)
    tensors, _ = read(os.path.join(folder, CHECK))
    model = config["network"]["model"]
    with torch.no_grad():
        if model == "transformer":
            output = network(tensors["tokens"], tensors["level"])
        elif "labels" in tensors:
            output = network(tensors["x"], tensors["t"], tensors["labels"])
        else:
            output = network(tensors["x"], tensors["t"])
        found = losses(network, config, tensors)
    expected = tensors["output"]
    if tuple(output.shape) != tuple(expected.shape):
        raise SystemExit(f"{folder}: shape mismatch: PyTorch {tuple(output.shape)}, C# {tuple(expected.shape)}")
    diff = (output - expected).abs()
    loss_diffs = {name: abs(a - b) for name, (a, b) in found.items()}
    result = {
        "folder": folder,
        "model": model,
        "torch": torch.__version__,
        "parameters_pytorch": parameter_count(network),
        "parameters_csharp": config["network"].get("parameters"),
        "output_shape": list(output.shape),
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "max_abs_output": expected.abs().max().item(),
        "losses": {name: {"csharp": a, "pytorch": b, "abs_diff": abs(a - b)} for name, (a, b) in found.items()},
        "max_loss_diff": max(loss_diffs.values()) if loss_diffs else None,
        "tolerance": tolerance,
    }
    counts_match = result["parameters_csharp"] is None or result["parameters_csharp"] == result["parameters_pytorch"]
    result["counts_match"] = counts_match
    result["pass"] = bool(result["max_abs_diff"] <= tolerance and counts_match and all(d <= tolerance for d in loss_diffs.values()))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="udm_torch.check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ok = True
    for folder in args.folders:
        result = check(folder, args.tolerance)
        ok &= result["pass"]
        print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
