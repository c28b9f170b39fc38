#!/usr/bin/env bash
# Issue 12's quality table: the same recipe and seed trained in fp32 and in bf16, and fp32 again
# with a second seed (the noise to compare against). Trains what is missing (resuming unfinished
# runs), then evaluates each run at its own precision, the fp32 run of seed 0 also sampled in bf16,
# and writes one loss-curve overlay per recipe to docs/.
# On 2 cores: about 100 minutes of training and 40 of evaluation.
# Usage: bench/precision-quality.sh [RUNS_FOLDER]     (default runs/precision; keep it outside the repo for long runs)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/precision}"
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet -nologo >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }
variants="fp32-s0 bf16-s0 fp32-s1"

for recipe in wujue-mask mnist-blur mnist; do
  for v in $variants; do
    out="$runs/$recipe-$v"
    [ -f "$out/.done" ] && continue
    if [ -f "$out/checkpoint.udm" ]; then udm train --out "$out" --resume --threads 2
    else udm train "$recipe" --out "$out" --seed "${v#*-s}" --precision "${v%-*}" --threads 2; fi
    touch "$out/.done"
  done
done

# One table per recipe: a data row (real data through the same metrics at the same n), then each
# run (label: training precision and seed; "fp32-s0 → bf16": the fp32 weights sampled in bf16).
evaluate() {  # recipe count, then the rest of the udm eval arguments (--sampler …)
  local recipe=$1 count=$2; shift 2
  echo "### $recipe: $*, n = $count"
  echo
  udm eval --run "$runs/$recipe-fp32-s0" --sampler data --count "$count" --markdown
  for v in $variants; do
    echo "| **$v** |"
    udm eval --run "$runs/$recipe-$v" --count "$count" "$@" --markdown | tail -n +3
  done
  echo "| **fp32-s0 → bf16** |"
  udm eval --run "$runs/$recipe-fp32-s0" --precision bf16 --count "$count" "$@" --markdown | tail -n +3
  echo
}
evaluate mnist 1000 --sampler ddim --steps 10,20,50
evaluate mnist 1000 --sampler ddpm --steps 10 --nll
evaluate mnist-blur 1000 --sampler improved,degraded
evaluate wujue-mask 500 --sampler fill --steps 20,10 --nll
for recipe in mnist mnist-blur wujue-mask; do
  udm loss $(for v in $variants; do echo "$runs/$recipe-$v"; done) --out "docs/precision-loss-$recipe.png"
done
