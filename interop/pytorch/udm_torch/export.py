"""Exported model folders (`udm export`, src/UnifiedDiffusion/Runs/ModelExport.cs), read and written.

    network, config = load("FOLDER")       # the twin in eval mode with the EMA weights, config.json as a dict
    save("NEW", network, config, step=...)  # a folder `udm import NEW --out RUN` accepts

A folder holds config.json ({"format": "unified-diffusion/1", "family", "data", "step", "network":
{"model", "config", "parameters"}, "weights", "experiment"}), model.safetensors (float32, the
twins' parameter names) or model.pth (a torch.save'd state dict under the same names),
scheduler_config.json (Gaussian and encoding families: diffusers' DDPMScheduler keys; the
networks take level t = timestep + udm_level_offset), README.md and loss.csv.
"""
import copy
import json
import os
import shutil
import uuid

import torch

from . import safetensors_io
from .losses import signal_table
from .networks import build, parameter_count

FORMAT = "unified-diffusion/1"
CONFIG, WEIGHTS, PTH, SCHEDULER, CARD, LOSSES = "config.json", "model.safetensors", "model.pth", "scheduler_config.json", "README.md", "loss.csv"
LEVEL_OFFSET = 1


class ExportError(ValueError):
    """A folder that is not a usable export; the message says what to do."""


def read_config(folder):
    """config.json of an exported folder, with its format and network section checked."""
    path = os.path.join(folder, CONFIG)
    if not os.path.isdir(folder):
        raise ExportError(f"{folder} is not a folder; give the folder that `udm export` wrote")
    if not os.path.exists(path):
        raise ExportError(f"{folder} has no {CONFIG}; give the folder that `udm export` wrote")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as e:
        raise ExportError(f"{CONFIG} is not valid JSON ({e}); export the model again") from None
    if not isinstance(config, dict) or "format" not in config:
        raise ExportError(f"{CONFIG} has no \"format\" field; it was not written by `udm export`")
    if config["format"] != FORMAT:
        raise ExportError(f"{CONFIG} is in format {config['format']}; this kit reads {FORMAT}")
    network = config.get("network")
    if not isinstance(network, dict) or "model" not in network:
        raise ExportError(f"the {config.get('family', '?')} model in {folder} has no PyTorch twin (config.json's network is empty); "
                          "the twins cover the UNet, the Transformer and the MLP")
    return config


def build_network(config):
    """The twin that config.json's network section describes (fresh weights)."""
    network = config["network"]
    try:
        module = build(network["model"], network.get("config") or {})
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"config.json's network ({network.get('model')}) cannot be built: {e}") from None
    count = network.get("parameters")
    if count is not None and int(count) != parameter_count(module):
        raise ExportError(f"the C# network has {count} parameters but its twin {parameter_count(module)}; the twins no longer match the C# networks")
    return module


def load(folder, device="cpu"):
    """(the twin in eval mode with the folder's weights, config.json as a dict). Every tensor is
    checked (present, dtype, shape, inside the file, nothing extra) before any is copied."""
    config = read_config(folder)
    module = build_network(config)
    expected = module.state_dict()
    safetensors, pth = os.path.join(folder, WEIGHTS), os.path.join(folder, PTH)
    if os.path.exists(safetensors):
        safetensors_io.check(safetensors, expected)
        tensors, _ = safetensors_io.read(safetensors)
        source = WEIGHTS
    elif os.path.exists(pth):
        try:  # tensors and containers only: a .pth from elsewhere runs no code
            tensors = torch.load(pth, map_location="cpu", weights_only=True)
        except RuntimeError as e:
            raise ExportError(f"{PTH} is not a state dict of tensors ({str(e).splitlines()[0]})") from None
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise ExportError(f"{PTH} is not a state dict of tensors; save one with torch.save(model.state_dict(), \"{PTH}\")")
        source = PTH
    else:
        raise ExportError(f"{folder} holds neither {WEIGHTS} nor {PTH}; export the model again")
    safetensors_io.load_state(module, tensors, source)
    return module.to(device).eval(), config


