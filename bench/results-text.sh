#!/usr/bin/env bash
# Reproduces the text tables of BENCHMARKS.md (issue 4): mask and edit models on 五言绝句 and on
# Moby-Dick windows; re-corrupt against improved at l, l/2 and l/4 network evaluations, and
# sample poems including acrostics. Trains the recipes first (fetching the poems and Moby-Dick).
# Usage: bench/results-text.sh [RUNS_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }

for recipe in wujue-mask wujue-edit moby-mask moby-edit; do
  [ -f "$runs/$recipe/checkpoint.udm" ] || udm train "$recipe" --out "$runs/$recipe" --threads 1
done

udm eval --run "$runs/wujue-mask" --sampler data --count 500 --markdown     # held-out reference rows
udm eval --run "$runs/moby-mask" --sampler data --count 500 --markdown
udm eval --run "$runs/wujue-mask" --sampler improved --steps 20 --count 100 --threads 1 --markdown   # the 100-poem budget
for recipe in wujue-mask wujue-edit; do
  echo "## $recipe (l = 20)"
  udm eval --run "$runs/$recipe" --sampler recorrupt,improved --steps 20,10,5 --count 500 --nll --markdown
  udm eval --run "$runs/$recipe" --sampler improved --order confident --steps 20,10,5 --count 500 --markdown
  for sampler in recorrupt improved; do
    udm sample --run "$runs/$recipe" --sampler "$sampler" --count 10 --out "docs/$recipe-$sampler.txt"
  done
  udm sample --run "$runs/$recipe" --count 10 --fix "春,,,,,夏,,,,,秋,,,,,冬" --out "docs/$recipe-acrostic.txt"
done
for recipe in moby-mask moby-edit; do
  echo "## $recipe (l = 32)"
  udm eval --run "$runs/$recipe" --sampler recorrupt,improved --steps 32,16,8 --count 500 --nll --markdown
  udm eval --run "$runs/$recipe" --sampler improved --order confident --steps 32,16,8 --count 500 --markdown
  udm sample --run "$runs/$recipe" --count 10 --out "docs/$recipe-improved.txt"
  udm sample --run "$runs/$recipe" --sampler recorrupt --count 10 --out "docs/$recipe-recorrupt.txt"
done
