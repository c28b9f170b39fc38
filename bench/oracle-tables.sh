#!/usr/bin/env bash
# Regenerates the oracle tables of BENCHMARKS.md: every Gaussian sampler with the exact denoiser of
# gmm8 (linear schedule, T = 1000), 10,000 samples per row. Usage: bench/oracle-tables.sh [Release|Debug]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-Release}
dotnet build src/UnifiedDiffusion.Cli -c "$config" -v q -nologo >/dev/null
udm() { dotnet "src/UnifiedDiffusion.Cli/bin/$config/net10.0/udm.dll" "$@" 2>/dev/null; }
echo "## Samplers by step count (leading grid)"
udm eval --oracle gmm8 --sampler ddpm,ddim,analytic-ddim --steps 10,20,50,100,1000 --count 10000
for grid in leading trailing quadratic; do
  echo "## 5 steps, $grid grid"
  udm eval --oracle gmm8 --sampler ddpm,ddim,analytic-ddim --steps 5 --grid "$grid" --count 10000
  udm eval --oracle gmm8 --sampler analytic-ddim --steps 5 --grid "$grid" --count 10000 --analytic-clip 0
done
echo "## Likelihood (negative ELBO, bits/dim)"
udm eval --oracle gmm8 --sampler ddpm,analytic-ddpm --steps 10,20,50,100,1000 --count 10000 --nll
