#!/usr/bin/env bash
# Regenerates the benchmark table of BENCHMARKS.md in one command, on an idle machine:
#   bench/run-all.sh                 # full configuration, fp32 and bf16 rows on bf16 CPUs (about 60-90 min on 2 cores), writes bench/results.md and .json
#   bench/run-all.sh --smoke         # a few minutes: checks the whole pipeline, numbers not for publishing
# Extra arguments go to `udm bench` (e.g. --rounds 7, --suite unet, --threads 2).
# Runs the C# side and the PyTorch reference (Debian's python3-torch, bench/install-pytorch.sh)
# interleaved round by round, checks parameter counts and forward parity on shared weights, then the
# memory rows each in a fresh process, and finally the lever A/B table (C# side).
set -euo pipefail
cd "$(dirname "$0")/.."
bench/install-pytorch.sh
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet -nologo
udm=src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm
out=bench/results.md
case " $* " in *" --smoke "*) out=bench/results-smoke.md ;; esac
"$udm" bench --suite all --pytorch --out "$out" "$@"
echo
"$udm" bench --levers "$@" | tee "${out%.md}-levers.md"
echo "wrote $out, ${out%.md}.json and ${out%.md}-levers.md"
