"""Checks that the PyTorch twins compute what the C# networks compute (`udm bench --pytorch`).

FOLDER holds config.json (the format and the network: model, config, C# parameter count),
model.safetensors (the weights under the twins' names) and check.safetensors (the test input and
the C# output), as UnifiedDiffusion.Interop.TwinExport writes them; a folder of `udm export` with
a check.safetensors added works the same. The check itself is interop/pytorch/udm_torch/check.py:
build the twin, load the weights, run the saved input, pass if max |diff| <= tolerance (1e-4).

    OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 bench/pytorch/check_parity.py /tmp/parity/unet-mnist
The exports (unet-mnist: the mnist recipe; unet-cond: every UNetConfig option; unet-plain: no
attention; transformer: the text recipes), batch 4, fixed seeds, come from the C# tests:
    UDM_PARITY_DIR=/tmp/parity dotnet test tests/UnifiedDiffusion.Tests --filter Category=Parity
Exit code 0 on a pass, 1 on a mismatch. Prints one JSON object per folder.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "interop", "pytorch"))
from udm_torch.check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
