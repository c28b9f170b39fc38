#!/usr/bin/env bash
# Reproduces the image tables of BENCHMARKS.md (issue 3): Gaussian diffusion on MNIST against
# steps, cold diffusion (deblurring, inpainting, generation from blur). Trains the recipes first
# (fetching MNIST into the data cache), then evaluates. On 2 cores: ~2 h of training in all.
# Usage: bench/results-images.sh [RUNS_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }

for recipe in mnist mnist-blur mnist-inpaint; do
  [ -f "$runs/$recipe/checkpoint.udm" ] || udm train "$recipe" --out "$runs/$recipe" --threads 1
done

echo "## Gaussian diffusion on MNIST: classifier-FID and NLL against steps"
udm eval --run "$runs/mnist" --sampler ddpm,ddim,analytic-ddpm,analytic-ddim --steps 10,20,50,100 --count 250 --nll --markdown
udm eval --run "$runs/mnist" --sampler ddpm,ddim --steps 1000 --count 100 --nll --markdown
udm sample --run "$runs/mnist" --sampler ddim --steps 50 --count 64 --out docs/mnist-ddim-50.png
udm sample --run "$runs/mnist" --sampler ddpm --steps 10 --count 64 --out docs/mnist-ddpm-10.png
udm sample --run "$runs/mnist" --sampler analytic-ddpm --steps 10 --count 64 --out docs/mnist-analytic-ddpm-10.png

for task in blur inpaint; do
  echo "## Cold diffusion on MNIST: $task"
  udm eval --run "$runs/mnist-$task" --sampler degraded,direct,improved,naive --count 500 --markdown
  udm sample --run "$runs/mnist-$task" --sampler improved --count 16 --out "docs/mnist-$task-improved.png"
  udm sample --run "$runs/mnist-$task" --sampler naive --count 16 --out "docs/mnist-$task-naive.png"
done

udm eval --run "$runs/mnist" --sampler ddim --steps 50 --count 64 --threads 1 --markdown   # the 64-sample budget

echo "## Cold diffusion on MNIST: generation from blur"
udm eval --run "$runs/mnist-blur" --generate --sampler naive,improved --prior-noise 0.002 --count 500 --markdown
udm eval --run "$runs/mnist-blur" --generate --sampler naive,improved --prior-noise 0 --count 500 --markdown
udm sample --run "$runs/mnist-blur" --generate --sampler improved --prior-noise 0.002 --count 64 --out docs/mnist-blur-generate-improved.png
udm sample --run "$runs/mnist-blur" --generate --sampler naive --prior-noise 0.002 --count 64 --out docs/mnist-blur-generate-naive.png
