#!/usr/bin/env bash
# Installs the PyTorch reference side of `udm bench --pytorch`: Debian's python3-torch (CPU)
# with OpenBLAS (without libopenblas0 Debian's torch falls back to the reference BLAS, ~50x slower).
set -euo pipefail
if /usr/bin/python3 -c "import torch" 2>/dev/null && [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread ]; then echo "python3-torch already installed"; exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread
