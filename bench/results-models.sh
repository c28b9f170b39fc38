#!/usr/bin/env bash
# Reproduces the shipped models' tables of BENCHMARKS.md (issue 16) and the README gallery, from the
# models in models/ (no training; MNIST, wuyan and Moby-Dick are fetched into the data cache for the
# data rows and the held-out images). Each table's command is printed above it.
#   bench/results-models.sh              # every shipped model (about 1 h on 2 cores)
#   bench/results-models.sh mnist        # only the named models
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/UnifiedDiffusion.Cli -c Release -v quiet -nologo >/dev/null
udm() { dotnet src/UnifiedDiffusion.Cli/bin/Release/net10.0/udm.dll "$@"; }
shown() { echo; echo '```'; echo "udm $*"; echo '```'; udm "$@" --markdown; }
gallery=docs/gallery
mkdir -p "$gallery"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(mnist mnist-blur mnist-inpaint mnist-encoding wujue-mask wujue-edit moby-mask)
n=${IMAGES_N:-1000} text_n=${TEXT_N:-500}   # the issue's n; smaller values only for a dry run

for model in "${models[@]}"; do
  [ -f "${UDM_MODELS:-models}/$model/config.json" ] || { echo "skipping $model: not in ${UDM_MODELS:-models}/"; continue; }
  echo; echo "## $model"
  case "$model" in
    mnist)
      shown eval --model mnist --label none --sampler data,ddpm,ddim,analytic-ddpm --steps 10,20,50 --nll --count $n
      for w in 1 2 3; do shown eval --model mnist --sampler ddim --steps 20 --guidance $w --count $n; done
      udm sample --model mnist --label none --sampler ddim --steps 20 --count 100 --out "$gallery/mnist-unconditional.png"
      udm sample --model mnist --sampler ddim --steps 20 --guidance 2 --count 100 --out "$gallery/mnist-guided.png"
      ;;
    mnist-blur|mnist-inpaint)
      shown eval --model "$model" --sampler data,degraded,direct,improved,naive --count $n
      udm sample --model "$model" --sampler improved --count 10 --out "$gallery/$model-restoration.png"
      if [ "$model" = mnist-blur ]; then
        shown eval --model mnist-blur --generate --sampler data,naive,improved --count $n
        udm sample --model mnist-blur --generate --sampler improved --count 100 --out "$gallery/mnist-blur-generation.png"
      fi
      ;;
    mnist-encoding)
      shown eval --model mnist-encoding --sampler data,ddim --steps 10,20,50 --count $n
      shown eval --model mnist --label none --sampler ddim --steps 10,20,50 --count $n
      udm sample --model mnist-encoding --sampler ddim --steps 50 --count 100 --out "$gallery/mnist-encoding.png"
      ;;
    wujue-mask|wujue-edit)
      shown eval --model "$model" --sampler data,improved,recorrupt --steps 20,10,5 --nll --count $text_n
      udm sample --model "$model" --count 10 --out "$gallery/$model-poems.txt"
      udm sample --model "$model" --fix "春,,,,,夏,,,,,秋,,,,,冬" --count 1 --out "$gallery/$model-acrostic-seasons.txt"
      udm sample --model "$model" --fix "山,,,,,水,,,,,風,,,,,月" --count 1 --out "$gallery/$model-acrostic-landscape.txt"
      ;;
    moby-mask)
      shown eval --model moby-mask --sampler data,improved,recorrupt --steps 32,16,8 --nll --count $text_n
      udm sample --model moby-mask --count 10 --out "$gallery/moby-mask.txt"
      ;;
  esac
done
