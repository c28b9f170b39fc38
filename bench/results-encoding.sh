#!/usr/bin/env bash
# Reproduces the encoding-model tables of BENCHMARKS.md (issue 5): MNIST classifier-FID and
# 五言绝句 n-gram perplexity at 10/20/50 steps, next to the hot (mnist) and mask/edit (wujue-*)
# runs of the same data and budget, which bench/results-images.sh and results-text.sh train.
# On 2 cores: ~75 min of training (MNIST) and ~17 min (poems), one thread each.
# Usage: bench/results-encoding.sh [RUNS_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }

for recipe in mnist-encoding wujue-encoding; do
  [ -f "$runs/$recipe/checkpoint.udm" ] || udm train "$recipe" --out "$runs/$recipe" --threads 1
done

echo "## The encoding model on MNIST: classifier-FID against steps"
udm eval --run "$runs/mnist-encoding" --sampler ddpm,ddim,analytic-ddpm,analytic-ddim --steps 10,20,50 --count 250 --markdown
udm sample --run "$runs/mnist-encoding" --sampler ddpm --steps 50 --count 64 --out docs/mnist-encoding-ddpm-50.png
udm sample --run "$runs/mnist-encoding" --sampler ddim --steps 50 --count 64 --out docs/mnist-encoding-ddim-50.png

echo "## The encoding model on 五言绝句: n-gram perplexity against steps"
udm eval --run "$runs/wujue-encoding" --sampler ddpm,ddim --steps 10,20,50 --count 500 --markdown
udm eval --run "$runs/wujue-encoding" --sampler ddim --eta 0.5 --steps 20,50 --count 500 --markdown
udm sample --run "$runs/wujue-encoding" --sampler ddpm --steps 50 --count 10 --out docs/wujue-encoding-ddpm.txt
udm sample --run "$runs/wujue-encoding" --sampler ddim --steps 50 --count 10 --out docs/wujue-encoding-ddim.txt