def scheduler_config(experiment):
    """The Gaussian schedule in diffusers' DDPMScheduler keys (ModelExport.SchedulerConfig); None
    for families without one."""
    if experiment.get("family") not in ("gaussian", "encoding"):
        return None
    schedule = experiment.get("schedule") or {}
    kind = str(schedule.get("kind", "linear")).lower()
    clip = experiment.get("clipSample")
    json_config = {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": int(schedule.get("steps", 1000)),
        "beta_start": schedule.get("betaStart", 1e-4),
        "beta_end": schedule.get("betaEnd", 0.02),
        "beta_schedule": "squaredcos_cap_v2" if kind == "cosine" else "linear",
        "prediction_type": {"epsilon": "epsilon", "sample": "sample"}.get(experiment.get("prediction", "epsilon"), "v_prediction"),
        "clip_sample": clip is not None,
        "clip_sample_range": 1.0 if clip is None else clip,
        "variance_type": "fixed_small",
        "timestep_spacing": "leading",
        "udm_level_offset": LEVEL_OFFSET,
    }
    if kind == "custom":
        signal = signal_table(schedule)
        json_config["trained_betas"] = [1 - signal[t] ** 2 / signal[t - 1] ** 2 for t in range(1, len(signal))]
    return json_config


def _card(config, note):
    experiment = config.get("experiment") or {}
    network = config.get("network") or {}
    lines = [
        f"# {config.get('family')} diffusion on {config.get('data')}", "",
        "Exported by `udm_torch.save` (interop/pytorch of UnifiedDiffusion) in the layout of `udm export`.", "",
        "| | |", "|---|---|",
        f"| family | {config.get('family')} |",
        f"| data | {config.get('data')} |",
        f"| network | {network.get('model')}, {network.get('parameters')} parameters |",
        f"| step | {config.get('step')} |",
        f"| weights | `{WEIGHTS}`: the EMA weights, float32 |",
    ]
    if note:
        lines.append(f"| history | {note} |")
    lines += ["", "## Use", "", "```bash",
              "udm import THIS_FOLDER --out runs/imported     # a run that `udm sample` and `udm eval` take",
              "```", "", "In PyTorch: `network, config = udm_torch.load(\"THIS_FOLDER\")`.", ""]
    if scheduler_config(experiment) is not None:
        lines += [f"`{SCHEDULER}` holds the noise schedule in diffusers' DDPMScheduler keys; call the network with `timestep + {LEVEL_OFFSET}`.", ""]
    return "\n".join(lines)


def save(folder, module, config, step=None, losses=None, note=None, force=False):
    """Writes `module`'s weights (float32, its own parameter names) and `config` (config.json's
    dict, with "step" replaced when given) as an exported folder, with scheduler_config.json,
    README.md and, when `losses` (one float per step) are given, loss.csv. The folder appears
    whole or not at all; a non-empty folder is replaced only with `force`."""
    if os.path.isfile(folder):
        raise ExportError(f"{folder} is a file; save into a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not force:
        raise ExportError(f"{folder} is not empty; save into a new folder, or pass force=True to replace it")
    config = copy.deepcopy(config)
    config["format"] = FORMAT
    if step is not None:
        config["step"] = int(step)
    if config.get("network") is not None:
        config["network"]["parameters"] = parameter_count(module)
    full = os.path.abspath(folder)
    parent = os.path.dirname(full)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(full)}.tmp-{uuid.uuid4().hex}")
    try:
        os.makedirs(staging)
        state = {name: (t.detach().float() if t.is_floating_point() else t.detach()).cpu().contiguous()
                 for name, t in module.state_dict().items()}
        safetensors_io.write(os.path.join(staging, WEIGHTS), state, {"format": "pt"})
        with open(os.path.join(staging, CONFIG), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)
            f.write("\n")
        scheduler = scheduler_config(config.get("experiment") or {})
        if scheduler is not None:
            with open(os.path.join(staging, SCHEDULER), "w", encoding="utf-8") as f:
                json.dump(scheduler, f, indent=2)
                f.write("\n")
        if losses:
            with open(os.path.join(staging, LOSSES), "w", encoding="utf-8") as f:
                f.write("step,loss\n" + "".join(f"{i + 1},{float(v)!r}\n" for i, v in enumerate(losses)))
        with open(os.path.join(staging, CARD), "w", encoding="utf-8") as f:
            f.write(_card(config, note))
        if os.path.isdir(full):
            shutil.rmtree(full)
        os.rename(staging, full)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return full


def read_losses(folder):
    """The losses of an exported folder's loss.csv (empty when it has none)."""
    path = os.path.join(folder, LOSSES)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [float(line.split(",", 1)[1]) for line in list(f)[1:] if line.strip()]
