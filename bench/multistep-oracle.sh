#!/usr/bin/env bash
# Issue 15's oracle table: DPM-Solver++(2M) against the first-order samplers with the exact denoiser
# of gmm8, 10,000 samples, 5/10/20 steps, leading and trailing grids, seeds 0-2 (a few seconds).
# Prints one Markdown table: mean ± standard deviation over the three seeds (DDIM-50: seed 0 only).
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet -nologo >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }
for grid in leading trailing; do
  for seed in 0 1 2; do
    udm eval --oracle gmm8 --sampler data,ddim,analytic-ddim,dpm++2m,dpm++2m-sde --steps 5,10,20 --grid "$grid" --count 10000 --seed "$seed" --json 2>/dev/null \
      | GRID=$grid SEED=$seed python3 -c 'import json,os,sys; [print(os.environ["GRID"], os.environ["SEED"], r["sampler"], r["steps"], r["sliced_w2"], r["log_density"]) for r in json.load(sys.stdin)]'
  done
  udm eval --oracle gmm8 --sampler ddim --steps 50 --grid "$grid" --count 10000 --seed 0 --json 2>/dev/null \
    | GRID=$grid python3 -c 'import json,os,sys; r=json.load(sys.stdin); print(os.environ["GRID"], 0, r["sampler"], r["steps"], r["sliced_w2"], r["log_density"])'
done | awk '{k=$1" "$3" "$4; n[k]++; w[k]+=$5; ww[k]+=$5*$5; l[k]+=$6; ll[k]+=$6*$6; if(!(k in o)){o[k]=++c; keys[c]=k}}
  END {print "| grid | sampler | steps | seeds | sliced W2 ↓ (mean ± sd) | log-density (mean ± sd) |"; print "|---|---|---:|---:|---:|---:|";
       for(i=1;i<=c;i++){k=keys[i]; split(k,a," "); m=w[k]/n[k]; s=sqrt((ww[k]/n[k]-m*m)>0?(ww[k]/n[k]-m*m):0); ml=l[k]/n[k]; sl=sqrt((ll[k]/n[k]-ml*ml)>0?(ll[k]/n[k]-ml*ml):0);
       printf "| %s | %s | %s | %d | %.4f ± %.4f | %.3f ± %.3f |\n", a[1], a[2], a[3], n[k], m, s, ml, sl}}'
