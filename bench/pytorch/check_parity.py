"""Checks that a PyTorch twin computes what the C# network computes.

FOLDER is written by UnifiedDiffusion.Networks.WeightExport.Save (weights.json/.bin, and extra.json/.bin
holding the test input and the C# output; export.json, when present, gives the model, its config and
the C# parameter count). Builds the twin (bench/pytorch/networks.py), loads the weights, runs the
saved input and compares with the saved output: pass if max |diff| <= tolerance (1e-4).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/pytorch/check_parity.py /tmp/parity/unet-mnist \
        --model unet --config '{"BaseChannels": 24}'
The exports (unet-mnist: the mnist recipe; unet-cond: every UNetConfig option; unet-plain: no
attention; transformer: the text recipes), batch 4, fixed seeds, come from the C# tests:
    UDM_PARITY_DIR=/tmp/parity dotnet test tests/UnifiedDiffusion.Tests --filter Category=Parity
and, with export.json present, FOLDER alone is enough. Exit code 0 on a pass, 1 on a mismatch. Prints one JSON object.
"""
import argparse, json, os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from networks import build, csharp_name, parameter_count  # noqa: E402
from weights import load_into, read_extra  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--model", choices=["unet", "transformer"], help="default: from FOLDER/export.json")
    parser.add_argument("--config", help="JSON object or a path to a JSON file, C# property names; default: from FOLDER/export.json")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    export = {}
    export_path = os.path.join(args.folder, "export.json")
    if os.path.exists(export_path):
        with open(export_path, encoding="utf-8") as f:
            export = json.load(f)
    model = args.model or export.get("model")
    if args.config is None:
        config = export.get("config")
    elif os.path.exists(args.config):
        with open(args.config, encoding="utf-8") as f:
            config = json.load(f)
    else:
        config = json.loads(args.config)
    if model is None or config is None:
        parser.error("give --model and --config (no export.json in FOLDER)")

    network = build(model, config)
    load_into(network, args.folder, csharp_name)
    network.eval()
    extra = read_extra(args.folder)
    with torch.no_grad():
        if model == "unet":
            output = network(extra["x"], extra["t"], extra.get("labels"))
        else:
            output = network(extra["tokens"], extra["level"])
    expected = extra["output"]
    if tuple(output.shape) != tuple(expected.shape):
        raise SystemExit(f"shape mismatch: PyTorch {tuple(output.shape)}, C# {tuple(expected.shape)}")
    diff = (output - expected).abs()
    result = {
        "folder": args.folder,
        "model": model,
        "config": config,
        "torch": torch.__version__,
        "parameters_pytorch": parameter_count(network),
        "parameters_csharp": export.get("parameterCount"),
        "output_shape": list(output.shape),
        "max_abs_diff": diff.max().item(),
        "mean_abs_diff": diff.mean().item(),
        "max_abs_output": expected.abs().max().item(),
        "tolerance": args.tolerance,
    }
    counts_match = result["parameters_csharp"] is None or result["parameters_csharp"] == result["parameters_pytorch"]
    result["counts_match"] = counts_match
    result["pass"] = bool(result["max_abs_diff"] <= args.tolerance and counts_match)
    print(json.dumps(result))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
